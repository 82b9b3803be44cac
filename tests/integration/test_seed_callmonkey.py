"""CallMonkey's result-code details over the socket, on the SHIPPED configuration, with a
real SMTP server (aiosmtpd on 127.0.0.1):

- "Aan andere gebruiker toewijzen" per code (``allow_assign``): TB_HOOG's callback may be
  given to another agent of the campaign, TB_HEEL_HOOG's may not (``assign_not_allowed``,
  field ``callback.owner``, nothing changed);
- "De contact prioriteit is verplicht" (``require_contact_priority``): the shipped set
  turns it on, and a callback code without a priority fails ``check-config``;
- "Verstuur herinneringsmail" from the campaign's Dutch template, the time in the agent's
  zone and in the callee's;
- "Verstuur notificatie e-mail (naar Account Manager)" (``notify`` on AFSPRAAK): one
  e-mail after the commit, with an iCalendar invite parsed back here.

The service clock is set to an instant in the (real) past: APScheduler runs on real time,
so a reminder whose time has come on the service clock fires at once.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from icalendar import Calendar

from nextcall.config import AgentCfg, SmtpCfg, load
from nextcall.core.errors import ConfigError
from tests.integration.shipped import (
    SHIPPED,
    Clock,
    Running,
    instant,
    ok,
    refused,
    shipped_settings,
)
from tests.integration.smtp import Inbox

AMS, LISBON = "Europe/Amsterdam", "Europe/Lisbon"
TUE = "2026-06-16"  # a Tuesday, no holiday, in the real past
CAMPAIGN = "callmonkey-sales"
DATA = {"bedrijf": "Bakkerij Jansen", "contactpersoon": "Els Jansen"}


@pytest.fixture
async def callmonkey(tmp_path: Path, smtp: tuple[Inbox, int]) -> AsyncIterator[Running]:
    """The shipped config with an SMTP server; alice works from Lisbon, bob from
    Amsterdam; the clock is Tuesday 10:00 in Amsterdam; address A is imported."""
    _, port = smtp
    s = shipped_settings(tmp_path)
    s = dataclasses.replace(
        s, smtp=SmtpCfg.model_validate({"host": "127.0.0.1", "port": port,
                                        "from": "nextcall@example.com", "timeout_s": 5}),
        agents={"alice": AgentCfg(email="alice@example.com", timezone=LISBON),
                "bob": AgentCfg(email="bob@example.com")})
    r = Running(s, Clock(instant(f"{TUE}T10:00", AMS)))
    await r.start()
    try:
        await r.import_records(CAMPAIGN, "beurs", [
            {"id": "A", "phones": ["+31201230001"], "timezone": AMS, "team": "binnendienst",
             "data": DATA}])
        for agent in ("alice", "bob"):
            await r.login(agent, [CAMPAIGN], ["binnendienst"])
        yield r
    finally:
        await r.stop()


def _at(local: str) -> float:
    return instant(local, AMS)


async def test_allow_assign_per_code(callmonkey: Running) -> None:
    """TB_HEEL_HOOG keeps the callback with the agent who set it: an owner is refused
    and the lease is untouched; TB_HOOG gives it to bob."""
    r = callmonkey
    lease = await r.lease("alice", "A")
    refused(await r.admin.call("dispose", lease=lease["token"], code="TB_HEEL_HOOG",
                               callback={"at": f"{TUE}T14:00", "owner": "bob"}),
            "assign_not_allowed", "callback.owner")
    assert (await r.get("A"))["state"] == "leased"
    ans = await r.dispose(lease, "TB_HOOG", callback={"at": f"{TUE}T14:00", "owner": "bob"})
    assert (ans["owner"], ans["callback"]["owner"]) == ("bob", "bob")
    camps = (await ok(r.admin, "campaigns"))["campaigns"]
    codes = {rc["code"]: rc for c in camps if c["name"] == CAMPAIGN for rc in c["codes"]}
    assert codes["TB_HOOG"]["requires"]["assign"] is True
    assert codes["TB_HEEL_HOOG"]["requires"]["assign"] is False


async def test_reminder_email_from_the_campaign_template(callmonkey: Running,
                                                         smtp: tuple[Inbox, int]) -> None:
    """The TB_HEEL_HOOG reminder is the Dutch template filled in: the address's data, the
    time in alice's zone (Lisbon, an hour behind) and in the callee's."""
    r, (inbox, _) = callmonkey, smtp
    lease = await r.lease("alice", "A")
    await r.dispose(lease, "TB_HEEL_HOOG", callback={"at": f"{TUE}T10:10",
                                                       "reason": "na de lunch"})
    mails = await inbox.wait_for(1)
    assert len(mails) == 1, mails
    rcpt, msg = mails[0]
    assert rcpt == ["alice@example.com"]
    assert msg["Subject"] == "Herinnering: Bakkerij Jansen terugbellen om 09:10"
    text = msg.get_content().replace("\r\n", "\n")
    assert text.startswith("Beste alice,\n\nover 10 minuten bel je Els Jansen van "
                           "Bakkerij Jansen terug\n(adres A, campagne callmonkey-sales).")
    assert f"Tijdstip:  {TUE} 09:10 ({LISBON})" in text
    assert f"Bij hen:   {TUE} 10:10 ({AMS})" in text
    assert "Reden:     na de lunch" in text


async def test_afspraak_notifies_the_account_managers_with_an_invite(
        callmonkey: Running, smtp: tuple[Inbox, int]) -> None:
    """AFSPRAAK e-mails accountmanagers@example.com once committed; the .ics is a REQUEST
    for the appointment instant in UTC, with the addresses as attendees."""
    r, (inbox, _) = callmonkey, smtp
    lease = await r.lease("alice", "A")
    ans = await r.dispose(lease, "AFSPRAAK", appointment={"at": "2026-06-18T14:30"},
                          fields={"accountmanager": "Pieter Jansen"})
    assert ans["state"] == "held"
    mails = await inbox.wait_for(1)
    assert len(mails) == 1, mails
    rcpt, msg = mails[0]
    assert rcpt == ["accountmanagers@example.com"]
    assert "A (callmonkey-sales)" in msg["Subject"] and "2026-06-18 14:30" in msg["Subject"]
    body = msg.get_body(("plain",))
    assert body is not None
    text = body.get_content().replace("\r\n", "\n")
    assert "Agent:        alice" in text and "accountmanager: Pieter Jansen" in text
    assert "bedrijf: Bakkerij Jansen" in text
    parts = [p for p in msg.iter_attachments() if p.get_content_type() == "text/calendar"]
    assert len(parts) == 1 and parts[0].get_param("method") == "REQUEST"
    cal = Calendar.from_ical(parts[0].get_payload(decode=True))
    assert str(cal["method"]) == "REQUEST"
    events = cal.walk("VEVENT")
    assert len(events) == 1
    ev = events[0]
    start = ev.decoded("dtstart")
    assert start == datetime.fromtimestamp(_at("2026-06-18T14:30"), UTC)
    assert start.utcoffset() is not None and start.utcoffset().total_seconds() == 0
    assert str(ev["organizer"]) == "mailto:nextcall@example.com"
    attendees = ev["attendee"] if isinstance(ev["attendee"], list) else [ev["attendee"]]
    assert [str(a) for a in attendees] == ["mailto:accountmanagers@example.com"]
    assert str(ev["uid"]).startswith("nextcall-") and "Afspraak" in str(ev["summary"])
    # a code without notify sends nothing: the next message is the next AFSPRAAK's
    await r.import_records(CAMPAIGN, "beurs", [
        {"id": "B", "phones": ["+31201230002"], "timezone": AMS},
        {"id": "C", "phones": ["+31201230003"], "timezone": AMS}])
    await r.dispose(await r.lease("bob", "B"), "NEG_CP")
    await r.dispose(await r.lease("bob", "C"), "AFSPRAAK", appointment={
        "at": "2026-06-19T09:00"}, fields={"accountmanager": "Sanne de Boer"})
    mails = await inbox.wait_for(2)
    assert len(mails) == 2 and "C (callmonkey-sales)" in mails[1][1]["Subject"]


def test_shipped_set_requires_contact_priority(tmp_path: Path) -> None:
    """The shipped CallMonkey set sets require_contact_priority; dropping a callback
    code's priority from a copy of it is a check-config problem naming the field."""
    assert load(SHIPPED).resultsets["callmonkey"].require_contact_priority is True
    codes = (SHIPPED.parent / "resultcodes" / "callmonkey.toml").read_text()
    broken = codes
    start = broken.index('code = "TB_HEEL_HOOG"')
    end = broken.index("contact_priority = 6", start)
    broken = broken[:end] + broken[end + len("contact_priority = 6"):]
    (tmp_path / "codes.toml").write_text(broken)
    (tmp_path / "camps.toml").write_text(
        (SHIPPED.parent / "campaigns" / "callmonkey.toml").read_text())
    main = tmp_path / "nextcall.toml"
    main.write_text('include = ["codes.toml", "camps.toml"]\n')
    with pytest.raises(ConfigError) as exc:
        load(main)
    paths = [p for p, _ in exc.value.problems]
    assert len(paths) == 1 and paths[0].endswith(".contact_priority"), exc.value.problems
    assert "resultsets.callmonkey.codes[" in paths[0]
