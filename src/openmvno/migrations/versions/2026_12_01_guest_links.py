"""guest order links and the owner confirmed at look-up

Revision ID: 20261201_guest_links
Revises: 20261125_ratelimit
Create Date: 2026-12-01 17:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa  # noqa: F401
from alembic import op  # noqa: F401

revision: str = '20261201_guest_links'
down_revision: str | None = '20261125_ratelimit'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
