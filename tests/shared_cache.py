"""The cache directory every test and every process a test starts shares."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


def shared_cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One cache directory for the whole run, every xdist worker and every process a test
    starts: what is kept there is named by what it was made from (the receipts' working
    font), so sharing it only spares making it again."""
    base = tmp_path_factory.getbasetemp()
    return (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "shared-cache"
