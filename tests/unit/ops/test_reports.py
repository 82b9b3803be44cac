"""``report`` on the in-memory store: what each configured code counts as, the rates, the
totals, the range of local days and the refusals; config checks of the report roles."""

from __future__ import annotations

import textwrap
from datetime import date
from pathlib import Path

import pytest

from nextcall.config import ConfigError, load
from nextcall.core.calendar import day_bounds, offset_steps
from nextcall.roles import AGENT, SUPERVISOR
from tests.conftest import write_config
from tests.unit.ops.harness import Ops, numbers

DAY = "2027-01-15"  # the harness clock: 1_800_000_000 is 2027-01-15T08:00:00Z

CODES = textwrap.dedent("""
    [resultsets.q]
    [[resultsets.q.codes]]
    code = "NA"
    action = "retry"
    [[resultsets.q.codes]]
    code = "PITCH"
    action = "retry"
    contact = true
    presentation = true
    [[resultsets.q.codes]]
    code = "QUOTE"
    action = "retry"
    contact = true
    presentation = true
    report = "quote"
    [[resultsets.q.codes.fields]]
    name = "amount"
    type = "money"
    report = "value"
    [[resultsets.q.codes.fields]]
    name = "pct"
    type = "percent"
    report = "chance"
    [[resultsets.q.codes.fields]]
    name = "expect"
    type = "date"
    report = "expected"
    [[resultsets.q.codes]]
    code = "WON"
    action = "close"
    contact = true
    presentation = true
    success = true
    revenue = "optional"
    report = "won"
    [[resultsets.q.codes.fields]]
    name = "why"
    type = "choice"
    choices = ["price", "service"]
    report = "reason"
""")


@pytest.fixture
async def qops(tmp_path: Path) -> Ops:
    o = Ops(tmp_path)
    (tmp_path / "codes.toml").write_text(CODES)
    (tmp_path / "camps.toml").write_text(
        (tmp_path / "camps.toml").read_text().replace('resultset = "std"', 'resultset = "q"'))
    o.settings = load(tmp_path / "nextcall.toml")
    from nextcall.service import Service
    o.svc = Service(o.settings, o.store, clock=o.clock)
    return await o.start()


async def _work(o: Ops, *dispositions: tuple[str, dict[str, object]]) -> None:
    await o.ok("records.import", campaign="t", list="l", records=numbers(len(dispositions)))
    for code, extra in dispositions:
        (lease,) = (await o.ok("next", agent="ann", campaigns=["t"]))["leases"]
        await o.ok("dispose", lease=lease["token"], code=code, **extra)


async def test_figures_rates_pipeline_and_orders(qops: Ops) -> None:
    await _work(qops, ("NA", {}), ("PITCH", {}),
                ("QUOTE", {"fields": {"amount": 200, "pct": 25, "expect": "2027-03-09"}}),
                ("WON", {"revenue": 40, "fields": {"why": "price"}}))
    ans = await qops.ok("report", qops.peer(SUPERVISOR), **{"from": DAY, "to": DAY},
                        group_by=["code"])
    assert [(r["code"], r["attempts"], r["contacts"]) for r in ans["rows"]] == [
        ("NA", 1, 0), ("PITCH", 1, 1), ("QUOTE", 1, 1), ("WON", 1, 1)]
    assert ans["total"] == {"attempts": 4, "contacts": 3, "presentations": 3,
                            "successes": 1, "revenue": 40.0, "contact_rate": 0.75,
                            "presentation_rate": 1.0, "conversion_rate": 0.3333}
    assert ans["quotes"] == [{"month": "2027-03", "count": 1, "value": 200.0,
                              "weighted": 50.0}]
    assert ans["orders"] == [{"outcome": "won", "reason": "price", "count": 1,
                              "value": 0.0}]


