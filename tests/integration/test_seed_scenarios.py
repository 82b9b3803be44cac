"""Every result code of the five seed systems, as shipped in ``config/``, over the socket.

The daemon runs in-process on the SHIPPED configuration (``tests/integration/shipped.py``:
the real ``config/nextcall.toml`` and its includes, a tmp socket and database) with a clock
the test moves, so delays, grace periods and appointment dates pass in no real time.

The scenario tables below name, per seed, every enabled code of its campaign with its
action; ``test_every_shipped_seed_code_has_a_scenario`` fails when a code is added to a
seed's set (or its action changed) without a scenario here. Each action has one scenario
function, run for every code of every seed that uses it:

- retry: the code's delay per attempt, nobody gets it before, the next agent gets it at the
  due time with the next number, ``max_attempts`` closes it ``exhausted``;
- callback: the promised instant in the record's zone, and who gets it per scope;
- close: ``final``, not reopened by a list reload, reopened by an admin only;
- close_until_reload: reopened by a reload of its own list only;
- hold: ``appointment_required``, ``held``, ``resolution`` after the date, ``record.reopen``;
- special: ``callback.schedule`` forbidden outside the reopen team, allowed inside it;
- dnc / block_number: the number is never handed out again, on any record, imported before
  or after; a record whose only number is listed is not handed out at all;
- remove_number: the record continues at once with its next number; none left ->
  ``no_numbers``;
- roll: the record is in the other campaign, ready at once.

Seed-specific behaviour follows: Evergiving's callback scopes, owner and shift-worker
override; CallMonkey's contact priorities and typed quote/order fields; passive codes;
Intelligent Contacts' revenue flag.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from nextcall.config import load
from tests.integration.shipped import (
    SHIPPED,
    Clock,
    Running,
    instant,
    ok,
    refused,
    shipped_settings,
    utc_z,
)

NY, TORONTO, LONDON = "America/New_York", "America/Toronto", "Europe/London"
ISTANBUL, AMSTERDAM = "Europe/Istanbul", "Europe/Amsterdam"
TUE, WED, MON = "2027-06-15", "2027-06-16", "2027-06-21"  # no holiday in any seed campaign


@dataclass(frozen=True)
class Seed:
    """A seed system's campaign as shipped, with numbers valid in its country."""

    name: str
    campaign: str
    tz: str
    prefix: str
    team: str

    def phone(self, n: int) -> str:
        """The n-th test number (E.164)."""
        return f"{self.prefix}{n:04d}"

    def rec(self, rid: str, *numbers: int, **extra: Any) -> dict[str, Any]:
        """An import row with the seed's numbers, zone and team."""
        return {"id": rid, "phones": [self.phone(n) for n in numbers], "timezone": self.tz,
                "team": self.team, "data": {"name": f"contact {rid}"}, **extra}

    def at(self, local: str) -> float:
        """The instant of wall time ``local`` in the seed's zone."""
        return instant(local, self.tz)


SEEDS = {
    "softrecruit": Seed("softrecruit", "softrecruit", NY, "+1212555", "recruiters"),
    "intelligentcontacts": Seed("intelligentcontacts", "ic-preview", TORONTO, "+1416555",
                                "preview"),
    "evergiving": Seed("evergiving", "evergiving-welcome", LONDON, "+44207946", "north"),
    "tegsoft": Seed("tegsoft", "tegsoft-sales", ISTANBUL, "+90212234", "sales"),
    "callmonkey": Seed("callmonkey", "callmonkey-sales", AMSTERDAM, "+3120123",
                       "binnendienst"),
}

# typed fields of CallMonkey's quote, order and lost codes, valid
OFFERTE = {"fields": {"offerte_waarde": 12500, "kans": 60,
                      "verwachte_orderdatum": "2027-07-01"}}
ORDER = {"fields": {"orderwaarde": 8400.5, "datum_gewonnen": "2027-06-15",
                    "reden_gewonnen": "service"}}
LOST = {"fields": {"datum_verloren": "2027-06-15", "reden_verloren": "concurrent"}}
NOTE = {"note": "details for the admin team"}

