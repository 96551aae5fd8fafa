"""usage records, network peers and their API keys

Revision ID: 20261202_usage
Revises: 20261202_ledger_books
Create Date: 2026-12-02 00:00:00
"""

from collections.abc import Sequence

revision: str = '20261202_usage'
down_revision: str | None = '20261202_ledger_books'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
