"""usage records, network peers and their API keys

Revision ID: 20261202_usage
Revises: 20261202_ledger_books
Create Date: 2026-12-02 00:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import openmvno.db

revision: str = '20261202_usage'
down_revision: str | None = '20261202_ledger_books'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('plans', schema=None) as batch_op:
        batch_op.add_column(
            sa.Column('roaming_rates', sa.JSON(), nullable=False, server_default='{}')
        )
    with op.batch_alter_table('plans', schema=None) as batch_op:
        batch_op.alter_column('roaming_rates', server_default=None)

    op.create_table('network_peers',
    sa.Column('name', sa.String(length=60), nullable=False),
    sa.Column('key_hash', sa.String(length=64), nullable=False),
    sa.Column('key_prefix', sa.String(length=12), nullable=False),
    sa.Column('scopes', sa.JSON(), nullable=False),
    sa.Column('created_at', openmvno.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('revoked_at', openmvno.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_network_peers')),
    sa.UniqueConstraint('key_hash', name=op.f('uq_network_peers_key_hash')),
    sa.UniqueConstraint('name', name=op.f('uq_network_peers_name')),
    )

    op.create_table('usage_records',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('peer_id', sa.Uuid(), nullable=False),
    sa.Column('record_id', sa.String(length=64), nullable=False),
    sa.Column('batch_id', sa.Uuid(), nullable=False),
    sa.Column('line_id', sa.Uuid(), nullable=False),
    sa.Column('account_id', sa.Uuid(), nullable=False),
    sa.Column('kind', sa.String(length=8), nullable=False),
    sa.Column('units', sa.BigInteger(), nullable=False),
    sa.Column('started_at', openmvno.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('day', sa.Date(), nullable=False),
    sa.Column('zone', sa.String(length=20), nullable=False),
    sa.Column('rating_group', sa.Integer(), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('charged_units', sa.BigInteger(), nullable=False),
    sa.Column('wallet_minor', sa.BigInteger(), nullable=False),
    sa.Column('received_at', openmvno.db.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_usage_records')),
    sa.UniqueConstraint('peer_id', 'record_id', name=op.f('uq_usage_records_peer_id')),
    )
    with op.batch_alter_table('usage_records', schema=None) as batch_op:
        batch_op.create_index('ix_usage_records_line_day', ['line_id', 'day', 'kind'], unique=False)

    op.create_table('line_bars',
    sa.Column('line_id', sa.Uuid(), nullable=False),
    sa.Column('account_id', sa.Uuid(), nullable=False),
    sa.Column('barred', sa.Boolean(), nullable=False),
    sa.Column('generation', sa.Integer(), nullable=False),
    sa.Column('barred_at', openmvno.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('lifted_at', openmvno.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('detail', sa.JSON(), nullable=False),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], name=op.f('fk_line_bars_account_id_accounts')),
    sa.ForeignKeyConstraint(['line_id'], ['lines.id'], name=op.f('fk_line_bars_line_id_lines')),
    sa.PrimaryKeyConstraint('line_id', name=op.f('pk_line_bars')),
    )
    with op.batch_alter_table('line_bars', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_line_bars_account_id'), ['account_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('line_bars', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_line_bars_account_id'))
    op.drop_table('line_bars')
    with op.batch_alter_table('usage_records', schema=None) as batch_op:
        batch_op.drop_index('ix_usage_records_line_day')
    op.drop_table('usage_records')
    op.drop_table('network_peers')
    with op.batch_alter_table('plans', schema=None) as batch_op:
        batch_op.drop_column('roaming_rates')