#: retry: (seed, code, expected delay after attempt 1, 2, ...; the last repeats)
RETRY = [
    ("softrecruit", "NA", [7200, 14400, 86400, 172800]),
    ("softrecruit", "BUSY", [900]),
    ("softrecruit", "LM", [86400, 172800]),
    ("softrecruit", "DEFER56", [56 * 86400]),
    ("intelligentcontacts", "NA", [3600, 14400, 86400]),
    ("intelligentcontacts", "B", [600]),
    ("intelligentcontacts", "AM", [14400]),
    ("intelligentcontacts", "DROP", [1800]),
    ("evergiving", "NA", [3600, 10800, 86400]),
    ("evergiving", "VM", [14400]),
    ("callmonkey", "VOICEMAIL", [7200, 86400]),
    ("callmonkey", "IN_GESPREK", [1800]),
]
#: callback: (seed, code, scope, contact priority, extra dispose fields)
CALLBACK = [
    ("softrecruit", "CB", "personal_then_team", 4, {}),
    ("softrecruit", "CBT", "team", 3, {}),
    ("evergiving", "CBME", "personal", 6, {}),
    ("evergiving", "CB", "personal_then_team", 4, {}),
    ("evergiving", "CBQ", "team", 4, {}),
    ("evergiving", "CBALL", "anyone", 3, {}),
    ("tegsoft", "THINK", "personal_then_team", 4, {}),
    ("tegsoft", "NOT_NOW", "anyone", 3, {}),
    ("callmonkey", "TB_GEMIDDELD", "personal_then_team", 3, {}),
    ("callmonkey", "TB_HOOG", "personal_then_team", 4, {}),
    ("callmonkey", "TB_HEEL_HOOG", "personal", 6, {}),
    ("callmonkey", "OFFERTE", "personal_then_team", 4, OFFERTE),
    ("callmonkey", "ORDER_OPVOLGEN", "personal_then_team", 4, ORDER),
]
#: close (reason final): (seed, code, extra dispose fields)
CLOSE = [
    ("softrecruit", "NI", {}),
    ("softrecruit", "PERMDEF", NOTE),
    ("softrecruit", "MOVED", {}),
    ("softrecruit", "DECEASED", NOTE),
    ("evergiving", "WELCOMED", {"revenue": 10.0}),
    ("evergiving", "CANCEL", NOTE),
    ("tegsoft", "SALES_DONE", {"revenue": 249.0}),
    ("tegsoft", "SALES_FAILED", {}),
    ("callmonkey", "FAILLIET", {}),
    ("callmonkey", "BUITEN_DOELGROEP", {}),
    ("callmonkey", "BESTAANDE_KLANT", {}),
    ("callmonkey", "NEG_NIET_CP", {}),
    ("callmonkey", "NEG_CP", {}),
    ("callmonkey", "ORDER", ORDER),
    ("callmonkey", "VERLOREN", LOST),
]
#: close_until_reload (Intelligent Contacts "Final")
UNTIL_RELOAD = [
    ("intelligentcontacts", "OI", {}),
    ("intelligentcontacts", "FAX", {}),
    ("intelligentcontacts", "WP", {}),
    ("intelligentcontacts", "NI", {}),
    ("intelligentcontacts", "SALE", {"revenue": 35.0}),
    ("intelligentcontacts", "PLEDGE", {}),
]
HOLD = [
    ("softrecruit", "APPT", {}),
    ("softrecruit", "MGMT", NOTE),
    ("callmonkey", "AFSPRAAK", {"fields": {"accountmanager": "Pieter Jansen"}}),
]
SPECIAL = [
    ("softrecruit", "SPEC-MED", NOTE),
    ("softrecruit", "SPEC-CMPL", NOTE),
]
#: dnc: (seed, code, a retry code of the seed used to call another record again)
DNC = [
    ("softrecruit", "DNC", "BUSY"),
    ("intelligentcontacts", "DNC", "B"),
]
REMOVE = [
    ("tegsoft", "WRONG_NUMBER"),
    ("tegsoft", "NOT_IN_SERVICE"),
    ("callmonkey", "ONJUIST_NUMMER"),
]
BLOCK = [("tegsoft", "BLOCK_NUMBER")]
#: roll: (seed, code, target campaign, target list, extra dispose fields)
ROLL = [
    ("intelligentcontacts", "RET", "ic-retention", "rolled-from-preview", {}),
    ("callmonkey", "ORDER_TM", "callmonkey-telemarketing", "terug-uit-sales", ORDER),
    ("callmonkey", "VERLOREN_TM", "callmonkey-telemarketing", "terug-uit-sales", LOST),
]
#: passive codes (enabled = false)
DISABLED = [("intelligentcontacts", "SURVEY"), ("tegsoft", "OLD_PROMO"),
            ("callmonkey", "OPEN")]


def _ids(cases: list[tuple[Any, ...]]) -> list[str]:
    return [f"{c[0]}-{c[1]}" for c in cases]


# ---------------------------------------------------------------------------- fixtures


@pytest.fixture
async def shipped(tmp_path: Path) -> AsyncIterator[Running]:
    """A daemon on the shipped config; its clock starts on a Tuesday morning."""
    r = Running(shipped_settings(tmp_path), Clock(instant(f"{TUE}T10:00", "UTC")))
    await r.start()
    try:
        yield r
    finally:
        await r.stop()


async def staff(r: Running, seed: Seed, campaigns: list[str] | None = None) -> None:
    """alice and bob work the seed's team; carol another team of the same campaign."""
    cs = campaigns or [seed.campaign]
    await r.login("alice", cs, [seed.team])
    await r.login("bob", cs, [seed.team])
    await r.login("carol", cs, ["other-team"])


def parse_z(text: str) -> float:
    """Inverse of ``utc_z``."""
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp()


async def lease_when_due(r: Running, seed: Seed, agent: str, record: str, due: float
                         ) -> dict[str, Any]:
    """Move the clock to ``due`` and lease ``record`` to ``agent``; when the record's
    calling window is closed then, move on to the instant ``stats`` says it opens."""
    r.clock.t = due
    leases = await r.next(agent)
    if not leases:
        zone = (await r.stats(seed.campaign))["zones"][seed.tz]
        assert zone["open"] is False, zone
        r.clock.t = parse_z(zone["changes_at"])
        leases = await r.next(agent)
    assert [lz["record"]["id"] for lz in leases] == [record], leases
    return leases[0]


async def nobody_gets_anything(r: Running, *agents: str) -> None:
    """``next`` hands nothing to any of ``agents``."""
    for agent in agents:
        assert await r.next(agent) == [], agent


# ---------------------------------------------------------------------------- coverage


def test_every_shipped_seed_code_has_a_scenario() -> None:
    """The tables cover every enabled code of every seed campaign, with its action."""
    s = load(SHIPPED)
    tables = {"retry": RETRY, "callback": CALLBACK, "close": CLOSE,
              "close_until_reload": UNTIL_RELOAD, "hold": HOLD, "special": SPECIAL,
              "dnc": DNC, "remove_number": REMOVE, "block_number": BLOCK, "roll": ROLL}
    covered = {(SEEDS[c[0]].campaign, c[1], action) for action, cases in tables.items()
               for c in cases}
    # codes with effects or agent-chosen roll targets: test_seed_effects.py
    shipped = {(seed.campaign, rc.code, rc.action) for seed in SEEDS.values()
               for rc in s.campaigns[seed.campaign].codes.values()
               if rc.enabled and not rc.effects and not rc.roll_targets}
    assert covered == shipped
    disabled = {(seed.campaign, rc.code) for seed in SEEDS.values()
                for rc in s.campaigns[seed.campaign].codes.values() if not rc.enabled}
    assert disabled == {(SEEDS[a].campaign, b) for a, b in DISABLED}
    # the second CallMonkey phase and the IC roll target are shipped too
    assert s.campaigns["callmonkey-telemarketing"].codes == s.campaigns["callmonkey-sales"].codes
    assert "ic-retention" in s.campaigns


