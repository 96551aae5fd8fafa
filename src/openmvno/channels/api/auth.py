"""/api/v1/auth and /api/v1/me."""

from __future__ import annotations

from fastapi import APIRouter, Response, status

from openmvno.accounts import service as accounts
from openmvno.accounts import tokens
from openmvno.accounts.models import Account, Channel, CodePurpose
from openmvno.accounts.schemas import (
    AccountOut,
    CodeSentOut,
    RefreshIn,
    RegisterIn,
    ResendIn,
    ResetIn,
    TokenIn,
    TokenOut,
    VerifyIn,
)
from openmvno.channels.api.deps import RT, Me, Session
from openmvno.channels.api.schemas import PROBLEMS

router = APIRouter(prefix="/api/v1", tags=["auth"], responses=PROBLEMS)  # type: ignore[arg-type]


def account_out(account: Account) -> AccountOut:
    return AccountOut(
        id=account.id,
        role=account.role,
        name=account.name,
        phone=account.phone,
        email=account.email,
        language=account.language,
        verified=account.verified_at is not None,
        created_at=account.created_at,
    )


def _sent(rt: RT, channel: Channel) -> CodeSentOut:
    return CodeSentOut(
        channel=channel,
        resend_after_seconds=rt.settings.otp_resend_seconds,
        expires_in_seconds=rt.settings.otp_ttl_minutes * 60,
    )


@router.post("/auth/register", status_code=status.HTTP_201_CREATED)
async def register(body: RegisterIn, session: Session, rt: RT) -> AccountOut:
    """Create an account; a 6-digit code goes out by SMS (or email)."""
    account = await accounts.register(session, rt, **body.model_dump())
    return account_out(account)


@router.post("/auth/verify")
async def verify(body: VerifyIn, session: Session, rt: RT) -> AccountOut:
    return account_out(await accounts.verify(session, rt, login=body.login, code=body.code))


@router.post("/auth/resend", status_code=status.HTTP_202_ACCEPTED)
async def resend(body: ResendIn, session: Session, rt: RT) -> CodeSentOut:
    """Send a new code; 60 s cool-down, daily cap; `channel: email` if SMS does not arrive."""
    purpose = CodePurpose(body.purpose)
    if purpose is CodePurpose.reset_password:
        await accounts.request_password_reset(session, rt, login=body.login, channel=body.channel)
        return _sent(rt, body.channel or Channel.sms)
    return _sent(rt, await accounts.resend(session, rt, login=body.login, channel=body.channel))


@router.post("/auth/token")
async def token(body: TokenIn, session: Session, rt: RT) -> TokenOut:
    """Log in with phone or email and password."""
    _, pair = await accounts.login(session, rt, login=body.login, password=body.password)
    return TokenOut(**pair.__dict__)


@router.post("/auth/refresh")
async def refresh(body: RefreshIn, session: Session, rt: RT) -> TokenOut:
    pair = await tokens.rotate(session, rt, body.refresh_token)
    return TokenOut(**pair.__dict__)


@router.post("/auth/logout", status_code=status.HTTP_204_NO_CONTENT)
async def logout(body: RefreshIn, session: Session) -> Response:
    await tokens.revoke(session, body.refresh_token)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/auth/password-reset", status_code=status.HTTP_202_ACCEPTED)
async def password_reset_request(body: ResendIn, session: Session, rt: RT) -> CodeSentOut:
    """Send a reset code if the account exists (the answer is the same either way)."""
    await accounts.request_password_reset(session, rt, login=body.login, channel=body.channel)
    return _sent(rt, body.channel or Channel.sms)


@router.post("/auth/password-reset/confirm")
async def password_reset_confirm(body: ResetIn, session: Session, rt: RT) -> AccountOut:
    account = await accounts.reset_password(
        session, rt, login=body.login, code=body.code, new_password=body.new_password
    )
    return account_out(account)


@router.get("/me")
async def me(account: Me) -> AccountOut:
    return account_out(account)
