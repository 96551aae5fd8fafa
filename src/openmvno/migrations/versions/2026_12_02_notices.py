"""notices, notification preferences, editable templates

Revision ID: 20261202_notices
Revises: 20261202_renewal_runs
Create Date: 2026-12-02 00:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import openmvno.db

revision: str = '20261202_notices'
down_revision: str | None = '20261202_renewal_runs'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('notices',
    sa.Column('key', sa.String(length=200), nullable=False),
    sa.Column('event', sa.String(length=40), nullable=False),
    sa.Column('account_id', sa.Uuid(), nullable=False),
    sa.Column('line_id', sa.Uuid(), nullable=True),
    sa.Column('urgent', sa.Boolean(), nullable=False),
    sa.Column('channels', sa.String(length=20), nullable=False),
    sa.Column('created_at', openmvno.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], name=op.f('fk_notices_account_id_accounts')),
    sa.ForeignKeyConstraint(['line_id'], ['lines.id'], name=op.f('fk_notices_line_id_lines')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_notices')),
    sa.UniqueConstraint('key', name=op.f('uq_notices_key')),
    )
    with op.batch_alter_table('notices', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_notices_account_id'), ['account_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_notices_line_id'), ['line_id'], unique=False)

    op.create_table('notification_preferences',
    sa.Column('account_id', sa.Uuid(), nullable=False),
    sa.Column('sms', sa.Boolean(), nullable=False),
    sa.Column('email', sa.Boolean(), nullable=False),
    sa.Column('marketing', sa.Boolean(), nullable=False),
    sa.Column('updated_at', openmvno.db.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], name=op.f('fk_notification_preferences_account_id_accounts'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('account_id', name=op.f('pk_notification_preferences')),
    )

    op.create_table('notice_templates',
    sa.Column('event', sa.String(length=40), nullable=False),
    sa.Column('language', sa.String(length=8), nullable=False),
    sa.Column('channel', sa.String(length=8), nullable=False),
    sa.Column('subject', sa.String(length=200), nullable=False),
    sa.Column('body', sa.Text(), nullable=False),
    sa.Column('updated_by', sa.Uuid(), nullable=True),
    sa.Column('updated_at', openmvno.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.ForeignKeyConstraint(['updated_by'], ['accounts.id'], name=op.f('fk_notice_templates_updated_by_accounts')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_notice_templates')),
    sa.UniqueConstraint('event', 'language', 'channel', name='uq_notice_templates_event'),
    )


def downgrade() -> None:
    op.drop_table('notice_templates')
    op.drop_table('notification_preferences')
    with op.batch_alter_table('notices', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_notices_line_id'))
        batch_op.drop_index(batch_op.f('ix_notices_account_id'))
    op.drop_table('notices')