async def test_campaigns_op_lists_what_each_seed_code_requires(shipped: Running) -> None:
    """What an agent screen draws its buttons from: the shipped codes and their needs."""
    ans = await ok(shipped.admin, "campaigns")
    by_name = {c["name"]: {rc["code"]: rc for rc in c["codes"]} for c in ans["campaigns"]}
    cm = by_name["callmonkey-sales"]
    assert [f["name"] for f in cm["OFFERTE"]["requires"]["fields"]] == [
        "offerte_waarde", "kans", "verwachte_orderdatum"]
    assert cm["OFFERTE"]["requires"]["callback"] is True
    assert cm["AFSPRAAK"]["requires"]["appointment"] is True
    assert cm["ORDER"]["requires"]["fields"][2]["choices"] == [
        "prijs", "kwaliteit", "service", "relatie", "timing"]
    assert cm["OPEN"]["enabled"] is False
    assert cm["ONJUIST_NUMMER"]["requires"]["note"] == "none"
    assert {rc["contact_priority"] for rc in cm.values() if rc["category"] == "callback"} \
        == {1, 3, 4, 6}
    ic = by_name["ic-preview"]
    assert ic["SALE"]["requires"]["revenue"] == "required"
    assert (ic["SALE"]["contact"], ic["SALE"]["presentation"], ic["SALE"]["success"]) == \
        (True, True, True)
    assert ic["NA"]["dial_status"] == "no_answer" and ic["FAX"]["dial_status"] == "fax"
    assert by_name["evergiving-welcome"]["CBQ"]["scope"] == "team"
    assert by_name["tegsoft-sales"]["OLD_PROMO"]["enabled"] is False


# ---------------------------------------------------------------------------- retry


@pytest.mark.parametrize(("seed_name", "code", "delays"), RETRY, ids=_ids(RETRY))
async def test_retry(shipped: Running, seed_name: str, code: str, delays: list[int]) -> None:
    """System-routed callback / Recall: due again after the code's delay for that attempt,
    for the next agent, on the next number; closed ``exhausted`` at max attempts."""
    r, seed = shipped, SEEDS[seed_name]
    max_attempts = r.settings.campaigns[seed.campaign].max_attempts
    r.clock.set(f"{TUE}T10:00", seed.tz)
    await r.import_records(seed.campaign, "spring", [seed.rec("R", 1, 2)])
    await staff(r, seed)
    phones = [seed.phone(1), seed.phone(2)]
    agents = ("alice", "bob")
    lease = await r.lease("alice", "R")
    for attempt in range(1, max_attempts + 1):
        assert lease["phone"] == phones[(attempt - 1) % 2], "numbers rotate on retries"
        now = r.clock.t
        ans = await r.dispose(lease, code)
        assert ans["attempts"] == attempt
        if attempt == max_attempts:
            assert (ans["state"], ans["reason"], ans["due_at"]) == ("closed", "exhausted",
                                                                    None)
            break
        due = now + delays[min(attempt, len(delays)) - 1]
        assert (ans["state"], ans["reason"], ans["due_at"]) == ("ready", None, utc_z(due))
        r.clock.t = due - 1
        await nobody_gets_anything(r, *agents)
        # the next agent calling on the campaign gets it once it is due
        lease = await lease_when_due(r, seed, agents[attempt % 2], "R", due)
        assert lease["reason"] == "pool"
    rec = await r.get("R")
    assert (rec["state"], rec["reason"], rec["attempts"]) == ("closed", "exhausted",
                                                              max_attempts)
    assert [h["code"] for h in rec["history"]] == [code] * max_attempts
    assert (await r.stats(seed.campaign))["closed"] == {"exhausted": 1}
    await nobody_gets_anything(r, "alice", "bob", "carol")


# ---------------------------------------------------------------------------- callback


@pytest.mark.parametrize(("seed_name", "code", "scope", "cp", "extra"), CALLBACK,
                         ids=_ids(CALLBACK))
async def test_callback(shipped: Running, seed_name: str, code: str, scope: str, cp: int,
                        extra: dict[str, Any]) -> None:
    """The agent sets a date and time: the record is dormant until then, then goes to
    whom the code's scope says."""
    r, seed = shipped, SEEDS[seed_name]
    r.clock.set(f"{TUE}T10:00", seed.tz)
    await r.import_records(seed.campaign, "spring", [seed.rec("R", 1)])
    await staff(r, seed)
    lease = await r.lease("alice", "R")
    refused(await r.admin.call("dispose", lease=lease["token"], code=code, **extra),
            "callback_required", "callback")
    ans = await r.dispose(lease, code, callback={"at": f"{WED}T11:00",
                                                 "reason": "asked for tomorrow"}, **extra)
    due = seed.at(f"{WED}T11:00")
    cb = ans["callback"]
    assert (ans["state"], ans["due_at"]) == ("callback", utc_z(due))
    assert (cb["scope"], cb["contact_priority"], cb["timezone"], cb["reason"]) == \
        (scope, cp, seed.tz, "asked for tomorrow")
    assert cb["local"].startswith(f"{WED}T11:00:00")
    assert cb["owner"] == (None if scope == "team" else "alice")
    assert cb["team"] == seed.team
    # dormant until the promised time: suppressed from everybody's list
    r.clock.t = due - 1
    await nobody_gets_anything(r, "alice", "bob", "carol")
    r.clock.t = due
    if scope in ("personal", "personal_then_team"):
        await nobody_gets_anything(r, "carol", "bob")  # bob: within the grace period
        got = await r.lease("alice", "R")
        assert got["reason"] == "personal_callback"
    elif scope == "team":
        await nobody_gets_anything(r, "carol")
        got = await r.lease("bob", "R")
        assert got["reason"] == "team_callback"
    else:
        got = await r.lease("carol", "R")
        assert got["reason"] == "team_callback"
    rec = await r.get("R")
    assert rec["history"][0]["code"] == code and rec["history"][0]["state"] == "callback"
    if "fields" in extra:
        assert rec["history"][0]["fields"] == extra["fields"]


# ---------------------------------------------------------------------------- close


