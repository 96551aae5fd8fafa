"""renewal runs: one row per line and period, written by the set-based renewal batch

Revision ID: 20261202_renewal_runs
Revises: 20261202_renewals
Create Date: 2026-12-02 00:00:00
"""

from collections.abc import Sequence

revision: str = '20261202_renewal_runs'
down_revision: str | None = '20261202_renewals'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
