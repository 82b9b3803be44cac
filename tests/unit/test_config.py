"""Config loading: every shipped file loads; every problem is reported at once with its
file and key path; unknown keys are errors; ``check-config`` prints them."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from nextcall.config import load
from nextcall.core.errors import ConfigError
from nextcall.core.model import Interval

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent / "nextcall"


def test_shipped_config_loads_every_file() -> None:
    s = load(ROOT / "config" / "nextcall.toml")
    shipped = sorted(str(p) for p in (ROOT / "config").rglob("*.toml"))
    assert sorted(s.files) == shipped, "every TOML file in config/ is reached by the main file"
    demo = s.campaigns["demo"]
    assert demo.codes["NA"].delays_s == (1800, 3600, 14400, 86400)
    assert demo.codes["OLD"].enabled is False
    assert demo.window[0] == (Interval(540, 750), Interval(780, 1260))
    assert demo.legal_window == Interval(480, 1260)
    assert s.daemon.max_line_bytes == 65536
    # one result-code set per seed system, each used by its campaign(s)
    # (tests/integration/test_seed_scenarios.py drives every action of each over the socket)
    assert set(s.campaigns) == {"demo", "softrecruit", "ic-preview", "ic-retention",
                                "evergiving-welcome", "tegsoft-sales",
                                "callmonkey-telemarketing", "callmonkey-sales", "collections"}
    assert set(s.resultsets) == {"standard", "softrecruit", "intelligentcontacts",
                                 "evergiving", "tegsoft", "callmonkey", "collections"}
    # the collections campaign shows attempt budgets (Regulation F: 7 calls in 7 days)
    coll = s.campaigns["collections"]
    assert coll.budgets is not None
    assert (coll.budgets.record_per_days, coll.budgets.record_days) == (7, 7)
    assert coll.codes["CBREQ"].ignore_budgets and not coll.codes["CB"].ignore_budgets
    actions = {name: {rc.action for rc in c.codes.values()} for name, c in s.campaigns.items()}
    assert actions["softrecruit"] == {"retry", "callback", "close", "hold", "special", "dnc"}
    assert actions["ic-preview"] == {"retry", "close_until_reload", "dnc", "roll"}
    assert actions["evergiving-welcome"] == {"retry", "callback", "close"}
    assert actions["tegsoft-sales"] == {"close", "callback", "remove_number", "block_number"}
    assert actions["callmonkey-sales"] == {"retry", "callback", "close", "remove_number",
                                           "hold", "roll"}
    cm = s.campaigns["callmonkey-sales"].codes
    assert {rc.category for rc in cm.values()} == {"open", "discard", "negative", "callback",
                                                   "lead", "quote", "order/lost"}
    assert {rc.contact_priority for rc in cm.values()
            if rc.category == "callback"} == {1, 3, 4, 6}
    assert [(f.name, f.type) for f in cm["OFFERTE"].fields] == [
        ("offerte_waarde", "money"), ("kans", "percent"), ("verwachte_orderdatum", "date")]


def _write(tmp: Path, main: str, **files: str) -> Path:
    for name, text in files.items():
        (tmp / name).write_text(textwrap.dedent(text))
    p = tmp / "main.toml"
    p.write_text(textwrap.dedent(main))
    return p


def test_every_problem_is_reported_with_its_path(tmp_path: Path) -> None:
    p = _write(tmp_path, """
        include = ["c.toml", "missing-*.toml"]
        [daemon]
        lease_s = 1
        socket_mode = "999"
        typo_key = 1
        [auth]
        admin_uids = ["root"]
    """, **{"c.toml": """
        [resultsets.s]
        [[resultsets.s.codes]]
        code = "A"
        action = "teleport"
        [[resultsets.s.codes]]
        code = "B"
        action = "close"
        delays_s = [1]
        [[resultsets.s.codes]]
        code = "B"
        action = "hold"
        [campaigns.x]
        resultset = "nope"
        [campaigns.y]
        resultset = "s"
        timezone = "Mars/Olympus"
        legal_window = "21:00-08:00"
        max_attempts = 0
        [campaigns.y.window]
        mon = ["9:00-17:00"]
        funday = ["09:00-10:00"]
    """})
    with pytest.raises(ConfigError) as exc:
        load(p)
    got = {where.split(": ", 1)[-1]: msg for where, msg in exc.value.problems}
    text = "\n".join(f"{w}: {m}" for w, m in exc.value.problems)
    assert "daemon.lease_s" in got
    assert "daemon.socket_mode" in got
    assert got["daemon.typo_key"] == "unknown key"
    assert "auth.admin_uids[0]" in got
    assert "include[1]" in got and "matches no file" in got["include[1]"]
    assert "resultsets.s.codes[0].action" in got
    assert "campaigns.y.timezone" in got and "Mars/Olympus" in got["campaigns.y.timezone"]
    assert "campaigns.y.legal_window" in got
    assert "campaigns.y.max_attempts" in got
    assert "campaigns.y.window.mon[0]" in got
    assert "campaigns.y.window.funday" in got
    assert f"{tmp_path / 'c.toml'}: campaigns.y.timezone" in text, "the file is named"


def test_cross_reference_problems(tmp_path: Path) -> None:
    p = _write(tmp_path, """
        include = ["c.toml", "d.toml"]
    """, **{"c.toml": """
        [resultsets.s]
        [[resultsets.s.codes]]
        code = "B"
        action = "close"
        delays_s = [1]
        [[resultsets.s.codes]]
        code = "B"
        action = "hold"
        [campaigns.x]
        resultset = "nope"
    """, "d.toml": """
        [daemon]
        lease_s = 10
        [resultsets.s]
        codes = []
    """})
    with pytest.raises(ConfigError) as exc:
        load(p)
    text = "\n".join(f"{w}: {m}" for w, m in exc.value.problems)
    assert "resultsets.s.codes[1].code: duplicate code 'B'" in text
    assert "resultsets.s.codes[0].delays_s: only retry codes take delays" in text
    assert "campaigns.x.resultset: no result-code set 'nope'" in text
    assert f"{tmp_path / 'd.toml'}: daemon: only the main file may set this" in text
    assert f"{tmp_path / 'd.toml'}: resultsets.s: already defined in" in text


def test_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as exc:
        load(tmp_path / "none.toml")
    assert exc.value.problems[0][1] == "file not found"
    bad = tmp_path / "bad.toml"
    bad.write_text("[daemon\n")
    with pytest.raises(ConfigError) as exc:
        load(bad)
    assert "not valid TOML" in exc.value.problems[0][1]


def test_check_config_command(tmp_path: Path) -> None:
    ok = subprocess.run([str(BIN), "check-config", str(ROOT / "config" / "nextcall.toml")],
                        capture_output=True, text=True)
    assert ok.returncode == 0 and ok.stdout.startswith("ok (9 campaigns, 15 files)"), ok.stdout
    p = _write(tmp_path, """
        [daemon]
        lease_s = "long"
        [campaigns.z]
        resultset = "none"
    """)
    bad = subprocess.run([str(BIN), "check-config", str(p)], capture_output=True, text=True)
    assert bad.returncode == 1
    lines = bad.stdout.strip().splitlines()
    assert any("daemon.lease_s" in ln for ln in lines)
    assert any("campaigns.z.resultset" in ln for ln in lines)


def test_amend_grace_is_set_per_daemon_and_per_campaign(tmp_path: Path) -> None:
    s = load(ROOT / "config" / "nextcall.toml")
    assert s.daemon.amend_grace_s == 600
    assert s.campaigns["evergiving-welcome"].amend_grace_s == 900
    assert s.campaigns["demo"].amend_grace_s == 600  # the [daemon] default
    p = _write(tmp_path, """
        include = ["c.toml"]
        [daemon]
        amend_grace_s = -1
    """, **{"c.toml": """
        [resultsets.s]
        [[resultsets.s.codes]]
        code = "NA"
        action = "retry"
        [campaigns.y]
        resultset = "s"
        amend_grace_s = "soon"
    """})
    with pytest.raises(ConfigError) as exc:
        load(p)
    got = {where.split(": ", 1)[-1]: msg for where, msg in exc.value.problems}
    assert "daemon.amend_grace_s" in got and "campaigns.y.amend_grace_s" in got


def test_budget_problems_name_their_key(tmp_path: Path) -> None:
    cfg = tmp_path / "n.toml"
    cfg.write_text(textwrap.dedent(f"""
        [daemon]
        socket = "{tmp_path}/s.sock"
        [resultsets.r]
        [[resultsets.r.codes]]
        code = "NA"
        action = "retry"
        ignore_budgets = true
        [[resultsets.r.codes]]
        code = "CB"
        action = "callback"
        ignore_budgets = true
        [campaigns.c]
        resultset = "r"
        [campaigns.c.budgets]
        record_per_day = 0
        record_days = 400
        number_gap = 60
    """))
    with pytest.raises(ConfigError) as exc:
        load(cfg)
    got = {where.split(": ", 1)[-1]: msg for where, msg in exc.value.problems}
    assert set(got) == {"campaigns.c.budgets.record_per_day",
                        "campaigns.c.budgets.record_days",
                        "campaigns.c.budgets.number_gap",
                        "resultsets.r.codes[0].ignore_budgets"}, got
    assert "only callback codes take ignore_budgets" in \
        got["resultsets.r.codes[0].ignore_budgets"]


def test_an_empty_budgets_table_is_no_budgets(tmp_path: Path) -> None:
    cfg = tmp_path / "n.toml"
    cfg.write_text(textwrap.dedent(f"""
        [daemon]
        socket = "{tmp_path}/s.sock"
        [resultsets.r]
        [[resultsets.r.codes]]
        code = "NA"
        action = "retry"
        [campaigns.c]
        resultset = "r"
        [campaigns.c.budgets]
        record_days = 3
    """))
    assert load(cfg).campaigns["c"].budgets is None
