"""auto-renewal settings and renewal attempts

Revision ID: 20261202_renewals
Revises: 20261202_saved_cards
Create Date: 2026-12-02 00:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import openmvno.db

revision: str = '20261202_renewals'
down_revision: str | None = '20261202_saved_cards'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('auto_renew_settings',
    sa.Column('line_id', sa.Uuid(), nullable=False),
    sa.Column('account_id', sa.Uuid(), nullable=False),
    sa.Column('enabled', sa.Boolean(), nullable=False),
    sa.Column('funding', sa.Enum('wallet', 'card', name='funding', native_enum=False, length=8), nullable=False),
    sa.Column('card_id', sa.Uuid(), nullable=True),
    sa.Column('wallet_fallback', sa.Boolean(), nullable=False),
    sa.Column('period_key', sa.String(length=40), nullable=True),
    sa.Column('next_attempt_at', openmvno.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('last_attempt_at', openmvno.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('last_failure', sa.String(length=40), nullable=False),
    sa.Column('waiting_for_wallet', sa.Boolean(), nullable=False),
    sa.Column('claimed_until', openmvno.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('created_at', openmvno.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', openmvno.db.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], name=op.f('fk_auto_renew_settings_account_id_accounts')),
    sa.ForeignKeyConstraint(['line_id'], ['lines.id'], name=op.f('fk_auto_renew_settings_line_id_lines')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_auto_renew_settings')),
    sa.UniqueConstraint('line_id', name=op.f('uq_auto_renew_settings_line_id')),
    )
    with op.batch_alter_table('auto_renew_settings', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_auto_renew_settings_account_id'), ['account_id'], unique=False)
        batch_op.create_index('ix_auto_renew_settings_due', ['enabled', 'next_attempt_at'], unique=False)
        batch_op.create_index('ix_auto_renew_settings_waiting', ['waiting_for_wallet', 'enabled'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('auto_renew_settings', schema=None) as batch_op:
        batch_op.drop_index('ix_auto_renew_settings_waiting')
        batch_op.drop_index('ix_auto_renew_settings_due')
        batch_op.drop_index(batch_op.f('ix_auto_renew_settings_account_id'))
    op.drop_table('auto_renew_settings')
