"""Mutations of valid requests, junk lines, and the frames built from them (with the
answers each line is owed, ``frames.Expect``)."""

from __future__ import annotations

import copy
import json
import math
import random
from typing import Any

import orjson

from nextcall.ops import REGISTRY
from nextcall.protocol import ID_ECHO_DEPTH, depth
from tests.fuzz.frames import (
    EDGE,
    IDS,
    OPS,
    RARE_IDS,
    SYNC_OPS,
    Expect,
    Frame,
    id_key,
    rare,
    valid_request,
)
from tests.fuzz.known import known_defect, suspect
from tests.fuzz.world import World

_UNKNOWN_KEYS = ("cont", "Agent", "leases", "extra", "", "id ", "op\x00", "é")
_BYTES = (b"\xff", b"\xc3", b"\xc3(", b"\x00", b"\r", b"\\", b'"', b"{", b"}", b",",
          b"\xef\xbb\xbf", b"\xed\xa0\x80", b" ", b"\t")


def _paths(obj: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path to a value inside ``obj`` (keys and list indexes), shallow first."""
    out: list[tuple[Any, ...]] = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            out.append((*prefix, k))
            if len(prefix) < 4:
                out.extend(_paths(v, (*prefix, k)))
    elif isinstance(obj, list):
        for i, v in enumerate(obj[:8]):
            out.append((*prefix, i))
            if len(prefix) < 4:
                out.extend(_paths(v, (*prefix, i)))
    return out


def _parent(obj: Any, path: tuple[Any, ...]) -> Any:
    for p in path[:-1]:
        obj = obj[p]
    return obj


def _edge(rng: random.Random) -> Any:
    """A value of ``EDGE``, now and then of ``RARE`` (a copy: a later mutation may change
    it in place)."""
    if rng.random() < 0.01:
        return rare(rng)
    v = rng.choice(EDGE)
    return copy.deepcopy(v) if isinstance(v, (list, dict)) else v


def _tweak(rng: random.Random, v: Any) -> Any:
    """A near miss of ``v``: off by one, a type away, one character more or less."""
    if isinstance(v, bool):
        return rng.choice((not v, int(v), str(v).lower()))
    if isinstance(v, int):
        return rng.choice((v + 1, v - 1, -v, v * 1000, float(v), str(v), v + 0.5))
    if isinstance(v, float):
        whole = int(v) if math.isfinite(v) else 0
        return rng.choice((v + 1e-9, -v, whole, str(v), v * 1e6))
    if isinstance(v, str):
        if not v:
            return rng.choice(("x", None, " "))
        i = rng.randrange(len(v) + 1)
        return rng.choice((v[:i], v + v[-1], v[:i] + rng.choice("\x00\x1f.²😀 é") + v[i:],
                           v.upper(), v * 40, [v]))
    if isinstance(v, list):
        return rng.choice((v[:1] if v else None, v * 2, v[1:], v + [None], {}))
    return _edge(rng)


def mutate(rng: random.Random, obj: dict[str, Any]) -> dict[str, Any]:
    """``obj`` with one to three changes somewhere in it (in place)."""
    for _ in range(rng.choice((1, 1, 1, 2, 3))):
        r = rng.random()
        paths = _paths(obj)
        if r < 0.1:
            obj["op"] = rng.choice((*OPS, "frob", "NEXT", "next ", "", 5, None, ["next"]))
        elif r < 0.18:
            obj["id"] = rare(rng, RARE_IDS) if rng.random() < 0.02 else \
                copy.deepcopy(rng.choice(IDS))
        elif r < 0.3 or not paths:
            target = _parent(obj, rng.choice(paths)) if paths else obj
            if isinstance(target, dict):
                target[rng.choice(_UNKNOWN_KEYS)] = _edge(rng)
            else:
                obj[rng.choice(_UNKNOWN_KEYS)] = _edge(rng)
        elif r < 0.45:
            path = rng.choice(paths)
            parent = _parent(obj, path)
            del parent[path[-1]]
        elif r < 0.7:
            path = rng.choice(paths)
            _parent(obj, path)[path[-1]] = _edge(rng)
        else:
            path = rng.choice(paths)
            parent = _parent(obj, path)
            parent[path[-1]] = _tweak(rng, parent[path[-1]])
    return obj


def mutate_bytes(rng: random.Random, line: bytes) -> bytes:
    """``line`` with a few bytes changed: flipped, cut, inserted or repeated."""
    b = bytearray(line)
    for _ in range(rng.choice((1, 1, 2))):
        r = rng.random()
        i = rng.randrange(len(b) + 1) if b else 0
        if r < 0.3 and b:
            j = min(i, len(b) - 1)
            b[j] ^= 1 << rng.randrange(8)
        elif r < 0.5:
            del b[i:]
        elif r < 0.8:
            b[i:i] = rng.choice(_BYTES)
        else:
            j = rng.randrange(i, len(b) + 1)
            b[i:i] = b[i:j]
    return bytes(b)


def junk(rng: random.Random) -> bytes:
    """A line that is not a request: random bytes, or a JSON value that is not one."""
    r = rng.random()
    if r < 0.4:
        return bytes(rng.randrange(256) for _ in range(rng.randrange(1, 40)))
    return encode(rng.choice(EDGE + [[{"op": "ping"}], "ping", {"op": "ping"}]))


def encode(obj: Any) -> bytes:
    """``obj`` as one JSON line body (integers past 64 bits too, which orjson refuses)."""
    try:
        return orjson.dumps(obj)
    except TypeError:
        return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()


def expects(data: bytes, exact: dict[str, Any] | None = None) -> list[Expect]:
    """The answers owed to ``data`` (lines ended by newlines): one per non-blank line.
    ``exact`` is the request as built (when the bytes were not mutated): its big integers
    are exact, which a JSON parse of the line might not keep."""
    out = []
    for line in data.split(b"\n"):
        if not line.strip():
            continue
        try:
            obj = orjson.loads(line)
        except orjson.JSONDecodeError:
            obj = None
        if not isinstance(obj, dict):
            out.append(Expect(b"null", True, None, None, None, line))
            continue
        op = obj.get("op")
        sync = not isinstance(op, str) or op not in REGISTRY or op in SYNC_OPS
        known = known_defect(exact if exact is not None else _exact(line, obj)) \
            if suspect(line) else None
        out.append(Expect(id_key(_echoed(obj.get("id"))), sync,
                          op if isinstance(op, str) else None, obj, known, line))
    return out


def _echoed(rid: Any) -> Any:
    """The id the answer echoes: a refused array or object id that nests deeper than the
    protocol echoes comes back as null (docs/protocol.md, Framing)."""
    if isinstance(rid, (list, dict)) and depth(rid, ID_ECHO_DEPTH) > ID_ECHO_DEPTH:
        return None
    return rid


def _exact(line: bytes, fallback: dict[str, Any]) -> Any:
    try:
        return json.loads(line)
    except (ValueError, RecursionError):
        return fallback


class Generator:
    """Frames for one connection: ``frame(fid)`` makes the next one, with ``fid`` as its
    id unless a mutation changes it."""

    def __init__(self, rng: random.Random, world: World, max_line_bytes: int,
                 valid: float = 0.45, mutated: float = 0.4, bytewise: float = 0.1,
                 oversize: float = 0.0005) -> None:
        self.rng, self.world, self.max_line_bytes = rng, world, max_line_bytes
        self.valid, self.mutated, self.bytewise = valid, mutated, bytewise
        self.oversize = oversize

    def frame(self, fid: int | str) -> Frame:
        """One frame: valid, mutated, byte-mutated or junk, by the generator's mix."""
        rng = self.rng
        r = rng.random()
        if r < self.oversize:
            pad = "x" * rng.randrange(self.max_line_bytes - 64, self.max_line_bytes + 64)
            return self._frame(encode({"id": fid, "op": "ping", "pad": pad}) + b"\n", None)
        if r >= self.valid + self.mutated + self.bytewise:
            return self._frame(junk(rng) + b"\n", None)
        obj = {"id": fid, **valid_request(rng, self.world)}
        if r >= self.valid:
            obj = mutate(rng, obj)
        line = encode(obj)
        if r >= self.valid + self.mutated:
            return self._frame(mutate_bytes(rng, line) + b"\n", None)
        return self._frame(line + b"\n", obj)

    def _frame(self, data: bytes, exact: dict[str, Any] | None) -> Frame:
        lines = data.split(b"\n")
        for i, line in enumerate(lines):
            if len(line) + 1 > self.max_line_bytes:
                # answered too_large, then the connection closes: the lines before it are
                # answered, what comes after it is lost
                head = b"".join(x + b"\n" for x in lines[:i])
                return Frame(data, expects(head), oversize=True)
        return Frame(data, expects(data, exact))
