"""Staff notes on a subscriber's account."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from openmvno import clock
from openmvno.accounts.models import Account
from openmvno.audit import service as audit
from openmvno.errors import InvalidInput
from openmvno.staff.models import AccountNote

MAX_NOTE = 2000


async def add(
    session: AsyncSession, *, author: Account, account_id: uuid.UUID, body: str
) -> AccountNote:
    text = body.strip()
    if not text:
        raise InvalidInput("note_empty", "Write the note first.")
    if len(text) > MAX_NOTE:
        raise InvalidInput("note_too_long", "A note has at most {max} characters.", max=MAX_NOTE)
    note = AccountNote(
        id=uuid.uuid4(),
        account_id=account_id,
        author_id=author.id,
        body=text,
        created_at=clock.now(),
    )
    session.add(note)
    await audit.record(
        session,
        actor=author,
        action="account.note",
        subject_type="account",
        subject_id=account_id,
        account_id=account_id,
        data={"note_id": str(note.id), "length": len(text)},
    )
    await session.flush()
    return note


async def list_for(
    session: AsyncSession, account_id: uuid.UUID, limit: int = 50
) -> Sequence[tuple[AccountNote, str]]:
    """The account's notes, newest first, each with its author's name."""
    rows = await session.execute(
        select(AccountNote, Account.name)
        .join(Account, Account.id == AccountNote.author_id)
        .where(AccountNote.account_id == account_id)
        .order_by(AccountNote.created_at.desc(), AccountNote.id.desc())
        .limit(limit)
    )
    return [(n, name) for n, name in rows.all()]
