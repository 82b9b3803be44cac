"""config.reload on the in-memory store: dry runs report, real runs apply."""

from __future__ import annotations

from pathlib import Path

from tests.unit.ops.harness import Ops


async def test_reload_dry_run_reports_without_applying(ops: Ops) -> None:
    path = Path(ops.settings.path)
    camps = path.parent / "camps.toml"
    camps.write_text(camps.read_text().replace("max_attempts = 3", "max_attempts = 5"))
    ans = await ops.ok("config.reload", dry_run=True)
    assert ans["applied"] is False and ans["campaigns"][0]["campaign"] == "t"
    assert ops.svc.engine.campaigns["t"].max_attempts == 3
    ans = await ops.ok("config.reload")
    assert ans["applied"] is True and ops.svc.engine.campaigns["t"].max_attempts == 5


async def test_a_bad_config_is_refused_and_the_running_one_stays(ops: Ops) -> None:
    camps = Path(ops.settings.path).parent / "camps.toml"
    camps.write_text(camps.read_text().replace("max_attempts = 3", "max_attempts = -1"))
    await ops.refused("config.reload", "bad_config")
    assert ops.svc.engine.campaigns["t"].max_attempts == 3
