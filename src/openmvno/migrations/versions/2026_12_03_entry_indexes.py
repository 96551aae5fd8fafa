"""ledger entries: no index on account_id, order_id indexed only where set

Revision ID: 20261203_entry_indexes
Revises: 20261203_usage_key
Create Date: 2026-12-03 00:00:01

Every usage batch writes one entry per bucket (thousands), none with an order, and
nothing looks entries up by account (an account's entries are found through its
buckets). Each entry paid two index entries for that: ``ix_balance_entries_account_id``
goes, ``ix_balance_entries_order_id`` keeps the entries of orders only.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "20261203_entry_indexes"
down_revision: str | None = "20261203_usage_key"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_SET = sa.text("order_id IS NOT NULL")


def upgrade() -> None:
    with op.batch_alter_table("balance_entries", schema=None) as batch_op:
        batch_op.drop_index("ix_balance_entries_account_id")
        batch_op.drop_index("ix_balance_entries_order_id")
        batch_op.create_index(
            "ix_balance_entries_order_id", ["order_id"], unique=False,
            sqlite_where=_SET, postgresql_where=_SET,
        )


def downgrade() -> None:
    with op.batch_alter_table("balance_entries", schema=None) as batch_op:
        batch_op.drop_index("ix_balance_entries_order_id", sqlite_where=_SET,
                            postgresql_where=_SET)
        batch_op.create_index("ix_balance_entries_order_id", ["order_id"], unique=False)
        batch_op.create_index("ix_balance_entries_account_id", ["account_id"], unique=False)
