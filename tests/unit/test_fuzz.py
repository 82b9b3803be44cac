"""Fuzz tests that run with the suite: the codec and every op's request model on any
input, and the op handlers on the in-memory store under random sequences of valid and
mutated requests, with the store's invariants checked after every call.

Requests that may trigger a defect already known and being fixed elsewhere
(``tests/fuzz/known.py``) are left out here; the standalone fuzzer
(``tests/fuzz/fuzz_daemon.py``) still sends them and counts them apart.
"""

from __future__ import annotations

import asyncio
import os
import random
import traceback
from collections.abc import Coroutine
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from nextcall import protocol as P
from nextcall.config import Settings, load
from nextcall.core.amending import current
from nextcall.core.errors import ConfigError, NextcallError
from nextcall.ops import MODELS, REGISTRY, dispatch
from nextcall.ops.base import Body, Reply
from nextcall.ops.leases import DisposeReq, NextReq
from nextcall.roles import ADMIN, AGENT, SUPERVISOR, Peer
from nextcall.service import Service
from nextcall.storage.memory import MemoryStore
from tests.fuzz.checks import WIRE_CODES, answer_problem
from tests.fuzz.frames import valid_request
from tests.fuzz.known import known_defect
from tests.fuzz.mutate import Generator, encode, mutate
from tests.fuzz.world import RESETS, World, fuzz_config, import_rows
from tests.unit.ops.harness import Clock

CODEC_CODES = {"bad_json", "bad_request", "unknown_op"}
#: examples per test scale with NEXTCALL_FUZZ_SCALE (1 in the suite; 50 for a long hunt)
SCALE = float(os.environ.get("NEXTCALL_FUZZ_SCALE", "1"))
#: requests run at once in the op-handler fuzz (1: one after the other)
CONCURRENCY = int(os.environ.get("NEXTCALL_FUZZ_CONCURRENCY", "1"))
_CODEC = settings(max_examples=int(300 * SCALE), deadline=None,
                  suppress_health_check=[HealthCheck.too_slow])

_TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=12) | \
    st.sampled_from(["", "ann", "t", "NA", "1.abc", "²1.x", "x" * 100, "x" * 101, "é" * 100,
                     "a\x7fb", "a\u2028b", "a\x1fb", "2030-01-01T10:00"])
_SCALARS = st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | \
    st.floats(allow_nan=False, allow_infinity=False) | _TEXT
#: JSON values as orjson reads them: integers in 64 bits, finite floats, no lone
#: surrogates
JSON = st.recursive(_SCALARS, lambda inner: st.lists(inner, max_size=4)
                    | st.dictionaries(_TEXT, inner, max_size=4), max_leaves=12)
_FIELDS = sorted({name for m in MODELS.values() for name in m.model_fields} | {"from"})


def _check_decode(line: bytes) -> None:
    """``decode`` returns a request of a known op, or raises a typed codec error naming
    a field path; both answers encode."""
    try:
        req_id, op, req = P.decode(line, MODELS)
    except NextcallError as err:
        assert err.code in CODEC_CODES, (line, err.code)
        assert err.field is None or (isinstance(err.field, str) and err.field), err.field
        assert isinstance(err.message, str) and err.message
        rid = getattr(err, "req_id", None)
        assert orjson.loads(P.encode_error(rid, err))["error"]["code"] == err.code
        return
    assert op in REGISTRY
    assert isinstance(req, (REGISTRY[op].model, P.FastNext, P.FastDispose)), type(req)
    assert orjson.loads(P.encode_ok(req_id, {}))["ok"] is True


@_CODEC
@given(st.binary(max_size=300))
def test_any_bytes_decode_or_give_a_codec_error(line: bytes) -> None:
    _check_decode(line)


@_CODEC
@given(JSON)
def test_any_json_value_decodes_or_gives_a_codec_error(value: Any) -> None:
    _check_decode(encode(value))


@_CODEC
@given(st.sampled_from(sorted(REGISTRY)), st.dictionaries(st.sampled_from(_FIELDS), JSON,
                                                          max_size=6), JSON)
def test_every_model_takes_any_fields(op: str, fields: dict[str, Any], rid: Any) -> None:
    _check_decode(encode({"id": rid, "op": op, **fields}))


@_CODEC
@given(st.randoms(use_true_random=False), st.sampled_from(sorted(REGISTRY)))
def test_mutated_valid_requests_decode_or_give_a_codec_error(rng: random.Random,
                                                             op: str) -> None:
    obj = valid_request(rng, World(now=lambda: 1_800_000_000.0, record_ids=["r1"]), op)
    _check_decode(encode(obj))
    obj = mutate(rng, {"id": 1, **obj})
    if known_defect(obj) is None:
        _check_decode(encode(obj))


_ERRORS = sorted({c for c in NextcallError.__subclasses__()}, key=lambda c: c.__name__)


@_CODEC
@given(JSON, st.dictionaries(_TEXT, JSON, max_size=6), st.sampled_from(_ERRORS),
       st.none() | _TEXT)
