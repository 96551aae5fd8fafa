"""the database keeps the ledger's books (triggers), append-only journal

Revision ID: 20261202_ledger_books
Revises: 20261201_refunds
Create Date: 2026-12-02 00:00:00
"""

from collections.abc import Sequence

revision: str = '20261202_ledger_books'
down_revision: str | None = '20261201_refunds'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
