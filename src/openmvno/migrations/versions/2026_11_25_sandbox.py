"""sandbox payment service

Revision ID: 20261125_sandbox
Revises: 20261125_billing
Create Date: 2026-11-25 19:10:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import openmvno.db

revision: str = '20261125_sandbox'
down_revision: str | None = '20261125_billing'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('sandbox_payments',
    sa.Column('reference', sa.String(length=40), nullable=False),
    sa.Column('attempt_id', sa.String(length=64), nullable=False),
    sa.Column('amount_minor', sa.BigInteger(), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('method', sa.String(length=20), nullable=False),
    sa.Column('description', sa.String(length=200), nullable=False),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('stage', sa.String(length=20), nullable=False),
    sa.Column('failure_code', sa.String(length=40), nullable=True),
    sa.Column('return_url', sa.String(length=2000), nullable=False),
    sa.Column('card_brand', sa.String(length=20), nullable=True),
    sa.Column('card_last4', sa.String(length=4), nullable=True),
    sa.Column('webhook_event_id', sa.String(length=40), nullable=True),
    sa.Column('webhook_due_at', openmvno.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('webhook_attempts', sa.Integer(), nullable=False),
    sa.Column('webhook_last_error', sa.String(length=300), nullable=False),
    sa.Column('webhook_delivered_at', openmvno.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('created_at', openmvno.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', openmvno.db.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_sandbox_payments')),
    sa.UniqueConstraint('attempt_id', name=op.f('uq_sandbox_payments_attempt_id')),
    sa.UniqueConstraint('reference', name=op.f('uq_sandbox_payments_reference')),
    )
    op.create_index('ix_sandbox_payments_webhook_due_at', 'sandbox_payments', ['webhook_due_at'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_sandbox_payments_webhook_due_at', table_name='sandbox_payments')
    op.drop_table('sandbox_payments')