async def test_an_amended_disposition_counts_once_in_its_latest_version(qops: Ops) -> None:
    await qops.ok("records.import", campaign="t", list="l", records=numbers(1))
    (lease,) = (await qops.ok("next", agent="ann", campaigns=["t"]))["leases"]
    await qops.ok("dispose", lease=lease["token"], code="NA")
    await qops.ok("amend", qops.peer(SUPERVISOR), lease=lease["token"], code="PITCH",
                  reason="the agent clicked the wrong code")
    ans = await qops.ok("report", qops.peer(SUPERVISOR), **{"from": DAY, "to": DAY},
                        group_by=["code"])
    assert [(r["code"], r["attempts"], r["contacts"]) for r in ans["rows"]] == [
        ("PITCH", 1, 1)]


async def test_the_range_is_of_local_days(qops: Ops) -> None:
    """08:00 UTC on the 15th is 22:00 on the 14th in Honolulu (UTC-10)."""
    await _work(qops, ("NA", {}))
    on_15 = await qops.ok("report", **{"from": DAY, "to": DAY}, timezone="Pacific/Honolulu")
    assert on_15["rows"] == [] and on_15["total"]["contact_rate"] is None
    on_14 = await qops.ok("report", **{"from": "2027-01-14", "to": "2027-01-14"},
                          timezone="Pacific/Honolulu", group_by=["day", "agent"])
    assert [(r["day"], r["agent"], r["attempts"]) for r in on_14["rows"]] == [
        ("2027-01-14", "ann", 1)]


async def test_refusals(ops: Ops) -> None:
    day = {"from": DAY, "to": DAY}
    await ops.refused("report", "forbidden", ops.peer(AGENT), **day)
    for fields, field in (({"timezone": "Nowhere/Land"}, "timezone"),
                          ({"to": "2027-01-01"}, "to"), ({"to": "2031-01-01"}, "to"),
                          ({"from": "2027-13-01"}, "from"),
                          ({"group_by": ["agent", "agent"]}, "group_by")):
        err = await ops.refused("report", "bad_request", **{**day, **fields})
        assert err["field"] == field, (fields, err)
    await ops.refused("report", "bad_request", **day, group_by=["week"])


def test_offset_steps_find_each_dst_change_to_the_second() -> None:
    lo, hi = day_bounds(date(2026, 1, 1), date(2026, 12, 31), "Europe/Amsterdam")
    assert offset_steps("Europe/Amsterdam", lo, hi) == [
        (lo, 3600), (1774746000.0, 7200), (1792890000.0, 3600)]
    assert offset_steps("Asia/Kolkata", lo, hi) == [(lo, 19800)]
    # a day that begins at 01:00 because midnight does not exist (Santiago, spring):
    # 2026-09-06T01:00-03:00
    first, _ = day_bounds(date(2026, 9, 6), date(2026, 9, 6), "America/Santiago")
    assert first == 1788667200.0


@pytest.mark.parametrize(("code", "field", "where", "says"), [
    ('report = "quote"', 'name = "v"\ntype = "money"\nreport = "value"', "report",
     '"chance" and "expected"'),
    ('report = "won"', 'name = "v"\ntype = "text"\nreport = "reason"', "fields[0].report",
     "choice"),
    ('report = "lost"', 'name = "v"\ntype = "percent"\nreport = "chance"',
     "fields[0].report", "value, reason"),
    ("", 'name = "v"\ntype = "money"\nreport = "value"', "fields[0].report",
     "only a code with report"),
])
def test_report_roles_are_checked(tmp_path: Path, code: str, field: str, where: str,
                                  says: str) -> None:
    main = write_config(tmp_path)
    (tmp_path / "codes.toml").write_text(textwrap.dedent("""
        [resultsets.std]
        [[resultsets.std.codes]]
        code = "X"
        action = "close"
        """) + code + "\n[[resultsets.std.codes.fields]]\n" + field + "\n")
    with pytest.raises(ConfigError) as exc:
        load(main)
    got = {w.split(": ", 1)[-1]: m for w, m in exc.value.problems}
    assert says in got[f"resultsets.std.codes[0].{where}"], got