def test_any_answer_encodes(rid: Any, body: dict[str, Any], cls: type[NextcallError],
                            field: str | None) -> None:
    body.pop("id", None)
    body.pop("ok", None)
    assert orjson.loads(P.encode_ok(rid, body)) == orjson.loads(orjson.dumps(
        {"id": rid, "ok": True, **body}))
    raw = orjson.loads(P.encode_ok_raw(rid, orjson.dumps(body)))
    assert raw == {"id": rid, "ok": True, **orjson.loads(orjson.dumps(body))}
    err = ConfigError([("a.toml", "bad")]) if cls is ConfigError else cls(None, field=field)
    msg = orjson.loads(P.encode_error(rid, err))
    assert msg["ok"] is False and msg["error"]["code"] in WIRE_CODES


# The fast paths of next and dispose take what the models take, with the same values.
_NAMEISH = st.sampled_from(["ann", "", "x" * 100, "x" * 101, "é" * 100, "é" * 101, "a\x00",
                            "a\x1f", "a\x7f", "a\u2028", "t", "1.ab", "123", "NA", "y" * 32,
                            "y" * 33]) | st.text(max_size=6)
_FASTVALS = st.none() | st.booleans() | st.integers(-2, 10_002) | \
    st.sampled_from([0, 1, 10_000, 10_001, 0.0, -0.0, 0.5, 3600, 3600.0, 3600.001, 1e-9,
                     2**63]) | _NAMEISH | st.lists(_NAMEISH, max_size=3) | \
    st.lists(st.just("t"), min_size=100, max_size=101)


def _via_json(obj: dict[str, Any]) -> dict[str, Any]:
    """``obj`` as the codec sees it: encoded and read back by orjson."""
    back: dict[str, Any] = orjson.loads(encode(obj))
    return back


@_CODEC
@given(st.dictionaries(st.sampled_from(["agent", "campaigns", "count", "wait", "x"]),
                       _FASTVALS, max_size=5))
def test_the_fast_next_takes_what_the_model_takes(obj: dict[str, Any]) -> None:
    obj = _via_json(obj)
    fast = P._fast_next(dict(obj))
    try:
        model: NextReq | None = NextReq.model_validate(obj)
    except ValidationError:
        model = None
    if fast is not None:
        assert model is not None, obj
        assert (fast.agent, fast.campaigns, fast.count, fast.wait) == \
            (model.agent, model.campaigns, model.count, model.wait)


@_CODEC
@given(st.dictionaries(st.sampled_from(["lease", "code", "agent", "phone"]), _FASTVALS,
                       max_size=4))
def test_the_fast_dispose_takes_what_the_model_takes(obj: dict[str, Any]) -> None:
    obj = _via_json(obj)
    fast = P._fast_dispose(dict(obj))
    try:
        model: DisposeReq | None = DisposeReq.model_validate(obj)
    except ValidationError:
        model = None
    if fast is not None:
        assert model is not None, obj
        assert (fast.lease, fast.code, fast.agent, fast.phone, fast.note, fast.revenue,
                fast.callback, fast.appointment, fast.fields) == \
            (model.lease, model.code, model.agent, model.phone, model.note, model.revenue,
             model.callback, model.appointment, model.fields)


# --------------------------------------------------------------------------- op handlers
@pytest.fixture(scope="module")
def fuzz_settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    # no long polls: the clock here is fake, and a wait would run on the real one
    return load(fuzz_config(tmp_path_factory.mktemp("fuzz"), extra_daemon="max_wait_s = 0"))


def _wire(result: Body | bytes | NextcallError) -> dict[str, Any]:
    if isinstance(result, NextcallError):
        return {"ok": False, "error": result.to_wire()}
    body = orjson.loads(result if isinstance(result, bytes) else orjson.dumps(result))
    return {"ok": True, **body}


