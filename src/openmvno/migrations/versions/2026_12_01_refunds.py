"""provider refunds tracked to completion

Revision ID: 20261201_refunds
Revises: 20261201_guest_links
Create Date: 2026-12-01 17:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa  # noqa: F401
from alembic import op  # noqa: F401

revision: str = '20261201_refunds'
down_revision: str | None = '20261201_guest_links'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
