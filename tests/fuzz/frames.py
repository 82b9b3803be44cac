"""Request frames for the fuzzers: valid requests of every op (drawn from what the
``World`` knows), structural and byte-level mutations of them, and junk, each with the
answers the daemon owes it.

A frame's expected answers follow from its bytes alone: every non-blank line gets one
answer echoing the line's ``id`` as the daemon's JSON parser reads it (``null`` when the
line is not a JSON object). Lines the daemon answers while it dispatches them (codec
errors, unknown ops, the ``sync`` ops) are answered in the order they were sent; the
others may come back in any order (docs/protocol.md, pipelining).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import orjson

from nextcall.ops import REGISTRY, SYNC
from tests.fuzz.world import CALLBACK_CODES, CODES, TEAMS, ZONES, World, phone

OPS = tuple(REGISTRY)
SYNC_OPS = frozenset(n for n, s in REGISTRY.items() if s.kind == SYNC)
#: how often each op is drawn: the call cycle dominates, as in production; the ops that
#: read the database (record.get, records.import, record.reopen, callback.schedule,
#: resolution, records, explain) queue on its one reader, and config.reload parses the
#: config files, so they come less often, to keep thousands of frames a second
WEIGHTS = {"next": 18, "dispose": 18, "release": 5, "extend": 5, "record.get": 1.5,
           "records.import": 2, "agent.login": 4, "agent.logout": 2, "stats": 3,
           "callbacks": 3, "campaigns": 2, "ping": 2, "record.reopen": 1.2,
           "callback.schedule": 1.2, "resolution": 0.6, "subscribe": 1,
           "config.reload": 0.3, "records": 0.6, "explain": 0.6, "amend": 1.2,
           "report": 0.3}
_OP_LIST = list(WEIGHTS)
_OP_WEIGHTS = list(WEIGHTS.values())


def nested(depth: int) -> Any:
    """A value ``depth`` lists and objects deep."""
    v: Any = 1
    for i in range(depth):
        v = [v] if i % 2 else {"k": v}
    return v


#: values a mutation puts where another value was: type confusions, boundaries, the
#: strings that break parsers and validators
EDGE: list[Any] = [
    None, True, False, 0, -1, 1, 2, 5, 100, 3600, 3601, 10_000, 10_001, 86_401, 2**31,
    2**53 + 1, 2**63 - 1, 2**63, 0.5, -0.0, 1e-300, 1e308, -1e308,
    "", " ", "x", "x" * 33, "x" * 101, "x" * 201, "\x00", "\t", "a\nb", "\u2028", "\x7f",
    "é", "😀", "1.", ".x", "1.x", "0.abc", "00001.x", "-1.x", "+1.x", " 1.x",
    "null", "NaN", "Infinity", "2030-01-01T10:00", "2030-03-31T02:30", "2030-02-30T10:00",
    "24:00", "Nowhere/Zone", "UTC", "+31", [], [None], [1, "a"], ["t", "t"], {}, {"a": 1},
    {"at": 1},
]
#: rarer ones, some of which trigger defects already known (``known.py``): drawn less
#: often, so most frames stay on the shared connections
RARE: list[Any] = [2**64, -(2**63) - 1, "²", "٣", "²³.x", "9999-12-31T23:59",
                   "0001-01-01T00:00", "9999-12-31", 3, 40, 120, 254, 300]
#: ``RARE`` integers below this are nesting depths (``nested``), not values
_DEPTHS = 1000
IDS: list[Any] = [None, True, [1], {"a": 1}, "", "x" * 300, 0, -1, 1.5, -0.0, 2**63,
                  1e300]
RARE_IDS: list[Any] = [2**64, -(2**63) - 1, 20, 260]


def rare(rng: random.Random, pool: list[Any] = RARE) -> Any:
    """A value of ``pool``; its small integers stand for nested values that deep."""
    v = rng.choice(pool)
    return nested(v) if type(v) is int and 0 < v < _DEPTHS else v


@dataclass(slots=True)
class Expect:
    """One answer the daemon owes."""

    #: the id it must echo, as a canonical key (``id_key``)
    key: bytes
    #: answered while its line is dispatched, so in order with the others like it
    sync: bool
    op: str | None
    #: the line as a JSON object (None: not one), for learning from the answer
    obj: dict[str, Any] | None
    #: the known defect the line may trigger (``known.py``), or None
    known: str | None
    line: bytes


@dataclass(slots=True)
class Frame:
    """Bytes to send (one or more lines) and the answers they are owed."""

    data: bytes
    expects: list[Expect]
    #: a line over the limit: the answer is ``too_large`` and the connection closes
    oversize: bool = False

    @property
    def hazard(self) -> bool:
        """Sent alone on a connection of its own (a known defect, or an oversize line)."""
        return self.oversize or any(e.known for e in self.expects)


def id_key(value: Any) -> bytes:
    """A canonical key for an id, as read by orjson (1, 1.0, true and "1" differ)."""
    try:
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
    except TypeError:  # nested too deep for orjson: a known defect, matched by repr
        return repr(value).encode()


# ------------------------------------------------------------------ valid requests
def iso(rng: random.Random, t: float) -> str:
    """``t`` as an ISO time the protocol takes: wall time, UTC ``Z`` or an offset."""
    r = rng.random()
    dt = datetime.fromtimestamp(t, UTC).replace(microsecond=0)
    if r < 0.45:
        return dt.strftime("%Y-%m-%dT%H:%M")
    if r < 0.75:
        return dt.strftime("%Y-%m-%dT%H:%M:%SZ")
    hours = rng.choice((-10, -5, 1, 2, 9, 13))
    return dt.astimezone(timezone(timedelta(hours=hours))).isoformat()


def _agent(rng: random.Random, w: World) -> str:
    return rng.choice(w.agents)


def _token(rng: random.Random, w: World) -> str:
    # as many draws whatever the world holds: a replay (hypothesis) draws alike
    pick, idx, lid, secret = rng.random(), rng.getrandbits(30), rng.randrange(1, 2000), \
        rng.getrandbits(64)
    if w.fresh and pick < 0.6:
        return w.fresh.popleft()
    if w.tokens and pick < 0.95:
        return w.tokens[idx % len(w.tokens)]
    return f"{lid}.{secret:016x}"


def _record(rng: random.Random, w: World) -> str:
    return rng.choice(w.record_ids) if w.record_ids else "r0"


def _soon(rng: random.Random, w: World) -> float:
    """An instant around now: mostly the next minutes (callbacks come due and are
    called, rather than pile up), sometimes just past or days ahead."""
    return w.now() + rng.choice((rng.uniform(-400, 60), rng.uniform(60, 900),
                                 rng.uniform(60, 900), rng.uniform(900, 5 * 86_400)))


def _callback(rng: random.Random, w: World) -> dict[str, Any]:
    cb: dict[str, Any] = {"at": iso(rng, _soon(rng, w))}
    if rng.random() < 0.3:
        cb["timezone"] = rng.choice(ZONES)
    if rng.random() < 0.3:
        cb["scope"] = rng.choice(("personal", "personal_then_team", "team", "anyone"))
    if rng.random() < 0.2:
        cb["owner"] = _agent(rng, w)
    if rng.random() < 0.2:
        cb["team"] = rng.choice(TEAMS)
    if rng.random() < 0.8:
        cb["override_window"] = True
    return cb


#: retries keep records in play; every other code still comes up
_CODE_WEIGHTS = [{"NA0": 8, "NAD": 3, "NA": 2, "CB": 2}.get(c, 1) for c in CODES]


def _dispose(rng: random.Random, w: World) -> dict[str, Any]:
    code = rng.choices(CODES, _CODE_WEIGHTS)[0]
    req: dict[str, Any] = {"lease": _token(rng, w), "code": code}
    if code == "SALE":
        req["revenue"] = rng.choice((5, 12.5, 1000, 0))
    elif code in ("NI", "SPC"):
        req["note"] = rng.choice(("not now", "moved away", " "))
    elif code in CALLBACK_CODES:
        req["callback"] = _callback(rng, w)
    elif code == "HOLD":
        req["appointment"] = {"at": iso(rng, w.now() + rng.uniform(-600, 10 * 86_400))}
    elif code == "NA0" and rng.random() < 0.5:
        req["fields"] = {"mood": rng.choice(("ok", "bad", "meh"))}
    if rng.random() < 0.2:
        req["agent"] = _agent(rng, w)
    if rng.random() < 0.05:
        req["phone"] = phone(rng.randrange(400))
    return req


def _next(rng: random.Random, w: World) -> dict[str, Any]:
    req: dict[str, Any] = {"agent": _agent(rng, w), "count": rng.choice((1, 1, 1, 2, 5))}
    if rng.random() < 0.7:
        req["campaigns"] = rng.sample(w.campaigns, rng.randint(1, len(w.campaigns)))
    if rng.random() < 0.05:
        req["wait"] = rng.choice((0, 0.01, 0.05))
    return req


def _import(rng: random.Random, w: World) -> dict[str, Any]:
    rows = []
    for _ in range(rng.randint(1, 5)):
        n = rng.randrange(w.id_space)
        row: dict[str, Any] = {"id": f"f{n}", "phones": [phone(1000 + n)]}
        if rng.random() < 0.2:
            row["phones"].append(phone(5000 + n))
        if rng.random() < 0.5:
            row["timezone"] = rng.choice(ZONES)
        if rng.random() < 0.3:
            row["team"] = rng.choice(TEAMS)
        if rng.random() < 0.3:
            row["priority"] = rng.randint(-5, 5)
        row["data"] = {"name": f"N{n}", "n": n}
        rows.append(row)
    req: dict[str, Any] = {"campaign": rng.choice(("t", "t", "u")),
                           "list": rng.choice(("l1", "l2", "rolled")), "records": rows}
    for opt in ("reload", "atomic"):
        if rng.random() < 0.1:
            req[opt] = True
    if rng.random() < 0.1:
        req["stage"] = rng.choice(("s1", "s2"))
        req["final"] = rng.random() < 0.5
    return req


def _amend(rng: random.Random, w: World) -> dict[str, Any]:
    """A disposition's fields with a new code, for a lease (token or number) or a
    record's latest disposition."""
    req = _dispose(rng, w)
    if rng.random() < 0.3:
        del req["lease"]
        req["record"] = _record(rng, w)
    elif rng.random() < 0.5:
        req["lease"] = req["lease"].split(".")[0]
    req["reason"] = rng.choice(("wrong key", "the callee asked", "x" * 1000))
    return req


