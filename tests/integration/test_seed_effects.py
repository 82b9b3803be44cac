"""Shipped codes that add effects to their action, and roll codes whose target the agent
chooses, over the socket on the SHIPPED configuration (``tests/integration/shipped.py``).

- Intelligent Contacts ``DNCF``: Do Not Call together with Final. The dialled number joins
  the DNC list and the record is closed until its list is reloaded; the reload brings it
  back on its other number, never the listed one, on this record or any other.
- Intelligent Contacts ``DNCALL``: every number of the record, and Final; after a reload
  the record is called only on a number the reload gives it.
- CallMonkey ``ANDERE_FASE``: the agent names the phase (``dispose.campaign``) from the
  code's ``roll_targets``; a missing or other campaign is refused naming ``campaign``, over
  the socket and from ``nextcall dispose --campaign``.

Each survives a restart, on SQLite and on PostgreSQL.
``test_every_shipped_effect_code_has_a_scenario`` keeps the table below complete; the
codes it lists are left out of ``test_seed_scenarios.py``'s per-action tables.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from nextcall.cli import main as cli_main
from nextcall.config import load
from tests.integration.shipped import (
    SHIPPED,
    Clock,
    Running,
    instant,
    ok,
    refused,
    shipped_settings,
)
from tests.integration.test_actions_restart import same_after_restart
from tests.integration.test_seed_scenarios import SEEDS, TUE, nobody_gets_anything, staff

IC, CM = SEEDS["intelligentcontacts"], SEEDS["callmonkey"]
TM, SALES = "callmonkey-telemarketing", "callmonkey-sales"

#: (campaign, code, action, effects, roll_targets) of every shipped code that has effects
#: or lets the agent choose its roll target
EFFECT_CODES = {
    (IC.campaign, "DNCF", "close_until_reload", ("dnc",), ()),
    (IC.campaign, "DNCALL", "close_until_reload", ("dnc_all",), ()),
    (SALES, "ANDERE_FASE", "roll", (), (TM, SALES)),
    (TM, "ANDERE_FASE", "roll", (), (TM, SALES)),
}


def test_every_shipped_effect_code_has_a_scenario() -> None:
    s = load(SHIPPED)
    shipped = {(name, rc.code, rc.action, rc.effects, rc.roll_targets)
               for name, camp in s.campaigns.items() for rc in camp.codes.values()
               if rc.effects or rc.roll_targets}
    assert shipped == EFFECT_CODES


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest) -> str | None:
    """None: the shipped settings' SQLite file; else the PostgreSQL test database."""
    if request.param == "sqlite":
        return None
    url: str = request.getfixturevalue("pg_url")
    return url


@pytest.fixture
async def daemon(db_url: str | None, tmp_path: Path) -> AsyncIterator[Running]:
    settings = shipped_settings(tmp_path)
    if db_url is not None:
        settings = dataclasses.replace(
            settings, daemon=settings.daemon.model_copy(update={"database": db_url}))
    r = Running(settings, Clock(instant(f"{TUE}T10:00", "UTC")))
    await r.start()
    try:
        yield r
    finally:
        await r.stop()


async def _reload(r: Running, records: list[dict[str, Any]] | None = None) -> None:
    ans = await ok(r.admin, "records.import", campaign=IC.campaign, list="spring",
                   records=records or [], reload=True)
    assert ans["rejected"] == [], ans


async def test_intelligentcontacts_do_not_call_with_final(daemon: Running) -> None:
    r = daemon
    r.clock.set(f"{TUE}T10:00", IC.tz)
    await r.import_records(IC.campaign, "spring", [IC.rec("R", 1, 2), IC.rec("X", 1)])
    await staff(r, IC)
    lease = await r.lease("alice", "R")
    assert lease["phone"] == IC.phone(1)
    ans = await r.dispose(lease, "DNCF")
    assert (ans["state"], ans["reason"]) == ("closed", "until_reload")
    assert ans["listed"] == [{"number": IC.phone(1), "list": "dnc"}]
    after = await same_after_restart(r, "R", "X")
    assert [(p["number"], p["status"]) for p in after["R"]["phones"]] == [
        (IC.phone(1), "dnc"), (IC.phone(2), "active")]
    assert [h["code"] for h in after["R"]["history"]] == ["DNCF"]
    assert (await r.stats(IC.campaign))["closed"] == {"until_reload": 1}
    await staff(r, IC)
    # X's only number is on the list now: nobody gets X, nor the closed R
    await nobody_gets_anything(r, "alice", "bob")
    assert (await r.stats(IC.campaign))["no_number"] == 1
    # Final: a reload of the list brings R back, on its other number only
    await _reload(r)
    lease = await r.lease("bob", "R")
    assert lease["phone"] == IC.phone(2)
    await nobody_gets_anything(r, "alice")
    # a record imported later with the listed number never dials it
    await r.import_records(IC.campaign, "summer", [IC.rec("Y", 1, 3)])
    assert (await r.lease("alice", "Y"))["phone"] == IC.phone(3)


