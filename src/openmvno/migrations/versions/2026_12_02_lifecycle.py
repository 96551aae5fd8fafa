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


def downgrade() -> None:
    op.drop_table('worker_jobs')