def _reopen(rng: random.Random, w: World) -> dict[str, Any]:
    req: dict[str, Any] = {"record": _record(rng, w)}
    r = rng.random()
    if r < 0.3:
        req["at"] = iso(rng, _soon(rng, w))
    elif r < 0.5:
        req["callback"] = _callback(rng, w)
    if rng.random() < 0.3:
        req["note"] = "fuzz"
    return req


def _schedule(rng: random.Random, w: World) -> dict[str, Any]:
    req: dict[str, Any] = {"record": _record(rng, w), **_callback(rng, w)}
    if rng.random() < 0.3:
        req["agent"] = _agent(rng, w)
    if rng.random() < 0.2:
        req["reminder_min"] = rng.choice((0, 1, 15))
    if rng.random() < 0.2:
        req["contact_priority"] = rng.randint(0, 9)
    return req


def _callbacks(rng: random.Random, w: World) -> dict[str, Any]:
    req: dict[str, Any] = {}
    if rng.random() < 0.5:
        req["agent"] = _agent(rng, w)
    if rng.random() < 0.2:
        req["team"] = rng.choice(TEAMS)
    if rng.random() < 0.3:
        req["campaign"] = rng.choice(w.campaigns)
    if rng.random() < 0.2:
        req["from"] = iso(rng, w.now() - 3600)
    if rng.random() < 0.2:
        req["to"] = iso(rng, w.now() + 86_400)
    if rng.random() < 0.2:
        req["states"] = rng.sample(["upcoming", "due", "overdue"], rng.randint(1, 3))
    # a short list mostly: the answer of a long one is hundreds of kilobytes
    req["limit"] = rng.choice((1, 10, 50, 50, 100_000))
    return req