async def test_intelligentcontacts_do_not_call_any_number_with_final(daemon: Running
                                                                    ) -> None:
    r = daemon
    r.clock.set(f"{TUE}T10:00", IC.tz)
    await r.import_records(IC.campaign, "spring", [IC.rec("R", 1, 2)])
    await staff(r, IC)
    ans = await r.dispose(await r.lease("alice", "R"), "DNCALL")
    assert (ans["state"], ans["reason"]) == ("closed", "until_reload")
    assert sorted(x["number"] for x in ans["listed"]) == [IC.phone(1), IC.phone(2)]
    await same_after_restart(r, "R")
    await staff(r, IC)
    # reloaded with its old numbers only: open again, but it has nothing to dial
    await _reload(r)
    assert (await r.get("R"))["state"] == "ready"
    await nobody_gets_anything(r, "alice", "bob")
    assert (await r.stats(IC.campaign))["no_number"] == 1
    # a reload that gives it a new number: that one is called
    await _reload(r, [IC.rec("R", 1, 2, 3)])
    assert (await r.lease("alice", "R"))["phone"] == IC.phone(3)


async def test_callmonkey_agent_chooses_the_phase(daemon: Running) -> None:
    r = daemon
    r.clock.set(f"{TUE}T10:00", CM.tz)
    await r.import_records(SALES, "spring", [CM.rec("R", 1)])
    await staff(r, CM)  # alice, bob, carol on the sales phase
    await r.login("dave", [TM], [CM.team])
    lease = await r.lease("alice", "R")
    refused(await r.admin.call("dispose", lease=lease["token"], code="ANDERE_FASE"),
            "bad_request", "campaign")
    err = refused(await r.admin.call("dispose", lease=lease["token"], code="ANDERE_FASE",
                                     campaign="tegsoft-sales"), "bad_request", "campaign")
    assert "tegsoft-sales" in err["message"]
    refused(await r.admin.call("dispose", lease=lease["token"], code="VERLOREN_TM",
                               campaign=SALES, fields={"datum_verloren": "2027-06-15",
                                                       "reden_verloren": "prijs"}),
            "bad_request", "campaign")
    assert (await r.get("R"))["history"] == [], "a refused disposition changes nothing"
    ans = await r.dispose(lease, "ANDERE_FASE", campaign=TM)
    assert (ans["state"], ans["campaign"], ans["list"], ans["attempts"]) == \
        ("ready", TM, "fasewissel", 0)
    after = await same_after_restart(r, "R")
    assert (after["R"]["campaign"], after["R"]["list"]) == (TM, "fasewissel")
    await nobody_gets_anything(r, "alice", "bob")
    assert (await r.lease("dave", "R"))["record"]["campaign"] == TM


def _cli(socket_path: str, *args: str) -> dict[str, Any]:
    result = CliRunner().invoke(cli_main, ["--socket", socket_path, "--json", *args],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    answer: dict[str, Any] = json.loads(result.output)
    return answer


async def test_callmonkey_phase_from_the_cli(daemon: Running) -> None:
    r = daemon
    r.clock.set(f"{TUE}T10:00", CM.tz)
    await r.import_records(TM, "spring", [CM.rec("R", 1)])
    await r.login("dave", [TM], [CM.team])
    lease = await r.lease("dave", "R")
    ans = await asyncio.to_thread(_cli, r.settings.daemon.socket, "dispose",
                                  lease["token"], "ANDERE_FASE", "--campaign", SALES)
    assert (ans["campaign"], ans["list"], ans["state"]) == (SALES, "fasewissel", "ready")
    assert (await r.get("R"))["campaign"] == SALES
