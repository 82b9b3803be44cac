"""The standalone fuzzers run briefly with the suite, so they cannot rot: each starts a
real daemon, drives it, checks its invariants and prints its report.

They are tools that look for defects, so what they find is theirs to report (and their
exit status says so); these tests only hold them to running, checking and reporting, and
the crash loop, whose invariants no open defect breaks, to finding nothing.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _run(tmp: Path, module: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(ROOT / "daemon"), str(ROOT), *filter(None, [env.get("PYTHONPATH")])])
    return subprocess.run([sys.executable, "-m", module, "--dir", str(tmp), *args],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def _count(report: str, label: str) -> int:
    m = re.search(rf"^{label}\s+([\d,]+)", report, re.M)
    assert m, f"no {label!r} line in the report:\n{report}"
    return int(m.group(1).replace(",", ""))


def test_fuzz_daemon_sends_checks_and_reports(tmp_path: Path) -> None:
    r = _run(tmp_path, "tests.fuzz.fuzz_daemon", "--frames", "2000", "--seed", "7",
             "--connections", "2", "--batch", "250")
    assert r.returncode in (0, 1), r.stderr
    assert "Traceback (most recent call last)" not in r.stderr, r.stderr
    assert _count(r.stdout, "frames sent") >= 2000
    assert _count(r.stdout, "lines answered") > 1500
    assert _count(r.stdout, "invariant checks") >= 8
    assert re.search(r"^answers by code .*ok [\d,]+", r.stdout, re.M), r.stdout
    assert (r.returncode == 0) == (_count(r.stdout, "violations") == 0), r.stdout


def test_crashloop_kills_restarts_and_loses_nothing(tmp_path: Path) -> None:
    r = _run(tmp_path, "tests.fuzz.crashloop", "--cycles", "2", "--agents", "4",
             "--records", "100")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "cycles 2" in r.stdout and _count(r.stdout, "violations") == 0, r.stdout
    assert _count(r.stdout, "invariant checks") > 0
