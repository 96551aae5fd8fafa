"""saved payment cards and auto top-up

Revision ID: 20261202_saved_cards
Revises: 20261202_lifecycle
Create Date: 2026-12-02 00:00:00

The sandbox's saved cards, setups and off-session charges; our customers at the
provider, saved cards (never a number), card setups; auto top-up settings and the
month's top-ups; and payment attempts that charge a saved card off-session (no order
yet: ``order_id`` becomes nullable, a UNIQUE ``idempotency_key`` and the card).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import openmvno.db

revision: str = '20261202_saved_cards'
down_revision: str | None = '20261202_lifecycle'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


_ATTEMPT_COLUMNS = (
    "order_id, account_id, provider, method, provider_ref, amount_minor, currency, state, "
    "failure_code, next_action, settled_at, id, created_at, updated_at"
)


def _attempts_ddl(*, saved_cards: bool) -> str:
    """payment_attempts as SQLite holds it: before this revision (``order_id NOT NULL``),
    or after it (nullable ``order_id``, ``idempotency_key``, ``saved_card_id``)."""
    extra_columns = (
        "\tidempotency_key VARCHAR(120), \n\tsaved_card_id CHAR(32), \n" if saved_cards else ""
    )
    extra_constraints = (
        ", \n\tCONSTRAINT fk_payment_attempts_saved_card_id_saved_cards FOREIGN KEY(saved_card_id)"
        " REFERENCES saved_cards (id), \n"
        "\tCONSTRAINT uq_payment_attempts_idempotency_key UNIQUE (idempotency_key)"
        if saved_cards else ""
    )
    return (
        "CREATE TABLE payment_attempts (\n"
        f"\torder_id CHAR(32){'' if saved_cards else ' NOT NULL'}, \n"
        "\taccount_id CHAR(32), \n\tprovider VARCHAR(20) NOT NULL, \n"
        "\tmethod VARCHAR(20) NOT NULL, \n\tprovider_ref VARCHAR(120), \n"
        "\tamount_minor BIGINT NOT NULL, \n\tcurrency VARCHAR(3) NOT NULL, \n"
        "\tstate VARCHAR(20) NOT NULL, \n\tfailure_code VARCHAR(40), \n"
        "\tnext_action JSON NOT NULL, \n\tsettled_at DATETIME, \n\tid CHAR(32) NOT NULL, \n"
        "\tcreated_at DATETIME NOT NULL, \n\tupdated_at DATETIME NOT NULL, \n"
        f"{extra_columns}"
        "\tCONSTRAINT pk_payment_attempts PRIMARY KEY (id), \n"
        "\tCONSTRAINT fk_payment_attempts_account_id_accounts FOREIGN KEY(account_id)"
        " REFERENCES accounts (id), \n"
        "\tCONSTRAINT fk_payment_attempts_order_id_orders FOREIGN KEY(order_id)"
        " REFERENCES orders (id), \n"
        "\tCONSTRAINT uq_payment_attempts_provider_provider_ref UNIQUE (provider, provider_ref)"
        f"{extra_constraints}\n)"
    )


def _rebuild_attempts_on_sqlite(*, saved_cards: bool) -> None:
    """SQLite cannot relax a NOT NULL in place. The rows wait in a plain copy while the
    table is dropped and made again; other tables' rows that point at it (refunds) are
    checked at commit (``defer_foreign_keys``), when their attempts are back. (Copying into
    the new table *before* dropping the old one, as a batch operation does, would leave
    those checks failed.)"""
    op.execute("PRAGMA defer_foreign_keys = ON")
    op.execute("CREATE TABLE _payment_attempts_copy AS SELECT * FROM payment_attempts")
    op.execute("DROP TABLE payment_attempts")
    op.execute(_attempts_ddl(saved_cards=saved_cards))
    keep = "" if saved_cards else " WHERE order_id IS NOT NULL"
    # constant column names only: nothing from outside reaches this statement
    op.execute(
        f"INSERT INTO payment_attempts ({_ATTEMPT_COLUMNS}) "  # noqa: S608
        f"SELECT {_ATTEMPT_COLUMNS} FROM _payment_attempts_copy{keep}"
    )
    op.execute("DROP TABLE _payment_attempts_copy")
    op.execute("CREATE INDEX ix_payment_attempts_account_id ON payment_attempts (account_id)")
    op.execute("CREATE INDEX ix_payment_attempts_order_id ON payment_attempts (order_id)")
    op.execute(
        "CREATE INDEX ix_payment_attempts_state_created ON payment_attempts (state, created_at)"
    )


def upgrade() -> None:
    op.create_table('sandbox_cards',
    sa.Column('token', sa.String(length=40), nullable=False),
    sa.Column('customer_ref', sa.String(length=40), nullable=False),
    sa.Column('brand', sa.String(length=20), nullable=False),
    sa.Column('last4', sa.String(length=4), nullable=False),
    sa.Column('exp_month', sa.Integer(), nullable=False),
    sa.Column('exp_year', sa.Integer(), nullable=False),
    sa.Column('charges', sa.String(length=20), nullable=False),
    sa.Column('detached_at', openmvno.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('created_at', openmvno.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', openmvno.db.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_sandbox_cards')),
    sa.UniqueConstraint('token', name=op.f('uq_sandbox_cards_token'))
    )
    with op.batch_alter_table('sandbox_cards', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_sandbox_cards_customer_ref'), ['customer_ref'], unique=False)
    op.create_table('sandbox_charges',
    sa.Column('reference', sa.String(length=40), nullable=False),
    sa.Column('idempotency_key', sa.String(length=120), nullable=False),
    sa.Column('token', sa.String(length=40), nullable=False),
    sa.Column('amount_minor', sa.BigInteger(), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('description', sa.String(length=200), nullable=False),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('decline_code', sa.String(length=40), nullable=True),
    sa.Column('created_at', openmvno.db.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('reference', name=op.f('pk_sandbox_charges')),
    sa.UniqueConstraint('idempotency_key', name=op.f('uq_sandbox_charges_idempotency_key'))
    )
    op.create_table('sandbox_setups',
    sa.Column('reference', sa.String(length=40), nullable=False),
    sa.Column('setup_id', sa.String(length=64), nullable=False),
    sa.Column('customer_ref', sa.String(length=40), nullable=False),
    sa.Column('return_url', sa.String(length=2000), nullable=False),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('failure_code', sa.String(length=40), nullable=True),
    sa.Column('card_token', sa.String(length=40), nullable=True),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('created_at', openmvno.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', openmvno.db.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_sandbox_setups')),
    sa.UniqueConstraint('reference', name=op.f('uq_sandbox_setups_reference')),
    sa.UniqueConstraint('setup_id', name=op.f('uq_sandbox_setups_setup_id'))
    )
    op.create_table('payment_customers',
    sa.Column('account_id', sa.Uuid(), nullable=False),
    sa.Column('provider', sa.String(length=20), nullable=False),
    sa.Column('customer_ref', sa.String(length=120), nullable=False),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('created_at', openmvno.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', openmvno.db.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], name=op.f('fk_payment_customers_account_id_accounts')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_payment_customers')),
    sa.UniqueConstraint('account_id', 'provider', name=op.f('uq_payment_customers_account_id_provider'))
    )
    op.create_table('saved_cards',
    sa.Column('account_id', sa.Uuid(), nullable=False),
    sa.Column('provider', sa.String(length=20), nullable=False),
    sa.Column('customer_ref', sa.String(length=120), nullable=False),
    sa.Column('card_ref', sa.String(length=120), nullable=False),
    sa.Column('brand', sa.String(length=20), nullable=False),
    sa.Column('last4', sa.String(length=4), nullable=False),
    sa.Column('exp_month', sa.Integer(), nullable=False),
    sa.Column('exp_year', sa.Integer(), nullable=False),
    sa.Column('state', sa.Enum('active', 'removed', name='cardstate', native_enum=False, length=20), nullable=False),
    sa.Column('is_default', sa.Boolean(), nullable=False),
    sa.Column('removed_at', openmvno.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('created_at', openmvno.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', openmvno.db.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], name=op.f('fk_saved_cards_account_id_accounts')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_saved_cards')),
    sa.UniqueConstraint('provider', 'card_ref', name=op.f('uq_saved_cards_provider_card_ref'))
    )
    with op.batch_alter_table('saved_cards', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_saved_cards_account_id'), ['account_id'], unique=False)
        batch_op.create_index('ix_saved_cards_expiry', ['exp_year', 'exp_month'], unique=False)
        batch_op.create_index('uq_saved_cards_default', ['account_id'], unique=True, sqlite_where=sa.text("is_default AND state = 'active'"), postgresql_where=sa.text("is_default AND state = 'active'"))
    op.create_table('auto_topups',
    sa.Column('account_id', sa.Uuid(), nullable=False),
    sa.Column('enabled', sa.Boolean(), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('threshold_minor', sa.BigInteger(), nullable=False),
    sa.Column('amount_minor', sa.BigInteger(), nullable=False),
    sa.Column('card_id', sa.Uuid(), nullable=True),
    sa.Column('max_per_month', sa.Integer(), nullable=False),
    sa.Column('next_try_at', openmvno.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('claimed_until', openmvno.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('last_failure_code', sa.String(length=40), nullable=True),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('created_at', openmvno.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', openmvno.db.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], name=op.f('fk_auto_topups_account_id_accounts')),
    sa.ForeignKeyConstraint(['card_id'], ['saved_cards.id'], name=op.f('fk_auto_topups_card_id_saved_cards')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_auto_topups')),
    sa.UniqueConstraint('account_id', name=op.f('uq_auto_topups_account_id'))
    )
    with op.batch_alter_table('auto_topups', schema=None) as batch_op:
        batch_op.create_index('ix_auto_topups_due', ['enabled', 'next_try_at'], unique=False)
    op.create_table('card_setups',
    sa.Column('account_id', sa.Uuid(), nullable=False),
    sa.Column('provider', sa.String(length=20), nullable=False),
    sa.Column('customer_ref', sa.String(length=120), nullable=False),
    sa.Column('reference', sa.String(length=120), nullable=True),
    sa.Column('state', sa.Enum('open', 'succeeded', 'failed', name='setupstate', native_enum=False, length=20), nullable=False),
    sa.Column('next_action', sa.JSON(), nullable=False),
    sa.Column('failure_code', sa.String(length=40), nullable=True),
    sa.Column('card_id', sa.Uuid(), nullable=True),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('created_at', openmvno.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', openmvno.db.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], name=op.f('fk_card_setups_account_id_accounts')),
    sa.ForeignKeyConstraint(['card_id'], ['saved_cards.id'], name=op.f('fk_card_setups_card_id_saved_cards')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_card_setups')),
    sa.UniqueConstraint('provider', 'reference', name=op.f('uq_card_setups_provider_reference'))
    )
    with op.batch_alter_table('card_setups', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_card_setups_account_id'), ['account_id'], unique=False)
    op.create_table('auto_topup_runs',
    sa.Column('key', sa.String(length=120), nullable=False),
    sa.Column('account_id', sa.Uuid(), nullable=False),
    sa.Column('period', sa.String(length=7), nullable=False),
    sa.Column('seq', sa.Integer(), nullable=False),
    sa.Column('amount_minor', sa.BigInteger(), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('state', sa.Enum('charging', 'succeeded', 'declined', name='topupstate', native_enum=False, length=20), nullable=False),
    sa.Column('attempt_id', sa.Uuid(), nullable=True),
    sa.Column('decline_code', sa.String(length=40), nullable=True),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('created_at', openmvno.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', openmvno.db.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], name=op.f('fk_auto_topup_runs_account_id_accounts')),
    sa.ForeignKeyConstraint(['attempt_id'], ['payment_attempts.id'], name=op.f('fk_auto_topup_runs_attempt_id_payment_attempts')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_auto_topup_runs')),
    sa.UniqueConstraint('account_id', 'period', 'seq', name=op.f('uq_auto_topup_runs_account_id_period_seq')),
    sa.UniqueConstraint('key', name=op.f('uq_auto_topup_runs_key'))
    )

    if op.get_bind().dialect.name == "sqlite":
        _rebuild_attempts_on_sqlite(saved_cards=True)
    else:
        op.add_column('payment_attempts', sa.Column('idempotency_key', sa.String(length=120), nullable=True))
        op.add_column('payment_attempts', sa.Column('saved_card_id', sa.Uuid(), nullable=True))
        op.alter_column('payment_attempts', 'order_id', existing_type=sa.Uuid(), nullable=True)
        op.create_unique_constraint(op.f('uq_payment_attempts_idempotency_key'), 'payment_attempts', ['idempotency_key'])
        op.create_foreign_key(op.f('fk_payment_attempts_saved_card_id_saved_cards'), 'payment_attempts', 'saved_cards', ['saved_card_id'], ['id'])


def downgrade() -> None:
    op.drop_table('auto_topup_runs')  # it points at saved-card attempts
    if op.get_bind().dialect.name == "sqlite":
        _rebuild_attempts_on_sqlite(saved_cards=False)
    else:
        op.execute("DELETE FROM payment_attempts WHERE order_id IS NULL")
        op.drop_constraint(op.f('fk_payment_attempts_saved_card_id_saved_cards'), 'payment_attempts', type_='foreignkey')
        op.drop_constraint(op.f('uq_payment_attempts_idempotency_key'), 'payment_attempts', type_='unique')
        op.alter_column('payment_attempts', 'order_id', existing_type=sa.Uuid(), nullable=False)
        op.drop_column('payment_attempts', 'saved_card_id')
        op.drop_column('payment_attempts', 'idempotency_key')
    with op.batch_alter_table('card_setups', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_card_setups_account_id'))
    op.drop_table('card_setups')
    with op.batch_alter_table('auto_topups', schema=None) as batch_op:
        batch_op.drop_index('ix_auto_topups_due')
    op.drop_table('auto_topups')
    with op.batch_alter_table('saved_cards', schema=None) as batch_op:
        batch_op.drop_index('uq_saved_cards_default', sqlite_where=sa.text("is_default AND state = 'active'"), postgresql_where=sa.text("is_default AND state = 'active'"))
        batch_op.drop_index('ix_saved_cards_expiry')
        batch_op.drop_index(batch_op.f('ix_saved_cards_account_id'))
    op.drop_table('saved_cards')
    op.drop_table('payment_customers')
    op.drop_table('sandbox_setups')
    op.drop_table('sandbox_charges')
    with op.batch_alter_table('sandbox_cards', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_sandbox_cards_customer_ref'))
    op.drop_table('sandbox_cards')
