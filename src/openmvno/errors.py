"""Domain errors. Each carries a stable ``code``, an HTTP status and an English
message (a translation catalog key) with parameters; channels render them as
RFC 9457 problem details in the caller's language.

    DomainError
    ├── InvalidInput      422
    ├── Unauthorized      401
    ├── Forbidden         403
    ├── NotFound          404
    ├── Conflict          409
    ├── PaymentRequired   402
    └── TooManyAttempts   429 (with retry_after seconds)
"""

from __future__ import annotations

from typing import Any, ClassVar


class DomainError(Exception):
    """A rule was broken; tell the user which one."""

    status: ClassVar[int] = 400

    def __init__(
        self, code: str, message: str, /, *, keep_changes: bool = False, **params: Any
    ) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.params = params
        self.keep_changes = keep_changes
        """Commit the transaction anyway (e.g. a failed attempt that must be counted)."""


class InvalidInput(DomainError):
    status = 422


class Unauthorized(DomainError):
    status = 401


class Forbidden(DomainError):
    status = 403


class NotFound(DomainError):
    status = 404


class Conflict(DomainError):
    status = 409


class PaymentRequired(DomainError):
    status = 402


class TooManyAttempts(DomainError):
    status = 429

    def __init__(
        self,
        code: str,
        message: str,
        /,
        *,
        retry_after: int,
        keep_changes: bool = False,
        **params: Any,
    ) -> None:
        super().__init__(
            code, message, keep_changes=keep_changes, retry_after=retry_after, **params
        )
        self.retry_after = retry_after
