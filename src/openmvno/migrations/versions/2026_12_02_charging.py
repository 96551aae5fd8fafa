"""usage charging at batch speed: the journal's bucket reference checked by the ledger's
own trigger (PostgreSQL)

Revision ID: 20261202_charging
Revises: 20261202_storm
Create Date: 2026-12-02 19:00:00

PostgreSQL: ``balance_entries.bucket_id`` loses its foreign key. Every inserted entry's
check locked its bucket ``FOR KEY SHARE`` — a bucket the same transaction had already
locked ``FOR NO KEY UPDATE`` (a usage batch rates against the balances it locked), so
each check also made a multixact: 13 µs an entry, a third of a spread usage batch's
ledger statement. The ledger's statement trigger already refuses an entry whose
(bucket, account) pair is not a bucket's (its message now says so), which covers an
unknown bucket too; and a new row trigger refuses deleting a bucket that has entries,
the other half of what the key did. SQLite keeps its foreign key (one writer, no row
locks: a check is one index probe; dropping it would rebuild the journal's table).
"""

from collections.abc import Sequence

from alembic import op

revision: str = "20261202_charging"
down_revision: str | None = "20261202_storm"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

FK = "fk_balance_entries_bucket_id_buckets"

APPLY = """
CREATE OR REPLACE FUNCTION ledger_apply_entries() RETURNS trigger LANGUAGE plpgsql AS $$
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
        RAISE EXCEPTION 'ledger: an entry names %', {what}
            USING ERRCODE = 'foreign_key_violation';
    END IF;
    RETURN NULL;
END $$
"""

PG_UP = [
    f"ALTER TABLE balance_entries DROP CONSTRAINT {FK}",
    APPLY.format(what="'an unknown bucket or a bucket of another account'"),
    """
    CREATE FUNCTION ledger_keep_buckets() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF EXISTS (SELECT 1 FROM balance_entries WHERE bucket_id = OLD.id) THEN
            RAISE EXCEPTION 'ledger: a bucket with journal entries is never deleted'
                USING ERRCODE = 'foreign_key_violation';
        END IF;
        RETURN OLD;
    END $$
    """,
    """
    CREATE TRIGGER buckets_keep BEFORE DELETE ON buckets
    FOR EACH ROW EXECUTE FUNCTION ledger_keep_buckets()
    """,
]

PG_DOWN = [
    "DROP TRIGGER buckets_keep ON buckets",
    "DROP FUNCTION ledger_keep_buckets()",
    APPLY.format(what="'a bucket of another account'"),
    f"ALTER TABLE balance_entries ADD CONSTRAINT {FK} FOREIGN KEY (bucket_id)"
    " REFERENCES buckets (id)",
]


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for statement in PG_UP:
            op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for statement in PG_DOWN:
            op.execute(statement)
