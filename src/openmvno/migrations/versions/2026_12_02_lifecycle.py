"""line lifecycle: grace, suspension, termination, quarantine, schedules

Revision ID: 20261202_lifecycle
Revises: 20261202_usage
Create Date: 2026-12-02 00:00:00
"""

from collections.abc import Sequence

revision: str = '20261202_lifecycle'
down_revision: str | None = '20261202_usage'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