@pytest.mark.parametrize(("seed_name", "code", "extra"), CLOSE, ids=_ids(CLOSE))
async def test_close(shipped: Running, seed_name: str, code: str, extra: dict[str, Any]
                     ) -> None:
    """Closed ``final``: not handed out, not reopened by a list reload; only an admin
    reopens it."""
    r, seed = shipped, SEEDS[seed_name]
    r.clock.set(f"{TUE}T10:00", seed.tz)
    await r.import_records(seed.campaign, "spring", [seed.rec("R", 1)])
    await staff(r, seed)
    ans = await r.dispose(await r.lease("alice", "R"), code, **extra)
    assert (ans["state"], ans["reason"], ans["due_at"]) == ("closed", "final", None)
    r.clock.advance(28 * 86400)  # four weeks on: a Tuesday again
    await nobody_gets_anything(r, "alice", "bob", "carol")
    reload = await r.import_records(seed.campaign, "spring", [seed.rec("R", 1)], reload=True)
    assert (reload["updated"], reload["reopened"]) == (1, 0)
    assert ((await r.get("R"))["state"], (await r.get("R"))["reason"]) == ("closed", "final")
    agent = await r.agent_connection()
    refused(await agent.call("record.reopen", record="R"), "forbidden")
    back = await ok(r.admin, "record.reopen", record="R", note="extenuating circumstance")
    assert (back["record"]["state"], back["record"]["reason"]) == ("ready", None)
    assert (await r.lease("bob", "R"))["reason"] == "pool"
    assert [h["code"] for h in (await r.get("R"))["history"]] == [code, "@reopen"]


# ---------------------------------------------------------------------------- until reload


@pytest.mark.parametrize(("seed_name", "code", "extra"), UNTIL_RELOAD,
                         ids=_ids(UNTIL_RELOAD))
async def test_close_until_reload(shipped: Running, seed_name: str, code: str,
                                  extra: dict[str, Any]) -> None:
    """IC "Final": not called again until the contact list is reloaded; reloading another
    list does not reopen it."""
    r, seed = shipped, SEEDS[seed_name]
    r.clock.set(f"{TUE}T10:00", seed.tz)
    await r.import_records(seed.campaign, "march", [seed.rec("R", 1)])
    await r.import_records(seed.campaign, "april", [seed.rec("Q", 2)])
    await staff(r, seed)
    for rid in ("R", "Q"):
        ans = await r.dispose(await r.lease("alice", rid), code, **extra)
        assert (ans["state"], ans["reason"], ans["due_at"]) == ("closed", "until_reload",
                                                                None)
    await nobody_gets_anything(r, "alice", "bob", "carol")
    assert (await r.stats(seed.campaign))["closed"] == {"until_reload": 2}
    # the April list is reloaded (re-imported with reload): only its record reopens
    april = await r.import_records(seed.campaign, "april", [seed.rec("Q", 2)], reload=True)
    assert (april["updated"], april["reopened"]) == (1, 1)
    assert (await r.get("R"))["reason"] == "until_reload"
    assert (await r.lease("bob", "Q"))["reason"] == "pool"
    await nobody_gets_anything(r, "carol")
    march = await r.import_records(seed.campaign, "march", [], reload=True)
    assert march["reopened"] == 1
    rec = await r.get("R")
    assert (rec["state"], rec["reason"]) == ("ready", None)
    assert [h["code"] for h in rec["history"]] == [code, "@reload"]
    assert (await r.lease("carol", "R"))["phone"] == seed.phone(1)


# ---------------------------------------------------------------------------- hold


@pytest.mark.parametrize(("seed_name", "code", "extra"), HOLD, ids=_ids(HOLD))
async def test_hold(shipped: Running, seed_name: str, code: str, extra: dict[str, Any]
                    ) -> None:
    """Closed until resolution: an appointment date is required; the record is held until
    then, then waits in ``resolution`` until an admin reopens it."""
    r, seed = shipped, SEEDS[seed_name]
    r.clock.set(f"{TUE}T10:00", seed.tz)
    await r.import_records(seed.campaign, "spring", [seed.rec("R", 1)])
    await staff(r, seed)
    lease = await r.lease("alice", "R")
    refused(await r.admin.call("dispose", lease=lease["token"], code=code, **extra),
            "appointment_required", "appointment")
    refused(await r.admin.call("dispose", lease=lease["token"], code=code,
                               appointment={"at": f"{TUE}T09:00"}, **extra),
            "bad_request", "appointment.at")
    assert (await r.get("R"))["history"] == [], "a refused disposition changes nothing"
    appointment = seed.at(f"{MON}T10:00")
    ans = await r.dispose(lease, code, appointment={"at": f"{MON}T10:00"}, **extra)
    assert (ans["state"], ans["due_at"]) == ("held", utc_z(appointment))
    assert (await ok(r.admin, "resolution"))["records"] == []
    assert (await r.stats(seed.campaign))["held"] == 1
    r.clock.t = appointment - 1
    await nobody_gets_anything(r, "alice", "bob", "carol")
    assert (await ok(r.admin, "resolution", campaign=seed.campaign))["records"] == []
    r.clock.t = appointment + 3600
    waiting = (await ok(r.admin, "resolution", campaign=seed.campaign))["records"]
    assert [(w["id"], w["state"], w["appointment_at"], w["waiting_s"]) for w in waiting] == \
        [("R", "resolution", utc_z(appointment), 3600.0)]
    assert (await r.get("R"))["state"] == "resolution"
    await nobody_gets_anything(r, "alice", "bob", "carol")
    agent = await r.agent_connection()
    refused(await agent.call("record.reopen", record="R"), "forbidden")
    back = await ok(r.admin, "record.reopen", record="R", note="reconciled: donated")
    assert back["record"]["state"] == "ready"
    assert (await ok(r.admin, "resolution"))["records"] == []
    assert (await r.lease("bob", "R"))["reason"] == "pool"


async def test_resolution_reassigned_as_a_callback_for_the_donor(shipped: Running) -> None:
    """Soft Recruit: after reconciling, the admin team reassigns the record "to be called
    based on the donor preferences": ``record.reopen`` with a callback for a recruiter."""
    r, seed = shipped, SEEDS["softrecruit"]
    r.clock.set(f"{TUE}T10:00", seed.tz)
    await r.import_records(seed.campaign, "spring", [seed.rec("R", 1)])
    await staff(r, seed)
    await r.dispose(await r.lease("alice", "R"), "APPT", appointment={"at": f"{WED}T09:30"})
    r.clock.set(f"{WED}T12:00", seed.tz)
    assert [w["id"] for w in (await ok(r.admin, "resolution"))["records"]] == ["R"]
    back = await ok(r.admin, "record.reopen", record="R", callback={
        "at": f"{MON}T18:00", "scope": "personal", "owner": "bob",
        "reason": "donor prefers evenings"})
    cb = back["record"]["callback"]
    assert (back["record"]["state"], cb["owner"], cb["scope"]) == ("callback", "bob",
                                                                     "personal")
    assert (await ok(r.admin, "resolution"))["records"] == []
    r.clock.set(f"{MON}T18:00", seed.tz)
    await nobody_gets_anything(r, "alice", "carol")
    assert (await r.lease("bob", "R"))["reason"] == "personal_callback"


