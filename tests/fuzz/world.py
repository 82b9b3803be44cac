"""The fuzzers' world: a config with every result-code action, and what a frame generator
knows about the daemon it talks to (campaigns, codes, agents, record ids, live tokens).

The unit fuzz test (on the in-memory store) and the standalone fuzzers (on a real daemon)
use the same config, so a frame means the same thing to both.
"""

from __future__ import annotations

import textwrap
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.conftest import write_config

#: codes beyond the shared test set (tests/conftest.py ``CODES``): one per action it lacks
EXTRA_CODES = textwrap.dedent("""
    [[resultsets.std.codes]]
    code = "HOLD"
    action = "hold"
    [[resultsets.std.codes]]
    code = "DNC"
    action = "dnc"
    [[resultsets.std.codes]]
    code = "RM"
    action = "remove_number"
    [[resultsets.std.codes]]
    code = "BLK"
    action = "block_number"
    [[resultsets.std.codes]]
    code = "CUR"
    action = "close_until_reload"
    [[resultsets.std.codes]]
    code = "SPC"
    action = "special"
    reopen_teams = ["red"]
    [[resultsets.std.codes]]
    code = "ROLL"
    action = "roll"
    roll_campaign = "u"
    roll_list = "rolled"
    [[resultsets.std.codes]]
    code = "CBR"
    action = "callback"
    scope = "anyone"
    reminder_min = 1
    [[resultsets.std.codes]]
    code = "NAD"
    action = "retry"
    delays_s = [0, 5, 30]
""")

_ALWAYS = "\n".join(f'{d} = ["00:00-24:00"]' for d in
                    ("mon", "tue", "wed", "thu", "fri", "sat", "sun"))

#: ``t``: always open (UTC); ``u``: office hours in Amsterdam, with a holiday
CAMPAIGNS = textwrap.dedent("""
    [campaigns.t]
    resultset = "std"
    max_attempts = 1000
    grace_s = 5
    lease_s = {lease_s}
    legal_window = "00:00-24:00"
    timezone = "UTC"
    [campaigns.t.window]
    {always}
    [campaigns.u]
    resultset = "std"
    max_attempts = 4
    grace_s = 60
    timezone = "Europe/Amsterdam"
    holidays = [2030-12-25]
    [campaigns.u.window]
    mon = ["09:00-17:00"]
    tue = ["09:00-17:00"]
    wed = ["09:00-12:30", "13:00-17:00"]
    thu = ["09:00-17:00"]
    fri = ["09:00-17:00"]
""")

#: result codes that reset the attempt count (the record starts afresh elsewhere)
RESETS = frozenset({"ROLL"})
CODES = ("NA", "NA0", "NAD", "CB", "CBT", "CBR", "SALE", "NI", "OLD", "HOLD", "DNC", "RM",
         "BLK", "CUR", "SPC", "ROLL")
CALLBACK_CODES = frozenset({"CB", "CBT", "CBR"})
TEAMS = ("red", "blue", "green")
ZONES = ("UTC", "Europe/Amsterdam", "America/New_York", "Asia/Tokyo", "Pacific/Chatham")


def fuzz_config(tmp: Path, extra_daemon: str = "", lease_s: int = 60) -> Path:
    """Write the fuzz config into ``tmp`` (socket, SQLite database and includes there)."""
    camps = CAMPAIGNS.format(lease_s=lease_s, always=_ALWAYS)
    path = write_config(tmp, extra_daemon=extra_daemon, campaigns=camps)
    codes = tmp / "codes.toml"
    codes.write_text(codes.read_text() + EXTRA_CODES)
    # no metrics endpoint: several daemons may run at once, and its port is fixed
    path.write_text(path.read_text() + "\n[metrics]\nenabled = false\n")
    return path


def phone(n: int) -> str:
    """A valid Dutch mobile number; ``n`` picks one of 10 000."""
    return f"+3161234{n % 10_000:04d}"


def import_rows(ids: list[str], first_phone: int = 0) -> list[dict[str, Any]]:
    """Importable rows for ``ids``, each with its own number."""
    return [{"id": rid, "phones": [phone(first_phone + i)], "timezone": "UTC",
             "team": TEAMS[i % len(TEAMS)]} for i, rid in enumerate(ids)]


@dataclass
class World:
    """What the frame generator knows about the daemon; ``learn`` keeps it current from
    the answers. ``now`` is the daemon's clock (callback and appointment times are drawn
    around it)."""

    now: Callable[[], float]
    campaigns: tuple[str, ...] = ("t", "u")
    agents: tuple[str, ...] = tuple(f"ag{i}" for i in range(6))
    record_ids: list[str] = field(default_factory=list)
    #: tokens handed out lately (some already ended: that is the point)
    tokens: deque[str] = field(default_factory=lambda: deque(maxlen=64))
    #: tokens not used by a frame yet: most likely still live
    fresh: deque[str] = field(default_factory=lambda: deque(maxlen=256))
    #: how many records the generator may import in all (the id space stays small, so
    #: imports mostly update)
    id_space: int = 400

    def learn(self, op: str | None, answer: dict[str, Any]) -> None:
        """Remember tokens from ``next`` answers."""
        if op == "next" and answer.get("ok"):
            for lz in answer.get("leases") or ():
                self.tokens.append(lz["token"])
                self.fresh.append(lz["token"])
