"""usage records keyed by (peer, record id): no surrogate id

Revision ID: 20261203_usage_key
Revises: 20261202_charging
Create Date: 2026-12-03 00:00:00

``usage_records.id`` was read by nothing: a record is found by its peer's own id (the
replay check) or by line and day (the history). Each batch of 10,000 records paid a
sequence value and an index entry per row for it. The unique key ``(peer_id,
record_id)`` becomes the primary key.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "20261203_usage_key"
down_revision: str | None = "20261202_charging"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("usage_records", schema=None) as batch_op:
        batch_op.drop_constraint("pk_usage_records", type_="primary")
        batch_op.drop_constraint("uq_usage_records_peer_id", type_="unique")
        batch_op.drop_column("id")
        batch_op.create_primary_key("pk_usage_records", ["peer_id", "record_id"])


def downgrade() -> None:
    with op.batch_alter_table("usage_records", schema=None) as batch_op:
        batch_op.drop_constraint("pk_usage_records", type_="primary")
        batch_op.create_unique_constraint("uq_usage_records_peer_id", ["peer_id", "record_id"])
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE usage_records ADD COLUMN id bigserial")
        op.execute("ALTER TABLE usage_records ADD CONSTRAINT pk_usage_records PRIMARY KEY (id)")
    else:
        # SQLite: a rowid alias, numbered as the rows were stored.
        with op.batch_alter_table("usage_records", schema=None, recreate="always") as batch_op:
            batch_op.add_column(sa.Column("id", sa.Integer(), nullable=True))
        op.execute("UPDATE usage_records SET id = rowid")
        with op.batch_alter_table("usage_records", schema=None) as batch_op:
            batch_op.alter_column("id", nullable=False)
            batch_op.create_primary_key("pk_usage_records", ["id"])
