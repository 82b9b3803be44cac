"""Config of the e-mail features: reminder templates, ``notify`` addresses,
``allow_assign`` and a set's ``require_contact_priority`` (given, not defaulted)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from nextcall.config import load
from nextcall.core.errors import ConfigError
from nextcall.mailcfg import DEFAULT_BODY, DEFAULT_SUBJECT, check_template, render
from tests.conftest import write_config

CAMPAIGN = """
[campaigns.c]
resultset = "s"
{extra}
"""


def _problems(tmp_path: Path, codes: str, set_extra: str = "", campaign_extra: str = ""
              ) -> list[tuple[str, str]]:
    text = f"[resultsets.s]\n{set_extra}\n{textwrap.dedent(codes)}\n" + \
        CAMPAIGN.replace("{extra}", textwrap.dedent(campaign_extra))
    try:
        load(write_config(tmp_path, campaigns=text))
    except ConfigError as exc:
        return [(path.split(": ", 1)[1], msg) for path, msg in exc.problems]
    return []


CALLBACK_NO_CP = """
[[resultsets.s.codes]]
code = "CB"
action = "callback"
[[resultsets.s.codes]]
code = "VM"
action = "retry"
category = "callback"
"""


def test_require_contact_priority_tells_given_from_defaulted(tmp_path: Path) -> None:
    assert _problems(tmp_path, CALLBACK_NO_CP) == []
    got = _problems(tmp_path, CALLBACK_NO_CP, "require_contact_priority = true")
    assert [p for p, _ in got] == ["resultsets.s.codes[0].contact_priority",
                                   "resultsets.s.codes[1].contact_priority"]
    assert "require_contact_priority" in got[0][1]
    # given, even at the default value 1, is enough
    given = CALLBACK_NO_CP.replace('action = "callback"', 'action = "callback"\n'
                                   'contact_priority = 1').replace(
        'category = "callback"', 'category = "callback"\ncontact_priority = 1')
    assert _problems(tmp_path, given, "require_contact_priority = true") == []


def test_allow_assign_is_a_callback_setting(tmp_path: Path) -> None:
    got = _problems(tmp_path, """
        [[resultsets.s.codes]]
        code = "NA"
        action = "retry"
        allow_assign = false
    """)
    assert got == [("resultsets.s.codes[0].allow_assign",
                    "only callback codes take allow_assign")]


def test_notify_takes_addresses(tmp_path: Path) -> None:
    got = _problems(tmp_path, """
        [[resultsets.s.codes]]
        code = "NO"
        action = "close"
        notify = ["ok@example.com", "not an address"]
    """)
    assert [p for p, _ in got][0] == "resultsets.s.codes[0].notify[1]"
    assert "not an e-mail address" in got[0][1]


CB = """
[[resultsets.s.codes]]
code = "CB"
action = "callback"
"""


@pytest.mark.parametrize(("template", "error"), [
    ('subject = "Call {recrod}"', "unknown placeholder {recrod}"),
    ('body = "At {local:>5}"', "takes no format"),
    ('body = "brace { open"', "literal braces"),
])
def test_reminder_template_problems_name_the_field(tmp_path: Path, template: str,
                                                   error: str) -> None:
    got = _problems(tmp_path, CB, campaign_extra=f"[campaigns.c.reminder_email]\n{template}")
    assert len(got) == 1, got
    key = template.split(" ", 1)[0]
    assert got[0][0] == f"campaigns.c.reminder_email.{key}"
    assert error in got[0][1]


def test_reminder_template_per_campaign_and_default(tmp_path: Path) -> None:
    text = CB + CAMPAIGN.replace("{extra}", '[campaigns.c.reminder_email]\n'
                                 'subject = "Bel {data.naam} om {callee_time}"') + \
        CAMPAIGN.replace("[campaigns.c]", "[campaigns.d]").replace("{extra}", "")
    s = load(write_config(tmp_path, campaigns="[resultsets.s]\n" + text))
    assert s.reminder_email("c").subject == "Bel {data.naam} om {callee_time}"
    assert s.reminder_email("c").body == DEFAULT_BODY
    assert s.reminder_email("d").subject == DEFAULT_SUBJECT


def test_render_fills_values_and_data_and_leaves_missing_ones_empty() -> None:
    text = check_template("{{{record}}} {data.naam}/{data.gone}/{data.n} {reason}")
    assert render(text, {"record": "R1", "reason": None}, {"naam": "Els", "n": 3}) == \
        "{R1} Els//3 "
