"""What an operator sees at the terminal: one clear line instead of a traceback, counts
that read right, and commands that say what they did."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from openmvno.cli import app
from openmvno.migrate import pending, upgrade
from tests.lines.helpers import HEADER

SECRET = "cli-polish-secret-key-0123456789abcdef"


def _env(data_dir: Path, **extra: str) -> dict[str, str]:
    return {
        "OPENMVNO_DATA_DIR": str(data_dir),
        "OPENMVNO_DATABASE_URL": "",
        "OPENMVNO_ENVIRONMENT": "development",
        "OPENMVNO_SECRET_KEY": SECRET,
        **extra,
    }


def _run(env: dict[str, str], *args: str) -> Result:
    return CliRunner().invoke(app, list(args), env=env)


@pytest.mark.parametrize(
    "args",
    [["worker", "--once"], ["ledger", "check"], ["outbox", "status"], ["outbox", "retry"],
     ["import", "lines", "missing.csv"]],
)
def test_a_command_on_a_database_never_migrated_says_so_in_one_line(
    tmp_path: Path, args: list[str]
) -> None:
    if args[0] == "import":
        (tmp_path / "missing.csv").write_text(HEADER)
        args = ["import", "lines", str(tmp_path / "missing.csv")]
    r = _run(_env(tmp_path), *args)
    assert r.exit_code == 2, r.output
    assert "Traceback" not in r.output
    lines = [line for line in r.output.splitlines() if line.strip()]
    assert len(lines) == 1
    assert "lacks" in lines[0] and "openmvno db upgrade" in lines[0]


def test_db_upgrade_says_what_it_applied(tmp_path: Path) -> None:
    env = _env(tmp_path)
    r = _run(env, "db", "upgrade")
    assert r.exit_code == 0, r.output
    assert "applied" in r.output and "20261201_refunds" in r.output
    url = f"sqlite+aiosqlite:///{tmp_path.resolve() / 'openmvno.db'}"
    assert asyncio.run(pending(url)) == []
    again = _run(env, "db", "upgrade")
    assert "nothing to apply" in again.output
    # ... and the commands that refused before now run.
    assert _run(env, "ledger", "check", "--data-dir", str(tmp_path)).exit_code == 0


def test_ledger_check_takes_the_data_dir_like_the_other_commands(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    asyncio.run(upgrade(f"sqlite+aiosqlite:///{elsewhere.resolve() / 'openmvno.db'}"))
    r = _run(_env(tmp_path / "unused"), "ledger", "check", "--data-dir", str(elsewhere))
    assert r.exit_code == 0, r.output
    assert "0 buckets checked" in r.output


def test_an_unknown_payment_provider_is_one_line_and_exit_2(tmp_path: Path) -> None:
    r = _run(_env(tmp_path, OPENMVNO_PAYMENT_PROVIDER="paypal"), "worker", "--once")
    assert r.exit_code == 2
    assert "Traceback" not in r.output
    lines = [line for line in r.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "OPENMVNO_PAYMENT_PROVIDER" in lines[0]


def test_demo_data_is_refused_in_production(tmp_path: Path) -> None:
    r = _run(_env(tmp_path, OPENMVNO_ENVIRONMENT="production"), "demo")
    assert r.exit_code == 2
    assert "refused in production" in r.output
    assert not (tmp_path / "openmvno.db").exists()


def test_import_counts_bad_rows_not_problems(tmp_path: Path) -> None:
    env = _env(tmp_path)
    assert _run(env, "db", "upgrade").exit_code == 0
    csv = tmp_path / "lines.csv"
    # One row, three problems: bad kind, bad ICCID, bad number.
    csv.write_text(HEADER + "phone,123,abc,,,\n")
    r = _run(env, "import", "lines", str(csv))
    assert r.exit_code == 1
    assert "Bad rows in the file: 1." in r.output
