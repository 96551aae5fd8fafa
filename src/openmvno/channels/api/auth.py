"""/api/v1/auth and /api/v1/me."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response, status

from openmvno.accounts import service as accounts
from openmvno.accounts import tokens
from openmvno.accounts.models import Account, CodePurpose
from openmvno.accounts.schemas import (
    AccountOut,
    CodeSentOut,
    PasswordChangedOut,
    RefreshIn,
    RegisterIn,
    ResendIn,
    ResetIn,
    TokenIn,
    TokenOut,
    VerifiedOut,
    VerifyIn,
)
from openmvno.channels.api.schemas import PROBLEMS
from openmvno.web.deps import RT, Me, Session

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


def _client(request: Request) -> str:
    """The caller's address, for the limits per client address."""
    return request.client.host if request.client else "unknown"


def _sent(rt: RT, sent: accounts.CodeRequest) -> CodeSentOut:
    return CodeSentOut(
        login=sent.login,
        channel=sent.channel,
        resend_after_seconds=rt.settings.otp_resend_seconds,
        expires_in_seconds=rt.settings.otp_ttl_minutes * 60,
    )


@router.post("/auth/register", status_code=status.HTTP_201_CREATED)
async def register(body: RegisterIn, request: Request, session: Session, rt: RT) -> CodeSentOut:
    """Create an account; a 6-digit code goes out by SMS (or email). If the phone number
    or email already has an account, its owner is told instead; the answer is the same."""
    sent = await accounts.register(session, rt, **body.model_dump(), client=_client(request))
    return _sent(rt, sent)


@router.post("/auth/verify")
async def verify(body: VerifyIn, request: Request, session: Session, rt: RT) -> VerifiedOut:
    """Verify the account with its code; then log in. Any failing code is `code_invalid`."""
    await accounts.verify(
        session, rt, login=body.login, code=body.code, client=_client(request)
    )
    return VerifiedOut()


@router.post("/auth/resend", status_code=status.HTTP_202_ACCEPTED)
async def resend(body: ResendIn, request: Request, session: Session, rt: RT) -> CodeSentOut:
    """Send a new code; 60 s cool-down, daily cap; `channel: email` if SMS does not arrive.
    The answer is the same whether or not an account uses the login."""
    sent = await accounts.resend(
        session, rt, login=body.login, purpose=CodePurpose(body.purpose), channel=body.channel,
        client=_client(request),
    )
    return _sent(rt, sent)


@router.post("/auth/token")
async def token(body: TokenIn, request: Request, session: Session, rt: RT) -> TokenOut:
    """Log in with phone or email and password."""
    _, pair = await accounts.login(
        session, rt, login=body.login, password=body.password, client=_client(request)
    )
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
async def password_reset_request(
    body: ResendIn, request: Request, session: Session, rt: RT
) -> CodeSentOut:
    """Send a reset code if an account uses the login (the answer is the same either way)."""
    sent = await accounts.request_password_reset(
        session, rt, login=body.login, channel=body.channel, client=_client(request)
    )
    return _sent(rt, sent)


@router.post("/auth/password-reset/confirm")
async def password_reset_confirm(
    body: ResetIn, request: Request, session: Session, rt: RT
) -> PasswordChangedOut:
    """Set a new password with the reset code; every session of the account ends."""
    await accounts.reset_password(
        session, rt, login=body.login, code=body.code, new_password=body.new_password,
        client=_client(request),
    )
    return PasswordChangedOut()


@router.get("/me")
async def me(account: Me) -> AccountOut:
    return account_out(account)
