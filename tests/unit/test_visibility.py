"""Who sees a callback in the queue and who is reminded of it (``core/visibility.py``):
tables of examples, then properties over random logins and callbacks."""

from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nextcall.core.model import CALLBACK_SCOPES
from nextcall.core.records import CALLBACK, CallbackIntent, Record
from nextcall.core.visibility import reminder_recipients, sees_callback
from nextcall.notify.reminders import Reminders


@dataclass
class Login:
    """An agent's login, as the engine's ``AgentSession`` holds it."""

    campaigns: tuple[str, ...]
    teams: tuple[str, ...]
    logged_in: bool = True


def callback_record(scope: str, owner: str | None = "ann", team: str | None = "north",
                    cb_team: str | None = None, campaign: str = "donors",
                    rec_owner: str | None = None) -> Record:
    """A record in ``callback`` state as ``decide`` leaves it: the record's owner and
    team are the callback's unless given."""
    cb_team = team if cb_team is None else cb_team
    owner = None if scope == "team" else owner
    intent = CallbackIntent(at=0.0, timezone="UTC", local="", scope=scope, owner=owner,
                            team=cb_team, contact_priority=4)
    return Record(1, "r1", campaign, "l", [], "UTC", 1, "{}", state=CALLBACK,
                  owner=owner if rec_owner is None else rec_owner, team=team,
                  callback=intent)


BOB_NORTH = Login(("donors",), ("north",))


@pytest.mark.parametrize(("agent", "login", "rec", "sees"), [
    ("ann", None, callback_record("personal"), True),  # the owner, even unknown
    ("bob", BOB_NORTH, callback_record("personal"), False),
    ("bob", BOB_NORTH, callback_record("personal_then_team"), True),
    ("bob", BOB_NORTH, callback_record("team"), True),
    ("bob", BOB_NORTH, callback_record("anyone", team=None), True),
    ("bob", Login(("donors",), ("south",)), callback_record("team"), False),
    ("bob", Login(("donors",), ("south",)), callback_record("anyone"), True),
    ("bob", Login(("other",), ("north",)), callback_record("team"), False),
    ("bob", Login(("donors",), ("north",), logged_in=False), callback_record("team"), True),
    ("bob", None, callback_record("anyone"), False),
    ("bob", BOB_NORTH, Record(1, "r1", "donors", "l", [], "UTC", 1, "{}", team="north"),
     False),  # no callback
])
def test_sees_callback(agent: str, login: Login | None, rec: Record, sees: bool) -> None:
    assert sees_callback(agent, login, rec) is sees


LOGINS = {
    "ann": Login(("donors",), ("north",)),
    "bob": Login(("donors", "tm"), ("north", "south")),
    "cy": Login(("donors",), ("north",), logged_in=False),
    "dee": Login(("tm",), ("north",)),
    "eve": Login(("donors",), ("south",)),
}


@pytest.mark.parametrize(("rec", "recipients"), [
    (callback_record("personal"), ["ann"]),
    (callback_record("personal_then_team"), ["ann"]),
    (callback_record("anyone", owner="eve"), ["eve"]),
    (callback_record("team"), ["ann", "bob"]),  # logged in, on donors, in north
    (callback_record("team", team="south"), ["bob", "eve"]),
    (callback_record("team", team="north", cb_team="south"), ["bob", "eve"]),
    (callback_record("team", team=None), []),
    (callback_record("anyone", owner=None), []),
    (callback_record("personal", owner=None, rec_owner="bob"), ["bob"]),
])
def test_reminder_recipients(rec: Record, recipients: list[str]) -> None:
    assert reminder_recipients(rec, LOGINS) == recipients


def test_the_reminders_use_the_core_rule() -> None:
    service: Any = SimpleNamespace(engine=SimpleNamespace(agents=LOGINS))
    rec = callback_record("team")
    assert Reminders(service).recipients(rec) == reminder_recipients(rec, LOGINS)


# ------------------------------------------------------------------ properties
AGENTS = ("ann", "bob", "cy")
TEAMS = ("north", "south")
CAMPAIGNS = ("donors", "tm")

logins = st.builds(Login, st.lists(st.sampled_from(CAMPAIGNS), unique=True).map(tuple),
                   st.lists(st.sampled_from(TEAMS), unique=True).map(tuple), st.booleans())
login_maps = st.dictionaries(st.sampled_from(AGENTS), logins)
records = st.builds(callback_record, scope=st.sampled_from(CALLBACK_SCOPES),
                    owner=st.none() | st.sampled_from(AGENTS),
                    team=st.none() | st.sampled_from(TEAMS),
                    campaign=st.sampled_from(CAMPAIGNS))


@given(agent=st.sampled_from(AGENTS), login=st.none() | logins, rec=records)
def test_only_owner_or_a_campaign_agent_sees(agent: str, login: Login | None,
                                            rec: Record) -> None:
    if sees_callback(agent, login, rec) and rec.owner != agent:
        assert login is not None and rec.campaign in login.campaigns
        assert rec.callback is not None and rec.callback.scope != "personal"


@given(rec=records, login=st.none() | logins)
def test_the_owner_always_sees(rec: Record, login: Login | None) -> None:
    if rec.owner is not None:
        assert sees_callback(rec.owner, login, rec)


@given(agent=st.sampled_from(AGENTS), login=logins, rec=records,
       more_campaigns=st.sets(st.sampled_from(CAMPAIGNS)),
       more_teams=st.sets(st.sampled_from(TEAMS)))
def test_more_campaigns_or_teams_never_hide_a_callback(
        agent: str, login: Login, rec: Record, more_campaigns: set[str],
        more_teams: set[str]) -> None:
    wider = Login(tuple(set(login.campaigns) | more_campaigns),
                  tuple(set(login.teams) | more_teams), login.logged_in)
    if sees_callback(agent, login, rec):
        assert sees_callback(agent, wider, rec)


@given(agent=st.sampled_from(AGENTS), login=logins, rec=records)
def test_the_queue_does_not_depend_on_being_logged_in(agent: str, login: Login,
                                                       rec: Record) -> None:
    out = Login(login.campaigns, login.teams, not login.logged_in)
    assert sees_callback(agent, login, rec) == sees_callback(agent, out, rec)


@given(rec=records, agents=login_maps)
def test_recipients(rec: Record, agents: dict[str, Login]) -> None:
    got = reminder_recipients(rec, agents)
    assert got == sorted(set(got))
    cb = rec.callback
    assert cb is not None
    if cb.scope != "team":
        assert got == ([rec.owner] if rec.owner else [])
        return
    expected = [a for a, s in sorted(agents.items()) if s.logged_in
                and rec.campaign in s.campaigns and cb.team is not None
                and cb.team in s.teams]
    assert got == expected
    # whoever is reminded of a team callback finds it in its queue
    assert all(sees_callback(a, agents[a], rec) for a in got)
