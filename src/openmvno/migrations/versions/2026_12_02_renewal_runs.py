"""renewal runs: one row per line and period, written by the set-based renewal batch

Revision ID: 20261202_renewal_runs
Revises: 20261202_renewals
Create Date: 2026-12-02 00:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import openmvno.db

revision: str = '20261202_renewal_runs'
down_revision: str | None = '20261202_renewals'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('renewal_runs',
    sa.Column('line_id', sa.Uuid(), nullable=False),
    sa.Column('account_id', sa.Uuid(), nullable=False),
    sa.Column('plan_id', sa.Uuid(), nullable=False),
    sa.Column('period_key', sa.String(length=40), nullable=False),
    sa.Column('order_id', sa.Uuid(), nullable=False),
    sa.Column('funding', sa.Enum('wallet', 'card', name='runfunding', native_enum=False, length=8), nullable=False),
    sa.Column('payment_attempt_id', sa.Uuid(), nullable=True),
    sa.Column('amount_minor', sa.BigInteger(), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('created_at', openmvno.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], name=op.f('fk_renewal_runs_account_id_accounts')),
    sa.ForeignKeyConstraint(['line_id'], ['lines.id'], name=op.f('fk_renewal_runs_line_id_lines')),
    sa.ForeignKeyConstraint(['order_id'], ['orders.id'], name=op.f('fk_renewal_runs_order_id_orders')),
    sa.ForeignKeyConstraint(['payment_attempt_id'], ['payment_attempts.id'], name=op.f('fk_renewal_runs_payment_attempt_id_payment_attempts')),
    sa.ForeignKeyConstraint(['plan_id'], ['plans.id'], name=op.f('fk_renewal_runs_plan_id_plans')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_renewal_runs')),
    sa.UniqueConstraint('line_id', 'period_key', name=op.f('uq_renewal_runs_line_id_period_key')),
    sa.UniqueConstraint('order_id', name=op.f('uq_renewal_runs_order_id')),
    )
    with op.batch_alter_table('renewal_runs', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_renewal_runs_account_id'), ['account_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('renewal_runs', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_renewal_runs_account_id'))
    op.drop_table('renewal_runs')
