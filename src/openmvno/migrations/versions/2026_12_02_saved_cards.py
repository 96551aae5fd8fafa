"""saved payment cards and auto top-up

Revision ID: 20261202_saved_cards
Revises: 20261202_lifecycle
Create Date: 2026-12-02 00:00:00
"""

from collections.abc import Sequence

revision: str = '20261202_saved_cards'
down_revision: str | None = '20261202_lifecycle'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
