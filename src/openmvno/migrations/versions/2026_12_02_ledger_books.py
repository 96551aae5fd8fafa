"""the database keeps the ledger's books (triggers), append-only journal

Revision ID: 20261202_ledger_books
Revises: 20261201_refunds
Create Date: 2026-12-02 00:00:00

``buckets.last_entry_id`` (the newest entry applied to the bucket) is new; then:

- inserting into ``balance_entries`` applies the deltas to ``buckets.remaining``
  (PostgreSQL: one statement-level trigger over the transition table, the summed
  deltas per bucket; SQLite: a row-level trigger). A bucket that would go below its
  reserved amount or zero fails the statement (the CHECK constraints of ``buckets``);
  an entry naming a bucket of another account fails it too;
- ``buckets.remaining`` changes only through that trigger (PostgreSQL: a BEFORE UPDATE
  trigger refuses a change made outside a trigger, ``WHEN (pg_trigger_depth() < 1 …)``;
  SQLite: only when ``last_entry_id`` moves to a newer entry of the bucket whose delta
  is exactly the change, which only the entries trigger can do); a new bucket starts
  empty;
- ``balance_entries`` is append-only (UPDATE and DELETE refused).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '20261202_ledger_books'
down_revision: str | None = '20261201_refunds'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

PG_UP = [
    """
    CREATE FUNCTION ledger_apply_entries() RETURNS trigger LANGUAGE plpgsql AS $$
    DECLARE
        groups bigint;
        applied bigint;
    BEGIN
        WITH s AS (
            SELECT bucket_id, account_id, sum(delta) AS total, max(id) AS last_id,
                   max(created_at) AS at
            FROM new_entries GROUP BY bucket_id, account_id
        ), u AS (
            UPDATE buckets b
            SET remaining = b.remaining + s.total, last_entry_id = s.last_id, updated_at = s.at
            FROM s WHERE b.id = s.bucket_id AND b.account_id = s.account_id
            RETURNING 1
        )
        SELECT (SELECT count(*) FROM s), (SELECT count(*) FROM u) INTO groups, applied;
        IF groups <> applied THEN
            RAISE EXCEPTION 'ledger: an entry names a bucket of another account'
                USING ERRCODE = 'foreign_key_violation';
        END IF;
        RETURN NULL;
    END $$
    """,
    """
    CREATE TRIGGER balance_entries_apply AFTER INSERT ON balance_entries
    REFERENCING NEW TABLE AS new_entries
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_apply_entries()
    """,
    """
    CREATE FUNCTION ledger_guard_buckets() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP = 'INSERT' THEN
            RAISE EXCEPTION 'ledger: a new bucket starts empty; fill it with an entry'
                USING ERRCODE = 'integrity_constraint_violation';
        END IF;
        RAISE EXCEPTION 'ledger: buckets.remaining changes only through balance_entries'
            USING ERRCODE = 'integrity_constraint_violation';
    END $$
    """,
    # The conditions are the triggers' WHEN clauses, so the function (which only refuses)
    # runs only for a statement that must fail: nothing is called per row otherwise.
    """
    CREATE TRIGGER buckets_guard_insert BEFORE INSERT ON buckets
    FOR EACH ROW WHEN (NEW.remaining <> 0 OR NEW.last_entry_id IS NOT NULL)
    EXECUTE FUNCTION ledger_guard_buckets()
    """,
    # pg_trigger_depth() is 0 for a statement sent by a client and 1 for the UPDATE run
    # by ledger_apply_entries (the entries trigger).
    """
    CREATE TRIGGER buckets_guard_update BEFORE UPDATE OF remaining, last_entry_id ON buckets
    FOR EACH ROW WHEN (pg_trigger_depth() < 1
                       AND (NEW.remaining IS DISTINCT FROM OLD.remaining
                            OR NEW.last_entry_id IS DISTINCT FROM OLD.last_entry_id))
    EXECUTE FUNCTION ledger_guard_buckets()
    """,
    """
    CREATE FUNCTION ledger_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        RAISE EXCEPTION 'ledger: balance_entries is append-only (post a correcting entry)'
            USING ERRCODE = 'integrity_constraint_violation';
    END $$
    """,
    """
    CREATE TRIGGER balance_entries_append_only BEFORE UPDATE OR DELETE ON balance_entries
    FOR EACH ROW EXECUTE FUNCTION ledger_append_only()
    """,
]

PG_DOWN = [
    "DROP TRIGGER balance_entries_append_only ON balance_entries",
    "DROP FUNCTION ledger_append_only()",
    "DROP TRIGGER buckets_guard_update ON buckets",
    "DROP TRIGGER buckets_guard_insert ON buckets",
    "DROP FUNCTION ledger_guard_buckets()",
    "DROP TRIGGER balance_entries_apply ON balance_entries",
    "DROP FUNCTION ledger_apply_entries()",
]

SQLITE_UP = [
    """
    CREATE TRIGGER balance_entries_apply AFTER INSERT ON balance_entries FOR EACH ROW
    BEGIN
        UPDATE buckets
        SET remaining = remaining + NEW.delta, last_entry_id = NEW.id,
            updated_at = NEW.created_at
        WHERE id = NEW.bucket_id AND account_id = NEW.account_id;
        SELECT RAISE(ABORT, 'ledger: an entry names a bucket of another account')
        WHERE changes() = 0;
    END
    """,
    """
    CREATE TRIGGER buckets_guard_insert BEFORE INSERT ON buckets FOR EACH ROW
    WHEN NEW.remaining <> 0 OR NEW.last_entry_id IS NOT NULL
    BEGIN
        SELECT RAISE(ABORT, 'ledger: a new bucket starts empty; fill it with an entry');
    END
    """,
    """
    CREATE TRIGGER buckets_guard_update BEFORE UPDATE OF remaining, last_entry_id ON buckets
    FOR EACH ROW
    WHEN NEW.remaining IS NOT OLD.remaining OR NEW.last_entry_id IS NOT OLD.last_entry_id
    BEGIN
        SELECT RAISE(ABORT, 'ledger: buckets.remaining changes only through balance_entries')
        WHERE NOT EXISTS (
            SELECT 1 FROM balance_entries e
            WHERE e.id = NEW.last_entry_id AND e.bucket_id = NEW.id
              AND e.id > coalesce(OLD.last_entry_id, 0)
              AND e.delta = NEW.remaining - OLD.remaining
        );
    END
    """,
    """
    CREATE TRIGGER balance_entries_no_update BEFORE UPDATE ON balance_entries FOR EACH ROW
    BEGIN
        SELECT RAISE(ABORT, 'ledger: balance_entries is append-only (post a correcting entry)');
    END
    """,
    """
    CREATE TRIGGER balance_entries_no_delete BEFORE DELETE ON balance_entries FOR EACH ROW
    BEGIN
        SELECT RAISE(ABORT, 'ledger: balance_entries is append-only (post a correcting entry)');
    END
    """,
]

SQLITE_DOWN = [
    "DROP TRIGGER balance_entries_no_delete",
    "DROP TRIGGER balance_entries_no_update",
    "DROP TRIGGER buckets_guard_update",
    "DROP TRIGGER buckets_guard_insert",
    "DROP TRIGGER balance_entries_apply",
]


def upgrade() -> None:
    op.add_column('buckets', sa.Column('last_entry_id', sa.BigInteger(), nullable=True))
    # Buckets that already hold entries: the newest one was applied last.
    op.execute(
        "UPDATE buckets SET last_entry_id = "
        "(SELECT max(e.id) FROM balance_entries e WHERE e.bucket_id = buckets.id)"
    )
    postgres = op.get_bind().dialect.name == "postgresql"
    for statement in PG_UP if postgres else SQLITE_UP:
        op.execute(statement)


def downgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    for statement in PG_DOWN if postgres else SQLITE_DOWN:
        op.execute(statement)
    op.execute("ALTER TABLE buckets DROP COLUMN last_entry_id")