# ---------------------------------------------------------------------------- special


@pytest.mark.parametrize(("seed_name", "code", "extra"), SPECIAL, ids=_ids(SPECIAL))
async def test_special(shipped: Running, seed_name: str, code: str, extra: dict[str, Any]
                       ) -> None:
    """Special circumstances: closed; an agent outside the reopen team is forbidden to set
    a callback, one logged in to the specialty team does, and the record comes back."""
    r, seed = shipped, SEEDS[seed_name]
    r.clock.set(f"{TUE}T10:00", seed.tz)
    await r.import_records(seed.campaign, "spring", [seed.rec("R", 1)])
    await staff(r, seed)
    await r.login("nurse", [seed.campaign], ["specialty"])
    ans = await r.dispose(await r.lease("alice", "R"), code, **extra)
    assert (ans["state"], ans["reason"]) == ("closed", "special")
    await nobody_gets_anything(r, "alice", "bob", "carol", "nurse")
    agent = await r.agent_connection()
    schedule = {"record": "R", "at": f"{WED}T11:00", "reason": "nurse follows up"}
    refused(await agent.call("callback.schedule", agent="alice", **schedule),
            "forbidden", "agent")
    refused(await agent.call("callback.schedule", **schedule), "forbidden")
    await ok(r.admin, "agent.logout", agent="nurse")
    refused(await agent.call("callback.schedule", agent="nurse", **schedule),
            "forbidden", "agent")
    assert (await r.get("R"))["state"] == "closed", "refusals change nothing"
    await r.login("nurse", [seed.campaign], ["specialty"])
    back = await ok(agent, "callback.schedule", agent="nurse", owner="nurse", **schedule)
    due = seed.at(f"{WED}T11:00")
    rec = back["record"]
    assert (rec["state"], rec["reason"], rec["due_at"]) == ("callback", None, utc_z(due))
    assert (rec["callback"]["owner"], rec["callback"]["scope"]) == ("nurse", "personal")
    history = (await r.get("R"))["history"]
    assert [(h["code"], h["agent"]) for h in history] == [(code, "alice"),
                                                          ("@callback", "nurse")]
    r.clock.t = due
    await nobody_gets_anything(r, "alice", "bob", "carol")
    assert (await r.lease("nurse", "R"))["reason"] == "personal_callback"


# ---------------------------------------------------------------------------- dnc


@pytest.mark.parametrize(("seed_name", "code", "retry_code"), DNC, ids=_ids(DNC))
async def test_dnc(shipped: Running, seed_name: str, code: str, retry_code: str) -> None:
    """The dialled number joins the DNC list: no record is handed out that number again,
    imported before or after; a record with no other number is not handed out at all."""
    r, seed = shipped, SEEDS[seed_name]
    x, y, z = seed.phone(1), seed.phone(2), seed.phone(3)
    r.clock.set(f"{TUE}T10:00", seed.tz)
    await r.import_records(seed.campaign, "before", [seed.rec("A", 1), seed.rec("B", 1, 2)])
    await staff(r, seed)
    lease = await r.lease("alice", "A")
    assert lease["phone"] == x
    ans = await r.dispose(lease, code)
    assert (ans["state"], ans["reason"], ans["due_at"]) == ("closed", "dnc", None)
    assert ans["listed"] == [{"number": x, "list": "dnc"}]
    assert ans["phones"] == [{"number": x, "status": "dnc"}]
    await r.import_records(seed.campaign, "after", [seed.rec("C", 1), seed.rec("D", 1, 3)])
    assert (await r.get("C"))["phones"] == [{"number": x, "status": "dnc"}]
    assert (await r.get("D"))["phones"] == [{"number": x, "status": "dnc"},
                                            {"number": z, "status": "active"}]
    leases = await r.next("bob", count=10)
    assert {lz["record"]["id"]: lz["phone"] for lz in leases} == {"B": y, "D": z}
    assert (await r.stats(seed.campaign))["no_number"] == 1  # C: its only number is listed
    # B is called again (its numbers rotate): still never on the listed number
    b = next(lz for lz in leases if lz["record"]["id"] == "B")
    d = next(lz for lz in leases if lz["record"]["id"] == "D")
    await r.dispose(d, code)  # D's owner asks the same on the other number: closed too
    again = await r.dispose(b, retry_code)
    r.clock.t = parse_z(again["due_at"])
    b2 = await r.lease("carol", "B")
    assert b2["phone"] == y
    await nobody_gets_anything(r, "alice", "bob", "carol")
    assert (await r.get("C"))["state"] == "ready", "open, but never handed out"


async def test_dnc_on_a_number_silences_a_pending_callback(shipped: Running) -> None:
    """A callback promised on a number that then joins the DNC list (through another
    record) never fires: at its time nobody is handed the record."""
    r, seed = shipped, SEEDS["softrecruit"]
    r.clock.set(f"{TUE}T10:00", seed.tz)
    await r.import_records(seed.campaign, "spring", [seed.rec("R", 1), seed.rec("S", 1)])
    await staff(r, seed)
    await r.dispose(await r.lease("alice", "R"), "CB", callback={"at": f"{WED}T11:00"})
    await r.dispose(await r.lease("bob", "S"), "DNC")
    r.clock.set(f"{WED}T12:00", seed.tz)
    await nobody_gets_anything(r, "alice", "bob", "carol")
    await ok(r.admin, "agent.logout", agent="alice")
    await nobody_gets_anything(r, "bob")
    rec = await r.get("R")
    assert (rec["state"], rec["callback"]["owner"]) == ("callback", "alice")
    assert (await r.stats(seed.campaign))["no_number"] == 1


