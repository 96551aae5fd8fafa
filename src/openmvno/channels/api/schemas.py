"""API-only schema bits: problem documents for OpenAPI and typed path parameters.
(The strict request base model is ``openmvno.fields.Strict``.)"""

from __future__ import annotations

from typing import Annotated

from fastapi import Path
from pydantic import BaseModel

from openmvno import fields

GuestLink = Annotated[
    str,
    Path(description="A guest order's link token, as given when the order was created"),
    fields.text(128, min_length=1, pattern=r"^[A-Za-z0-9_-]+$"),
]
"""The link token of a guest order in a path (URL-safe; a wrong one is a 404)."""
ProviderName = Annotated[
    str,
    Path(description="The payment provider, e.g. `sandbox`"),
    fields.text(20, min_length=1, pattern=r"^[a-z0-9_-]+$"),
]


class Problem(BaseModel):
    """RFC 9457 problem details."""

    type: str
    title: str
    status: int
    detail: str
    code: str
    instance: str | None = None


PROBLEMS = {
    s: {"model": Problem, "description": d}
    for s, d in {
        400: "Bad request",
        401: "Not logged in",
        403: "Not allowed",
        404: "Not found",
        409: "Conflict",
        422: "Invalid input",
        429: "Too many attempts",
    }.items()
}
