"""What the worker remembers about each scheduled job (for ``openmvno jobs status``)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from openmvno.db import Base, IdMixin


class WorkerJob(IdMixin, Base):
    """One row per registered job name, written by whichever worker ran it last: when it
    last ran, when it last succeeded, and its consecutive failures with the last error
    (a failing job is retried every round; ``openmvno jobs retry`` clears the count)."""

    __tablename__ = "worker_jobs"

    name: Mapped[str] = mapped_column(String(120), unique=True)
    last_run_at: Mapped[datetime | None]
    last_ok_at: Mapped[datetime | None]
    last_failed_at: Mapped[datetime | None]
    failures: Mapped[int] = mapped_column(default=0)
    handled: Mapped[int] = mapped_column(default=0)
    """Items handled since the row was made (all workers together)."""
    last_error: Mapped[str] = mapped_column(String(500), default="")