# ---------------------------------------------------------------------------- numbers


@pytest.mark.parametrize(("seed_name", "code"), REMOVE, ids=_ids(REMOVE))
async def test_remove_number(shipped: Running, seed_name: str, code: str) -> None:
    """Remove the called number and continue calling: the record is due at once on its
    next number; other records keep that number; none left -> ``no_numbers``."""
    r, seed = shipped, SEEDS[seed_name]
    p1, p2, p3 = seed.phone(1), seed.phone(2), seed.phone(3)
    r.clock.set(f"{TUE}T10:00", seed.tz)
    await r.import_records(seed.campaign, "spring", [seed.rec("R", 1, 2, 3),
                                                     seed.rec("S", 1)])
    await staff(r, seed)
    lease = await r.lease("alice", "R")
    statuses = ["active"] * 3
    for k, number in enumerate((p1, p2, p3)):
        assert lease["phone"] == number
        ans = await r.dispose(lease, code)
        statuses[k] = "removed"
        assert ans["phones"] == [{"number": n, "status": s}
                                 for n, s in zip((p1, p2, p3), statuses, strict=False)]
        assert "listed" not in ans, "removal is for this record only"
        if k < 2:
            assert (ans["state"], ans["due_at"]) == ("ready", utc_z(r.clock.t))
            # at once, same instant: the record comes back with its next number
            leases = await r.next("alice", count=2)
            lease = next(lz for lz in leases if lz["record"]["id"] == "R")
            if k == 0:
                s_lease = next(lz for lz in leases if lz["record"]["id"] == "S")
                assert s_lease["phone"] == p1, "another record still dials that number"
        else:
            assert (ans["state"], ans["reason"], ans["due_at"]) == ("closed", "no_numbers",
                                                                    None)
    await nobody_gets_anything(r, "bob", "carol")
    assert (await r.stats(seed.campaign))["closed"] == {"no_numbers": 1}
    assert (await r.get("R"))["reason"] == "no_numbers"


@pytest.mark.parametrize(("seed_name", "code"), BLOCK, ids=_ids(BLOCK))
async def test_block_number(shipped: Running, seed_name: str, code: str) -> None:
    """Block the called number and continue calling: the number joins the block list (no
    record dials it, imported before or after), the record continues with its next one."""
    r, seed = shipped, SEEDS[seed_name]
    p1, p2, p3 = seed.phone(1), seed.phone(2), seed.phone(3)
    r.clock.set(f"{TUE}T10:00", seed.tz)
    await r.import_records(seed.campaign, "before", [seed.rec("R", 1, 2), seed.rec("S", 1, 3)])
    await staff(r, seed)
    lease = await r.lease("alice", "R")
    ans = await r.dispose(lease, code)
    assert (ans["state"], ans["due_at"]) == ("ready", utc_z(r.clock.t))
    assert ans["listed"] == [{"number": p1, "list": "block"}]
    assert ans["phones"] == [{"number": p1, "status": "blocked"},
                             {"number": p2, "status": "active"}]
    await r.import_records(seed.campaign, "after", [seed.rec("T", 1)])
    assert (await r.get("T"))["phones"] == [{"number": p1, "status": "blocked"}]
    leases = await r.next("bob", count=10)
    assert {lz["record"]["id"]: lz["phone"] for lz in leases} == {"R": p2, "S": p3}
    assert (await r.stats(seed.campaign))["no_number"] == 1
    r_lease = next(lz for lz in leases if lz["record"]["id"] == "R")
    last = await r.dispose(r_lease, code)
    assert (last["state"], last["reason"]) == ("closed", "no_numbers")
    assert last["listed"] == [{"number": p2, "list": "block"}]
    await nobody_gets_anything(r, "alice", "carol")


# ---------------------------------------------------------------------------- roll


@pytest.mark.parametrize(("seed_name", "code", "target", "target_list", "extra"), ROLL,
                         ids=_ids(ROLL))
async def test_roll(shipped: Running, seed_name: str, code: str, target: str,
                    target_list: str, extra: dict[str, Any]) -> None:
    """Roll to another campaign (back to the telemarketing phase): the record is in the
    target campaign and list, ready at once, attempts from zero."""
    r, seed = shipped, SEEDS[seed_name]
    r.clock.set(f"{TUE}T10:00", seed.tz)
    await r.import_records(seed.campaign, "spring", [seed.rec("R", 1)])
    await staff(r, seed)
    await r.login("dave", [target], [seed.team])
    ans = await r.dispose(await r.lease("alice", "R"), code, **extra)
    assert (ans["state"], ans["campaign"], ans["list"], ans["attempts"], ans["due_at"]) == \
        ("ready", target, target_list, 0, utc_z(r.clock.t))
    await nobody_gets_anything(r, "alice", "bob", "carol")
    got = await r.lease("dave", "R")
    assert (got["reason"], got["record"]["campaign"], got["record"]["list"]) == \
        ("pool", target, target_list)
    assert (await r.stats(seed.campaign))["leased"] == 0
    assert (await r.stats(target))["leased"] == 1
    history = (await r.get("R"))["history"]
    assert [h["code"] for h in history] == [code]
    if "fields" in extra:
        assert history[0]["fields"] == extra["fields"]


# ---------------------------------------------------------------------------- passive codes


@pytest.mark.parametrize(("seed_name", "code"), DISABLED, ids=_ids(DISABLED))
async def test_passive_code_is_refused(shipped: Running, seed_name: str, code: str) -> None:
    """Tegsoft "passive", IC "Enabled" unchecked, CallMonkey's import-only Open: the code
    is listed but cannot be used; the lease stays disposable."""
    r, seed = shipped, SEEDS[seed_name]
    r.clock.set(f"{TUE}T10:00", seed.tz)
    await r.import_records(seed.campaign, "spring", [seed.rec("R", 1)])
    await staff(r, seed)
    lease = await r.lease("alice", "R")
    refused(await r.admin.call("dispose", lease=lease["token"], code=code), "code_disabled",
            "code")
    refused(await r.admin.call("dispose", lease=lease["token"], code="NO_SUCH_CODE"),
            "unknown_code", "code")
    assert (await r.get("R"))["history"] == []
    first_close = next(c for c in CLOSE + UNTIL_RELOAD if c[0] == seed_name and not c[2])
    assert (await r.dispose(lease, first_close[1]))["state"] == "closed"