def _explain(rng: random.Random, w: World) -> dict[str, Any]:
    if rng.random() < 0.3:
        return {"campaign": rng.choice(w.campaigns)}
    req: dict[str, Any] = {"record": _record(rng, w)}
    if rng.random() < 0.3:
        req["agent"] = _agent(rng, w)
    return req


def _records(rng: random.Random, w: World) -> dict[str, Any]:
    req: dict[str, Any] = {"campaign": rng.choice(w.campaigns),
                           "limit": rng.choice((1, 10, 100))}
    if rng.random() < 0.3:
        req["state"] = rng.choice(("ready", "callback", "leased", "held", "resolution",
                                   "closed"))
    if rng.random() < 0.3:
        req["code"] = rng.choice(CODES)
    if rng.random() < 0.1:
        req["reason"] = rng.choice(("final", "dnc", "exhausted", "no_numbers"))
    if rng.random() < 0.1:
        req["owner"] = _agent(rng, w)
    if rng.random() < 0.1:
        req["since"] = iso(rng, w.now() - 3600)
    return req


def _maybe_campaign(rng: random.Random, w: World) -> dict[str, Any]:
    return {"campaign": rng.choice(w.campaigns)} if rng.random() < 0.5 else {}


VALID: dict[str, Callable[[random.Random, World], dict[str, Any]]] = {
    "ping": lambda rng, w: {},
    "campaigns": lambda rng, w: {"agent": _agent(rng, w)} if rng.random() < 0.5 else {},
    "agent.login": lambda rng, w: {
        "agent": _agent(rng, w), "campaigns": rng.sample(w.campaigns, rng.randint(1, 2)),
        "teams": rng.sample(TEAMS, rng.randint(0, 2))},
    "agent.logout": lambda rng, w: {"agent": _agent(rng, w)},
    "next": _next,
    "dispose": _dispose,
    "release": lambda rng, w: {"lease": _token(rng, w)},
    "extend": lambda rng, w: {"lease": _token(rng, w), "seconds": rng.choice((5, 30, 120))},
    "record.get": lambda rng, w: {"record": _record(rng, w)},
    "records.import": _import,
    "stats": _maybe_campaign,
    "config.reload": lambda rng, w: {"dry_run": rng.random() < 0.8},
    "record.reopen": _reopen,
    "callback.schedule": _schedule,
    "resolution": _maybe_campaign,
    "callbacks": _callbacks,
    "records": _records,
    "explain": _explain,
    "subscribe": lambda rng, w: {"agent": _agent(rng, w)},
    "amend": _amend,
    "report": lambda rng, w: {"from": "2027-01-14", "to": "2027-01-15",
                              "group_by": rng.sample(["campaign", "agent", "code", "day"],
                                                     rng.randint(0, 2)),
                              **_maybe_campaign(rng, w)},
}


def valid_request(rng: random.Random, w: World, op: str | None = None) -> dict[str, Any]:
    """A request of ``op`` (drawn by ``WEIGHTS`` when None) that the schema accepts;
    whether the daemon does depends on its state."""
    op = op or rng.choices(_OP_LIST, _OP_WEIGHTS)[0]
    return {"op": op, **VALID[op](rng, w)}
