"""Defects already reported and being fixed elsewhere, recognised by the request that
triggers them.

The fuzzers keep sending such requests (so a fix shows up as "known defect no longer
seen"), but on a connection of their own, and count what goes wrong with them apart from
new findings. When a fix lands, its entry here can go: the fuzzers then treat the same
request like any other.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

#: a lease id past SQLite's (and PostgreSQL's BIGINT) integer range
MAX_LID = 2**63
#: JSON integers orjson still reads as integers; past them it reads a float
MIN_INT, MAX_INT = -(2**63), 2**64
#: orjson refuses to write values nested deeper than this (its recursion limit)
DEEP = 250
_CALENDAR_END = re.compile(r"(?<![0-9])(9999|000[01])-[0-9]{2}")
#: what a line triggering any of them must contain (a cheap test before parsing it)
_SUSPECT = re.compile(rb"[0-9]{19}|9999-|000[01]-|[\x80-\xff]|\\u")


def depth(value: Any) -> int:
    """How deeply lists and objects nest in ``value`` (a scalar is 0)."""
    best, stack = 0, [(value, 0)]
    while stack:
        v, d = stack.pop()
        if isinstance(v, dict):
            stack.extend((x, d + 1) for x in v.values())
            best = max(best, d + 1)
        elif isinstance(v, list):
            stack.extend((x, d + 1) for x in v)
            best = max(best, d + 1)
    return best


def _strings(value: Any) -> Iterator[str]:
    stack = [value]
    while stack:
        v = stack.pop()
        if isinstance(v, str):
            yield v
        elif isinstance(v, dict):
            stack.extend(v.values())
            stack.extend(k for k in v if isinstance(k, str))
        elif isinstance(v, list):
            stack.extend(v)


def _token_lid(obj: dict[str, Any]) -> str | None:
    lease = obj.get("lease")
    if not isinstance(lease, str) or "." not in lease:
        return None
    return lease.partition(".")[0]


def _non_ascii_digits(obj: dict[str, Any]) -> bool:
    lid = _token_lid(obj)
    return lid is not None and lid.isdigit() and not lid.isascii()


def _huge_lid(obj: dict[str, Any]) -> bool:
    lid = _token_lid(obj)
    return lid is not None and lid.isascii() and lid.isdigit() and int(lid) >= MAX_LID


def _calendar_end(obj: dict[str, Any]) -> bool:
    return any(_CALENDAR_END.search(s) for s in _strings(obj))


def _deep(obj: dict[str, Any]) -> bool:
    return depth(obj) >= DEEP


def _big_id(obj: dict[str, Any]) -> bool:
    rid = obj.get("id")
    return type(rid) is int and not MIN_INT <= rid < MAX_INT


#: name -> does this request (a decoded JSON object) trigger it. Empty: the five defects
#: this table held (non-ASCII digits in a lease token, lease ids of 2**63 or more, dates
#: at the calendar's ends, nesting 250 deep or more, ids outside orjson's integer range)
#: are fixed; their detectors stay for the next one.
DETECTORS: dict[str, Callable[[dict[str, Any]], bool]] = {
    "non-ASCII digits in a lease token": _non_ascii_digits,
    "lease id >= 2**63": _huge_lid,
    "date at a calendar end (year 9999 or 0001)": _calendar_end,
    f"nesting >= {DEEP} deep": _deep,
    "id outside orjson's integer range (echoed as a float)": _big_id,
}
KNOWN: dict[str, Callable[[dict[str, Any]], bool]] = {}


def suspect(line: bytes) -> bool:
    """Whether ``line`` may trigger a known defect (False: it cannot)."""
    return line.count(b"[") + line.count(b"{") >= DEEP or _SUSPECT.search(line) is not None


def known_defect(obj: Any) -> str | None:
    """The known defect this request may trigger, or None. ``obj`` is the request as the
    client meant it (big integers exact, as ``json.loads`` reads them)."""
    if not isinstance(obj, dict):
        return None
    for name, hit in KNOWN.items():
        if hit(obj):
            return name
    return None
