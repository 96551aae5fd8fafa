"""notices, notification preferences, editable templates

Revision ID: 20261202_notices
Revises: 20261202_renewal_runs
Create Date: 2026-12-02 00:00:00
"""

from collections.abc import Sequence

revision: str = '20261202_notices'
down_revision: str | None = '20261202_renewal_runs'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