class Session:
    """A service over a memory store, driven request by request as the server drives it,
    with every answer collected (so a second answer, or none, shows)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.store = MemoryStore()
        self.clock = Clock()
        self.svc = Service(settings, self.store, clock=self.clock)
        self.conns = 0
        self.tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        await self.svc.rebuild()
        await self.svc.fill_leases()

    async def restart(self) -> None:
        """A new service over the same store: what a restart rebuilds."""
        self.svc.stop_waiting()
        self.svc = Service(self.settings, self.store, clock=self.clock)
        await self.start()

    def peer(self, rng: random.Random) -> Peer:
        self.conns += 1
        role = rng.choice((ADMIN, ADMIN, ADMIN, SUPERVISOR, AGENT))
        uid = os.getuid() if rng.random() < 0.9 else 4242

        async def send(data: bytes) -> None:
            return None
        return Peer(self.conns, 0, uid, os.getgid(), role=role, send=send)

    async def call(self, line: bytes, peer: Peer) -> list[dict[str, Any]]:
        """Every answer ``line`` got: from the handler, its task, or an exception."""
        loop = asyncio.get_running_loop()
        answers: list[dict[str, Any]] = []
        first: asyncio.Future[None] = loop.create_future()

        def reply(result: Body | bytes | NextcallError) -> None:
            answers.append(_wire(result))
            if not first.done():
                first.set_result(None)

        def internal() -> None:
            answers.append({"ok": False, "error": {"code": "internal",
                                                   "message": traceback.format_exc()}})
            if not first.done():
                first.set_result(None)

        async def answer(coro: Coroutine[Any, Any, Body], r: Reply) -> None:
            try:
                r(await coro)
            except NextcallError as err:
                r(err)
            except Exception:  # noqa: BLE001 - reported as the server would: internal
                internal()

        def run(coro: Coroutine[Any, Any, Body], r: Reply) -> None:
            task = loop.create_task(answer(coro, r))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

        try:
            _, name, req = P.decode(line, MODELS)
            dispatch(self.svc, REGISTRY[name], req, peer, reply, run)
        except NextcallError as err:
            reply(err)
        except Exception:  # noqa: BLE001
            internal()
        await asyncio.wait_for(first, 10)
        for _ in range(5):  # commits, stray second answers, background writes
            await asyncio.sleep(0)
        return answers


def _dispositions(history: list[dict[str, Any]]) -> dict[int, int]:
    """Per record: dispositions (current history rows with a lease) since a reset; an
    amendment replaces the row it names (``core.amending.current``), both stay."""
    n: dict[int, int] = {}
    for h in current(history):
        if h["lid"] is None:
            continue
        n[h["rid"]] = 0 if h["code"] in RESETS else n.get(h["rid"], 0) + 1
    return n


def _lease_order(leases: dict[int, dict[str, Any]]) -> list[str]:
    """A record's leases follow one another (none issued before the last one ended)."""
    out = []
    until: dict[int, tuple[int, float]] = {}
    for lid, x in sorted(leases.items()):
        prev = until.get(x["rid"])
        if prev is not None and x["issued_at"] < prev[1]:
            out.append(f"lease {lid} issued while lease {prev[0]} held record {x['rid']}")
        end = x["ended_at"] if x["end"] in ("disposed", "released") else x["expires_at"]
        until[x["rid"]] = (lid, end)
    return out


def invariants(s: Session) -> None:
    """The engine and the memory store agree, and neither breaks its own rules."""
    eng, store, now = s.svc.engine, s.store, s.clock()
    held = [lz.record.rid for lz in eng.leases.values()]
    assert len(held) == len(set(held)), f"a record leased twice: {sorted(held)}"
    for lid, lz in eng.leases.items():
        assert eng.is_open(lz.record.rid), f"lease {lid}: its record is not in the engine"
        assert eng.lease_of(lz.record.rid) is lz, f"lease {lid}: not its record's lease"
        assert store.leases[lid]["end"] is None, f"live lease {lid} ended in the store"
    live = {lid for lid, x in store.leases.items()
            if x["end"] is None and x["expires_at"] > now}
    assert live == {lid for lid, lz in eng.leases.items() if lz.expires_at > now}
    counts = _dispositions(store.history)
    for rid, row in store.records.items():
        assert row["attempts"] == counts.get(rid, 0), \
            f"record {row['id']}: attempts {row['attempts']}, dispositions {counts.get(rid)}"
        rec = eng.record(rid) if eng.is_open(rid) else None
        assert rec is None or rec.attempts == row["attempts"], f"record {row['id']}"
    assert not _lease_order(store.leases), _lease_order(store.leases)


_STEPS = [0.0] * 6 + [1.0, 6.0, 61.0, 3600.0, 86_400.0]


async def _drive(settings: Settings, rng: random.Random, steps: int) -> None:
    s = Session(settings)
    await s.start()
    world = World(now=s.clock, id_space=60)
    world.record_ids = [f"r{i}" for i in range(30)] + [f"f{i}" for i in range(60)]
    await s.call(encode({"op": "records.import", "campaign": "t", "list": "l1",
                         "records": import_rows(world.record_ids[:30])}), s.peer(rng))
    gen = Generator(rng, world, max_line_bytes=65_536, oversize=0.0)
    try:
        for i in range(steps):
            s.clock.t += rng.choice(_STEPS)
            if rng.random() < 0.03:
                await s.restart()
            # a few requests at once, as pipelined or from several connections: their
            # awaits (reads, commits) interleave
            lines = [e for _ in range(rng.randint(1, CONCURRENCY))
                     if not (f := gen.frame(i)).hazard  # a known defect: tested elsewhere
                     for e in f.expects]
            got = await asyncio.gather(*(s.call(e.line, s.peer(rng)) for e in lines))
            for exp, answers in zip(lines, got, strict=True):
                assert len(answers) == 1, (exp.line, answers)
                problem = answer_problem(answers[0])
                assert problem is None, (problem, exp.line, answers[0])
                world.learn(exp.op, answers[0])
            invariants(s)
    finally:
        s.svc.stop_waiting()
        for t in list(s.tasks):
            t.cancel()


@settings(max_examples=int(50 * SCALE), deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(st.randoms(use_true_random=False), st.integers(5, 80))
def test_op_handlers_keep_the_invariants(fuzz_settings: Settings, rng: random.Random,
                                         steps: int) -> None:
    asyncio.run(_drive(fuzz_settings, rng, steps))