# ---------------------------------------------------------------------------- IC flags


async def test_intelligentcontacts_success_requires_revenue(shipped: Running) -> None:
    """"Require agents to enter revenue amount > 0.00" on SALE; optional on PLEDGE; a
    no-contact result takes no revenue at all."""
    r, seed = shipped, SEEDS["intelligentcontacts"]
    r.clock.set(f"{TUE}T10:00", seed.tz)
    await r.import_records(seed.campaign, "spring", [seed.rec("R", 1), seed.rec("P", 2)])
    await staff(r, seed)
    lease = await r.lease("alice", "R")
    for fields in ({}, {"revenue": 0}, {"revenue": 0.0}):
        refused(await r.admin.call("dispose", lease=lease["token"], code="SALE", **fields),
                "revenue_required", "revenue")
    refused(await r.admin.call("dispose", lease=lease["token"], code="SALE", revenue=-5),
            "revenue_required", "revenue")
    refused(await r.admin.call("dispose", lease=lease["token"], code="NA", revenue=5),
            "bad_request", "revenue")
    assert (await r.get("R"))["history"] == []
    await r.dispose(lease, "SALE", revenue=120.5)
    assert (await r.get("R"))["history"][0]["revenue"] == 120.5
    pledge = await r.dispose(await r.lease("alice", "P"), "PLEDGE")
    assert pledge["reason"] == "until_reload"


# ---------------------------------------------------------------------------- Evergiving


@pytest.fixture
async def evergiving(shipped: Running) -> Running:
    """Evergiving on a Tuesday at 10:00 London, one donor R of team north leased by
    alice; bob is in her team, carol in another, dave works the campaign in no team."""
    seed = SEEDS["evergiving"]
    shipped.clock.set(f"{TUE}T10:00", seed.tz)
    await shipped.import_records(seed.campaign, "f2f-june", [seed.rec("R", 1)])
    await staff(shipped, seed)
    await shipped.login("dave", [seed.campaign], [])
    return shipped


async def _callback(r: Running, code: str, **callback: Any) -> dict[str, Any]:
    lease = await r.lease("alice", "R")
    return await r.dispose(lease, code, callback=callback)


async def test_evergiving_owner_may_be_another_agent(evergiving: Running) -> None:
    """The callback agent may be another agent of the campaign: dave gets it, alice (who
    set it) does not, even though she is in the record's team, within the grace period."""
    r, seed = evergiving, SEEDS["evergiving"]
    ans = await _callback(r, "CB", at=f"{WED}T15:00", owner="dave")
    assert (ans["owner"], ans["callback"]["owner"]) == ("dave", "dave")
    r.clock.set(f"{WED}T15:00", seed.tz)
    await nobody_gets_anything(r, "alice", "bob", "carol")
    assert (await r.lease("dave", "R"))["reason"] == "personal_callback"


async def test_evergiving_personal_then_team_after_grace(evergiving: Running) -> None:
    """Callback agent first; the team's queue after the campaign's 15-minute grace."""
    r, seed = evergiving, SEEDS["evergiving"]
    await _callback(r, "CB", at=f"{WED}T15:00")
    grace_s = r.settings.campaigns[seed.campaign].grace_s
    assert grace_s == 900
    due = seed.at(f"{WED}T15:00")
    r.clock.t = due + grace_s - 1
    await nobody_gets_anything(r, "bob", "carol", "dave")
    r.clock.t = due + grace_s
    await nobody_gets_anything(r, "carol", "dave")  # not in the record's team
    assert (await r.lease("bob", "R"))["reason"] == "team_callback"


async def test_evergiving_personal_then_team_owner_logged_out(evergiving: Running) -> None:
    """When the callback agent is logged out the team gets it at once, no grace."""
    r, seed = evergiving, SEEDS["evergiving"]
    await _callback(r, "CB", at=f"{WED}T15:00")
    await ok(r.admin, "agent.logout", agent="alice")
    r.clock.set(f"{WED}T15:00", seed.tz)
    await nobody_gets_anything(r, "carol")
    assert (await r.lease("bob", "R"))["reason"] == "team_callback"


async def test_evergiving_personal_callback_never_falls_to_the_team(evergiving: Running
                                                                    ) -> None:
    """CBME: only the owner, even when the owner is away long after the time."""
    r, seed = evergiving, SEEDS["evergiving"]
    await _callback(r, "CBME", at=f"{WED}T15:00")
    await ok(r.admin, "agent.logout", agent="alice")
    r.clock.set(f"{WED}T17:00", seed.tz)
    await nobody_gets_anything(r, "bob", "carol", "dave")
    await r.login("alice", [seed.campaign], [seed.team])
    assert (await r.lease("alice", "R"))["reason"] == "personal_callback"


async def test_evergiving_scope_given_by_the_agent(evergiving: Running) -> None:
    """The agent may choose the scope on the call ("available to all agents")."""
    r, seed = evergiving, SEEDS["evergiving"]
    ans = await _callback(r, "CB", at=f"{WED}T15:00", scope="anyone")
    assert ans["callback"]["scope"] == "anyone"
    r.clock.set(f"{WED}T15:00", seed.tz)
    assert (await r.lease("dave", "R"))["reason"] == "team_callback"


async def test_evergiving_shift_worker_override_window(evergiving: Running) -> None:
    """"Shift worker needs time outside: we can override the defined times": 08:15 is
    before the 09:00 calling window; allowed with override_window, and handed out then,
    while the pool stays closed."""
    r, seed = evergiving, SEEDS["evergiving"]
    await r.import_records(seed.campaign, "f2f-june", [seed.rec("POOL", 2)])
    lease = await r.lease("alice", "R")
    early = {"at": f"{WED}T08:15", "reason": "night shift, before sleeping"}
    refused(await r.admin.call("dispose", lease=lease["token"], code="CBME", callback=early),
            "outside_calling_window", "callback.at")
    ans = await r.dispose(lease, "CBME", callback={**early, "override_window": True})
    assert ans["callback"]["override_window"] is True
    assert ans["due_at"] == utc_z(seed.at(f"{WED}T08:15"))
    r.clock.set(f"{WED}T08:15", seed.tz)
    await nobody_gets_anything(r, "bob", "carol")  # POOL: the window opens at 09:00
    assert (await r.lease("alice", "R"))["reason"] == "personal_callback"
    r.clock.set(f"{WED}T09:00", seed.tz)
    assert (await r.lease("bob", "POOL"))["reason"] == "pool"


