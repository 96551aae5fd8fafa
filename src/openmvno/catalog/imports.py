"""All-or-nothing bulk imports: every bad row is reported, nothing is written if any is bad."""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import ValidationError

from openmvno.errors import InvalidInput


@dataclass(frozen=True, slots=True)
class RowError:
    """One problem in one row (``row`` is the item number or the file's line number)."""

    row: int
    message: str

    def __str__(self) -> str:
        return f"row {self.row}: {self.message}"


@dataclass(frozen=True, slots=True)
class ImportSummary:
    created: int
    updated: int = 0
    unchanged: int = 0


class ImportRejected(InvalidInput):
    """The file had bad rows; ``errors`` lists every one of them."""

    def __init__(self, errors: list[RowError]) -> None:
        super().__init__(
            "import_rejected",
            "Bad rows in the file: {count}. Nothing was imported.",
            count=len({e.row for e in errors}),  # a row with three problems is one bad row
        )
        self.errors = errors


def describe(exc: ValidationError) -> str:
    """A pydantic error as one readable line: ``price_minor: Input should be ...; ...``."""
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err.get("loc", ()))
        msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
        parts.append(f"{loc}: {msg}" if loc else msg)
    return "; ".join(parts)
