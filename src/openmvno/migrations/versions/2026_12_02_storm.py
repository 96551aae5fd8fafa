"""the month-end storm at scale: claim index with its tie-breaker, buckets with room for
their updates, no foreign-key checks on copied references (PostgreSQL)

Revision ID: 20261202_storm
Revises: 20261202_console
Create Date: 2026-12-02 15:00:00

- ``ix_auto_renew_settings_due`` gets ``id`` as its last column: the claim's
  ``ORDER BY next_attempt_at, id LIMIT n`` is then read straight off the index. Without
  it every claim sorted all the due settings sharing one ``next_attempt_at`` (a storm's
  lines expire at the same moment), so a storm of N lines cost N²/batch rows read. The
  same for the line lifecycle's claims (``ix_lines_state_expires``: ``ORDER BY
  expires_at, id``; ``ix_number_quarantine_due``: ``ORDER BY available_at, id``), which a
  storm of lapses would meet.
- PostgreSQL: ``buckets`` keeps half of each page free (``fillfactor = 50``). A bucket is
  inserted empty and filled by its grant entry in the same transaction, then moved by
  every usage batch: with room on its page each of those updates is a HOT update (no new
  index entries), without it every update rewrites all the bucket's index entries.
- PostgreSQL: the foreign keys of columns that copy a reference already checked on
  another row are dropped (each check locks the parent row; the plan's row, shared by
  every renewal, is locked by every batch of every worker): ``balance_entries.account_id``
  (the ledger's trigger refuses an entry whose account is not its bucket's),
  ``buckets.plan_id`` (the bucket's order names the plan), ``receipts.account_id`` (the
  receipt's order names the account), ``renewal_runs.account_id``, ``.plan_id`` and
  ``.payment_attempt_id`` (the run's order names all three). SQLite keeps them: it has
  one writer and no row locks, so a check is one index probe, and dropping one would
  rebuild tables that carry the ledger's triggers.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "20261202_storm"
down_revision: str | None = "20261202_console"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COPIED_REFERENCES = [
    ("balance_entries", "account_id", "accounts"),
    ("buckets", "plan_id", "plans"),
    ("receipts", "account_id", "accounts"),
    ("renewal_runs", "account_id", "accounts"),
    ("renewal_runs", "plan_id", "plans"),
    ("renewal_runs", "payment_attempt_id", "payment_attempts"),
]


def _fk(table: str, column: str, parent: str) -> str:
    return f"fk_{table}_{column}_{parent}"


INDEXES = [  # (table, index, columns before, columns now)
    ("auto_renew_settings", "ix_auto_renew_settings_due", ["enabled", "next_attempt_at"],
     ["enabled", "next_attempt_at", "id"]),
    ("lines", "ix_lines_state_expires", ["state", "expires_at"],
     ["state", "expires_at", "id"]),
    ("number_quarantine", "ix_number_quarantine_due", ["state", "available_at"],
     ["state", "available_at", "id"]),
]


def _indexes(now: bool) -> None:
    for table, name, before, after in INDEXES:
        with op.batch_alter_table(table) as batch_op:
            batch_op.drop_index(name)
            batch_op.create_index(name, after if now else before, unique=False)


def upgrade() -> None:
    _indexes(now=True)
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("ALTER TABLE buckets SET (fillfactor = 50)")
    for table, column, parent in COPIED_REFERENCES:
        op.drop_constraint(_fk(table, column, parent), table, type_="foreignkey")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table, column, parent in COPIED_REFERENCES:
            op.create_foreign_key(_fk(table, column, parent), table, parent, [column], ["id"])
        op.execute("ALTER TABLE buckets RESET (fillfactor)")
    _indexes(now=False)
