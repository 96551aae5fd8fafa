"""line lifecycle: grace, suspension, termination, quarantine, schedules

Revision ID: 20261202_lifecycle
Revises: 20261202_usage
Create Date: 2026-12-02 00:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import openmvno.db

revision: str = '20261202_lifecycle'
down_revision: str | None = '20261202_usage'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('worker_jobs',
    sa.Column('name', sa.String(length=120), nullable=False),
    sa.Column('last_run_at', openmvno.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('last_ok_at', openmvno.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('last_failed_at', openmvno.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('failures', sa.Integer(), nullable=False),
    sa.Column('handled', sa.Integer(), nullable=False),
    sa.Column('last_error', sa.String(length=500), nullable=False),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_worker_jobs')),
    sa.UniqueConstraint('name', name=op.f('uq_worker_jobs_name')),
    )
    op.create_table('number_quarantine',
    sa.Column('line_id', sa.Uuid(), nullable=False),
    sa.Column('msisdn', sa.String(length=20), nullable=False),
    sa.Column('kind', sa.Enum('esim', 'sim', 'datacard', name='linekind', native_enum=False, length=16), nullable=False),
    sa.Column('state', sa.Enum('quarantined', 'available', name='numberstate', native_enum=False, length=16), nullable=False),
    sa.Column('terminated_at', openmvno.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('available_at', openmvno.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('released_at', openmvno.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.ForeignKeyConstraint(['line_id'], ['lines.id'], name=op.f('fk_number_quarantine_line_id_lines')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_number_quarantine')),
    sa.UniqueConstraint('line_id', name=op.f('uq_number_quarantine_line_id')),
    )
    with op.batch_alter_table('number_quarantine', schema=None) as batch_op:
        batch_op.create_index('ix_number_quarantine_due', ['state', 'available_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_number_quarantine_msisdn'), ['msisdn'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('number_quarantine', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_number_quarantine_msisdn'))
        batch_op.drop_index('ix_number_quarantine_due')
    op.drop_table('number_quarantine')
    op.drop_table('worker_jobs')
