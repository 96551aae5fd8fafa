"""guest order links and the owner confirmed at look-up

Revision ID: 20261201_guest_links
Revises: 20261125_ratelimit
Create Date: 2026-12-01 17:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '20261201_guest_links'
down_revision: str | None = '20261125_ratelimit'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('orders', schema=None) as batch_op:
        batch_op.add_column(sa.Column('credited_account_id', sa.Uuid(), nullable=True))
        batch_op.add_column(sa.Column('guest_link_hash', sa.String(length=64), nullable=True))
        batch_op.create_index(
            batch_op.f('ix_orders_credited_account_id'), ['credited_account_id'], unique=False
        )
        batch_op.create_unique_constraint(
            batch_op.f('uq_orders_guest_link_hash'), ['guest_link_hash']
        )
        batch_op.create_foreign_key(
            batch_op.f('fk_orders_credited_account_id_accounts'), 'accounts',
            ['credited_account_id'], ['id'],
        )
    # Guest top-ups still waiting for their payment: the line and owner the guest confirmed
    # minutes before are, most likely, the number's line and owner now. (Without them the
    # payment, if it lands, is refunded: fulfilment credits only a confirmed owner.)
    op.execute(
        "UPDATE orders SET"
        " line_id = (SELECT lines.id FROM lines WHERE lines.msisdn = orders.msisdn),"
        " credited_account_id ="
        " (SELECT lines.account_id FROM lines WHERE lines.msisdn = orders.msisdn)"
        " WHERE kind = 'guest_topup' AND state = 'pending_payment'"
        " AND credited_account_id IS NULL"
    )
    with op.batch_alter_table('audit_events', schema=None) as batch_op:
        batch_op.add_column(sa.Column('account_id', sa.Uuid(), nullable=True))
        batch_op.create_index(
            batch_op.f('ix_audit_events_account_id'), ['account_id'], unique=False
        )
        batch_op.create_foreign_key(
            batch_op.f('fk_audit_events_account_id_accounts'), 'accounts', ['account_id'], ['id'],
        )


def downgrade() -> None:
    with op.batch_alter_table('audit_events', schema=None) as batch_op:
        batch_op.drop_constraint(
            batch_op.f('fk_audit_events_account_id_accounts'), type_='foreignkey'
        )
        batch_op.drop_index(batch_op.f('ix_audit_events_account_id'))
        batch_op.drop_column('account_id')
    with op.batch_alter_table('orders', schema=None) as batch_op:
        batch_op.drop_constraint(
            batch_op.f('fk_orders_credited_account_id_accounts'), type_='foreignkey'
        )
        batch_op.drop_constraint(batch_op.f('uq_orders_guest_link_hash'), type_='unique')
        batch_op.drop_index(batch_op.f('ix_orders_credited_account_id'))
        batch_op.drop_column('guest_link_hash')
        batch_op.drop_column('credited_account_id')
