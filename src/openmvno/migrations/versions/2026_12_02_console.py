"""agent and admin consoles: staff sessions, TOTP, caller verifications, notes,
run-time settings

Revision ID: 20261202_console
Revises: 20261202_smpp
Create Date: 2026-12-02 01:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import openmvno.db

revision: str = "20261202_console"
down_revision: str | None = "20261202_smpp"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "staff_sessions",
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("csrf_secret", sa.String(length=64), nullable=False),
        sa.Column("second_factor_done", sa.Boolean(), nullable=False),
        sa.Column("expires_at", openmvno.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("idle_until", openmvno.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", openmvno.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("created_at", openmvno.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_staff_sessions_account_id_accounts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_staff_sessions")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_staff_sessions_token_hash")),
    )
    with op.batch_alter_table("staff_sessions", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_staff_sessions_account_id"), ["account_id"], unique=False
        )

    op.create_table(
        "staff_totp",
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column("secret", sa.String(length=64), nullable=False),
        sa.Column("enabled_at", openmvno.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("last_step", sa.Integer(), nullable=False),
        sa.Column("created_at", openmvno.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_staff_totp_account_id_accounts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("account_id", name=op.f("pk_staff_totp")),
    )

    op.create_table(
        "caller_verifications",
        sa.Column("staff_id", sa.Uuid(), nullable=False),
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column("method", sa.String(length=24), nullable=False),
        sa.Column("verified_at", openmvno.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("expires_at", openmvno.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_caller_verifications_account_id_accounts"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["staff_id"],
            ["accounts.id"],
            name=op.f("fk_caller_verifications_staff_id_accounts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_caller_verifications")),
    )
    with op.batch_alter_table("caller_verifications", schema=None) as batch_op:
        batch_op.create_index(
            "ix_caller_verifications_staff_account", ["staff_id", "account_id"], unique=False
        )

    op.create_table(
        "account_notes",
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column("author_id", sa.Uuid(), nullable=False),
        sa.Column("body", sa.String(length=2000), nullable=False),
        sa.Column("created_at", openmvno.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_account_notes_account_id_accounts"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["author_id"], ["accounts.id"], name=op.f("fk_account_notes_author_id_accounts")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_account_notes")),
    )
    with op.batch_alter_table("account_notes", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_account_notes_account_id"), ["account_id"], unique=False
        )

    op.create_table(
        "runtime_settings",
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("value", sa.JSON(), nullable=False),
        sa.Column("updated_at", openmvno.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_by", sa.Uuid(), nullable=True),
        sa.ForeignKeyConstraint(
            ["updated_by"], ["accounts.id"], name=op.f("fk_runtime_settings_updated_by_accounts")
        ),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_runtime_settings")),
    )


def downgrade() -> None:
    op.drop_table("runtime_settings")
    with op.batch_alter_table("account_notes", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_account_notes_account_id"))
    op.drop_table("account_notes")
    with op.batch_alter_table("caller_verifications", schema=None) as batch_op:
        batch_op.drop_index("ix_caller_verifications_staff_account")
    op.drop_table("caller_verifications")
    op.drop_table("staff_totp")
    with op.batch_alter_table("staff_sessions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_staff_sessions_account_id"))
    op.drop_table("staff_sessions")
