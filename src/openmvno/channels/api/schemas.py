"""Shared API schema bits."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Strict(BaseModel):
    """Request bodies: unknown fields are an error, strings are trimmed."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


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