@pytest.mark.parametrize("local", [f"{WED}T07:30", f"{WED}T21:00", f"{WED}T22:30",
                                   "2027-08-30T12:00"],
                         ids=["before-legal", "legal-end", "late", "bank-holiday"])
async def test_evergiving_override_never_passes_the_legal_window(evergiving: Running,
                                                                 local: str) -> None:
    """Nothing overrides the legal window (08:00-21:00) or a holiday; nothing changes."""
    r = evergiving
    lease = await r.lease("alice", "R")
    refused(await r.admin.call("dispose", lease=lease["token"], code="CBME", callback={
        "at": local, "override_window": True}), "outside_legal_window", "callback.at")
    rec = await r.get("R")
    assert (rec["state"], rec["history"]) == ("leased", [])
    assert (await r.dispose(lease, "CBME", callback={"at": f"{WED}T20:59",
                                                     "override_window": True}))["state"] \
        == "callback"


# ---------------------------------------------------------------------------- CallMonkey


async def test_callmonkey_contact_priority_orders_team_callbacks(shipped: Running) -> None:
    """Priority 6 comes first for its owner at its time; among the team's callbacks the
    higher contact priority (4 before 3) wins over the earlier time."""
    r, seed = shipped, SEEDS["callmonkey"]
    r.clock.set(f"{TUE}T10:00", seed.tz)
    await r.import_records(seed.campaign, "beurs", [seed.rec(k, n) for n, k in
                                                    enumerate(("P3", "P4", "P6", "POOL"))])
    await staff(r, seed)
    for rid, code, at in (("P3", "TB_GEMIDDELD", "14:00"), ("P4", "TB_HOOG", "14:05"),
                          ("P6", "TB_HEEL_HOOG", "14:10")):
        await r.dispose(await r.lease("alice", rid), code, callback={"at": f"{WED}T{at}"})
    await ok(r.admin, "agent.logout", agent="alice")  # her callbacks go to the team
    r.clock.set(f"{WED}T14:10", seed.tz)
    order = [(lz["record"]["id"], lz["reason"]) for lz in await r.next("bob", count=4)]
    assert order == [("P4", "team_callback"), ("P3", "team_callback"), ("POOL", "pool")]
    await r.login("alice", [seed.campaign], [seed.team])
    assert [(lz["record"]["id"], lz["reason"]) for lz in await r.next("alice")] == \
        [("P6", "personal_callback")]


BAD_FIELDS = [
    ("OFFERTE", {"kans": 60, "verwachte_orderdatum": "2027-07-01"}, "offerte_waarde"),
    ("OFFERTE", {**OFFERTE["fields"], "offerte_waarde": "12.500"}, "offerte_waarde"),
    ("OFFERTE", {**OFFERTE["fields"], "offerte_waarde": 0}, "offerte_waarde"),
    ("OFFERTE", {**OFFERTE["fields"], "offerte_waarde": -10}, "offerte_waarde"),
    ("OFFERTE", {**OFFERTE["fields"], "kans": 150}, "kans"),
    ("OFFERTE", {**OFFERTE["fields"], "kans": True}, "kans"),
    ("OFFERTE", {**OFFERTE["fields"], "verwachte_orderdatum": "31-07-2027"},
     "verwachte_orderdatum"),
    ("OFFERTE", {**OFFERTE["fields"], "verwachte_orderdatum": "2027-02-30"},
     "verwachte_orderdatum"),
    ("OFFERTE", {**OFFERTE["fields"], "korting": 5}, "korting"),
    ("ORDER", {**ORDER["fields"], "reden_gewonnen": "geluk"}, "reden_gewonnen"),
    ("ORDER", {"orderwaarde": 100, "reden_gewonnen": "prijs"}, "datum_gewonnen"),
    ("ORDER", {**ORDER["fields"], "reden_verloren": "prijs"}, "reden_verloren"),
    ("VERLOREN", {"datum_verloren": "2027-06-15"}, "reden_verloren"),
    ("VERLOREN", {**LOST["fields"], "orderwaarde": "veel"}, "orderwaarde"),
    ("AFSPRAAK", {"accountmanager": "Sanne"}, "accountmanager"),
]


async def test_callmonkey_field_violations_name_the_field_and_change_nothing(
        shipped: Running) -> None:
    """Every violation of the quote / order / lost / appointment fields is a bad_request
    naming ``fields.<name>``; after all of them the record has no history and the same
    lease is still disposable."""
    r, seed = shipped, SEEDS["callmonkey"]
    r.clock.set(f"{TUE}T10:00", seed.tz)
    await r.import_records(seed.campaign, "beurs", [seed.rec("R", 1)])
    await staff(r, seed)
    lease = await r.lease("alice", "R")
    valid_extra = {"OFFERTE": {"callback": {"at": f"{WED}T11:00"}},
                   "AFSPRAAK": {"appointment": {"at": f"{MON}T10:00"}}}
    for code, fields, bad in BAD_FIELDS:
        ans = await r.admin.call("dispose", lease=lease["token"], code=code, fields=fields,
                                 **valid_extra.get(code, {}))
        err = refused(ans, "bad_request", f"fields.{bad}")
        assert bad in err["message"] or code in err["message"], err
    rec = await r.get("R")
    assert (rec["state"], rec["attempts"], rec["history"]) == ("leased", 0, [])
    ans = await r.dispose(lease, "OFFERTE", callback={"at": f"{WED}T11:00"}, fields={
        "offerte_waarde": 12500.456, "kans": 60, "verwachte_orderdatum": "2027-07-01"})
    assert ans["state"] == "callback"
    assert (await r.get("R"))["history"][0]["fields"] == {
        "offerte_waarde": 12500.46, "kans": 60, "verwachte_orderdatum": "2027-07-01"}
