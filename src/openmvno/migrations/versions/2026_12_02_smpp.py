"""SMPP delivery receipts, SMS sessions and USSD

Revision ID: 20261202_smpp
Revises: 20261202_notices
Create Date: 2026-12-02 00:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import openmvno.db

revision: str = '20261202_smpp'
down_revision: str | None = '20261202_notices'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('sms_parts',
    sa.Column('outbox_id', sa.Uuid(), nullable=False),
    sa.Column('account_id', sa.Uuid(), nullable=True),
    sa.Column('recipient', sa.String(length=254), nullable=False),
    sa.Column('seq', sa.Integer(), nullable=False),
    sa.Column('total', sa.Integer(), nullable=False),
    sa.Column('concat_ref', sa.Integer(), nullable=False),
    sa.Column('user_reference', sa.Integer(), nullable=False),
    sa.Column('state', sa.Enum('new', 'sending', 'accepted', 'delivered', 'failed', name='partstate', native_enum=False, length=16), nullable=False),
    sa.Column('message_id', sa.String(length=65), nullable=True),
    sa.Column('submits', sa.Integer(), nullable=False),
    sa.Column('bind', sa.String(length=40), nullable=False),
    sa.Column('error', sa.String(length=200), nullable=False),
    sa.Column('submitted_at', openmvno.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('answered_at', openmvno.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('receipt_at', openmvno.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('created_at', openmvno.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], name=op.f('fk_sms_parts_account_id_accounts')),
    sa.ForeignKeyConstraint(['outbox_id'], ['outbox.id'], name=op.f('fk_sms_parts_outbox_id_outbox'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_sms_parts')),
    sa.UniqueConstraint('message_id', name=op.f('uq_sms_parts_message_id')),
    sa.UniqueConstraint('outbox_id', 'seq', name='uq_sms_parts_outbox_seq'),
    )
    with op.batch_alter_table('sms_parts', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_sms_parts_account_id'), ['account_id'], unique=False)
        batch_op.create_index('ix_sms_parts_recipient_state', ['recipient', 'state'], unique=False)

    op.create_table('sms_confirmations',
    sa.Column('account_id', sa.Uuid(), nullable=False),
    sa.Column('line_id', sa.Uuid(), nullable=False),
    sa.Column('msisdn', sa.String(length=20), nullable=False),
    sa.Column('plan_code', sa.String(length=40), nullable=False),
    sa.Column('created_at', openmvno.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('expires_at', openmvno.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('used_at', openmvno.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], name=op.f('fk_sms_confirmations_account_id_accounts'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['line_id'], ['lines.id'], name=op.f('fk_sms_confirmations_line_id_lines')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_sms_confirmations')),
    )
    with op.batch_alter_table('sms_confirmations', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_sms_confirmations_account_id'), ['account_id'], unique=False)
        batch_op.create_index('ix_sms_confirmations_msisdn_expires', ['msisdn', 'expires_at'], unique=False)

    op.create_table('inbound_messages',
    sa.Column('channel', sa.String(length=16), nullable=False),
    sa.Column('external_id', sa.String(length=120), nullable=False),
    sa.Column('sender', sa.String(length=20), nullable=False),
    sa.Column('account_id', sa.Uuid(), nullable=True),
    sa.Column('created_at', openmvno.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], name=op.f('fk_inbound_messages_account_id_accounts')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_inbound_messages')),
    sa.UniqueConstraint('channel', 'external_id', name='uq_inbound_messages_channel_external'),
    )
    with op.batch_alter_table('inbound_messages', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_inbound_messages_account_id'), ['account_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_inbound_messages_created_at'), ['created_at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('inbound_messages', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_inbound_messages_created_at'))
        batch_op.drop_index(batch_op.f('ix_inbound_messages_account_id'))
    op.drop_table('inbound_messages')
    with op.batch_alter_table('sms_confirmations', schema=None) as batch_op:
        batch_op.drop_index('ix_sms_confirmations_msisdn_expires')
        batch_op.drop_index(batch_op.f('ix_sms_confirmations_account_id'))
    op.drop_table('sms_confirmations')
    with op.batch_alter_table('sms_parts', schema=None) as batch_op:
        batch_op.drop_index('ix_sms_parts_recipient_state')
        batch_op.drop_index(batch_op.f('ix_sms_parts_account_id'))
    op.drop_table('sms_parts')
