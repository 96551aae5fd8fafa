"""The benchmark harness: ``bench/run.py --quick --only … --write FILE`` rewrites the
sections it ran (marked as a quick run, with that run's sizes, figures and time) and
keeps every other section of the file byte for byte, in its place.

Runs the real command in a subprocess on SQLite only (the smoke sizes of ``--quick``);
no figure is judged, only that there is one where an operator looks for it."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NOTICES = "## Notices in batches (notify_many)"
LIFECYCLE = "## Line lifecycle moves in batches (lines.lifecycle)"


def sections(text: str) -> list[tuple[str, str]]:
    """(title line, whole section) in file order, as ``bench/run.py`` cuts them."""
    out = []
    for chunk in text.split("\n## ")[1:]:
        section = "## " + chunk.rstrip() + "\n"
        out.append((section.splitlines()[0], section))
    return out


def run_bench(target: Path, *args: str) -> subprocess.CompletedProcess[str]:
    # SQLite only: no PostgreSQL from the test run's environment reaches the bench.
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENMVNO_")}
    return subprocess.run(
        [sys.executable, str(ROOT / "bench" / "run.py"), *args, "--write", str(target)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=180, check=False,
    )


def test_quick_run_rewrites_the_sections_it_ran_and_keeps_the_others(tmp_path: Path) -> None:
    original = (ROOT / "docs" / "BENCHMARKS.md").read_text()
    target = tmp_path / "BENCHMARKS.md"
    target.write_text(original)
    started = datetime.now(UTC)

    out = run_bench(target, "--quick", "--only", "notices", "--only", "lifecycle")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "a section no benchmark writes" not in out.stderr  # none was dropped
    written = target.read_text()

    before, after = sections(original), sections(written)
    assert [t for t, _ in after] == [t for t, _ in before], "sections lost, added or moved"
    assert NOTICES in dict(after) and LIFECYCLE in dict(after)
    for (title, old), (_, new) in zip(before, after, strict=True):
        if title not in (NOTICES, LIFECYCLE):
            assert new == old, f"{title} was not kept byte for byte"

    header = written.split("\n## ", 1)[0]
    assert "(lifecycle, notices only; the other sections are from an earlier run)" in header
    assert "quick run, not a measurement" in header
    assert "./scripts/bench" in header
    # The run's own date (UTC), not an old one (a run across midnight has either).
    days = {f"Measured {d:%Y-%m-%d}" for d in (started, datetime.now(UTC))}

    notices = dict(after)[NOTICES]
    assert notices != dict(before)[NOTICES]
    assert "**Quick run, not a measurement**" in notices
    cmd = re.search(r"python bench/notices\.py --n (\d+) --batch (\d+) \[--postgres URL\]",
                    notices)
    assert cmd, notices
    n, batch = cmd.groups()
    assert int(n) < 1000  # smoke size, not the 20,000 of a measurement
    row = re.search(rf"^\| sqlite \| {n} \| {batch} \| (\d+) \| (\d+) \| (\d+)% \|$", notices,
                    re.M)
    assert row, notices  # notices/s, the raw limit and the ratio of this run
    assert int(row.group(1)) > 0 and int(row.group(2)) > 0
    assert "| postgresql |" not in notices
    assert any(d in notices for d in days) and "load average" in notices
    assert "busy" not in notices  # the old hand-written remarks are gone

    lifecycle = dict(after)[LIFECYCLE]
    assert "**Quick run, not a measurement**" in lifecycle
    cmd = re.search(r"python bench/lifecycle\.py --n (\d+) --batch (\d+) \[--postgres URL\]",
                    lifecycle)
    assert cmd, lifecycle
    n, batch = cmd.groups()
    assert int(n) < 1000
    row = re.search(rf"^\| sqlite \| {n} \| {batch} \| (\d+) \| (\d+) \| (\d+) \| (\d+)% \|$",
                    lifecycle, re.M)
    assert row, lifecycle  # active → grace, grace → suspended, raw, ratio
    assert all(int(x) > 0 for x in row.groups()[:3])
    assert "| raw state UPDATE lines/s | grace / raw |" in lifecycle  # one header line
    assert any(d in lifecycle for d in days) and "load average" in lifecycle
    # The hand-written finding (run.py NOTES) follows the generated part, once: the old
    # section was replaced whole, as it is on every rerun.
    assert lifecycle.count("Most of a move's time is the notices' rendering") == 1
    assert lifecycle.rstrip().endswith("(found\n2026-12-01 on a small run).")
