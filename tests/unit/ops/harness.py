"""Op handlers driven without a daemon: a ``Service`` over the in-memory store, requests
decoded and dispatched exactly as the server does, answers collected as wire dicts."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import orjson

from nextcall import protocol as P
from nextcall.config import load
from nextcall.core.errors import NextcallError
from nextcall.ops import MODELS, REGISTRY, dispatch
from nextcall.ops.base import Body, Reply
from nextcall.roles import ADMIN, Peer
from nextcall.service import Service
from nextcall.storage.memory import MemoryStore
from tests.conftest import write_config


class Clock:
    """A settable clock (seconds since the epoch)."""

    def __init__(self, t: float = 1_800_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def _wire(result: Body | bytes | NextcallError) -> dict[str, Any]:
    if isinstance(result, NextcallError):
        return {"ok": False, "error": result.to_wire()}
    body = orjson.loads(result if isinstance(result, bytes) else orjson.dumps(result))
    return {"ok": True, **body}


class Ops:
    """One service over a memory store; ``call`` runs one request to its answer."""

    def __init__(self, tmp: Path, **config: Any) -> None:
        self.settings = load(write_config(tmp, **config))
        self.store = MemoryStore()
        self.clock = Clock()
        self.svc = Service(self.settings, self.store, clock=self.clock)
        self._conn = 0

    async def start(self) -> Ops:
        await self.svc.rebuild()
        await self.svc.fill_leases()
        return self

    async def restart(self) -> Ops:
        """A new service over the same store: what a restart rebuilds."""
        self.svc.stop_waiting()
        self.svc = Service(self.settings, self.store, clock=self.clock)
        return await self.start()

    def peer(self, role: str = ADMIN, uid: int | None = None) -> Peer:
        self._conn += 1
        return Peer(self._conn, 0, os.getuid() if uid is None else uid, os.getgid(),
                    role=role)

    async def call(self, op: str, peer: Peer | None = None, **fields: Any
                   ) -> dict[str, Any]:
        """Decode and dispatch one request as the server does; its answer as on the
        wire."""
        peer = peer or self.peer()
        loop = asyncio.get_running_loop()
        answered: asyncio.Future[dict[str, Any]] = loop.create_future()

        def reply(result: Body | bytes | NextcallError) -> None:
            if not answered.done():
                answered.set_result(_wire(result))

        async def answer(coro: Coroutine[Any, Any, Body], r: Reply) -> None:
            try:
                r(await coro)
            except NextcallError as err:
                r(err)

        def run(coro: Coroutine[Any, Any, Body], r: Reply) -> None:
            loop.create_task(answer(coro, r))

        try:
            _, name, req = P.decode(orjson.dumps({"op": op, **fields}), MODELS)
            dispatch(self.svc, REGISTRY[name], req, peer, reply, run)
        except NextcallError as err:
            reply(err)
        return await asyncio.wait_for(answered, 10)

    async def ok(self, op: str, peer: Peer | None = None, **fields: Any) -> dict[str, Any]:
        ans = await self.call(op, peer, **fields)
        assert ans["ok"] is True, ans
        return ans

    async def refused(self, op: str, error: str, peer: Peer | None = None,
                      **fields: Any) -> dict[str, Any]:
        ans = await self.call(op, peer, **fields)
        assert ans["ok"] is False and ans["error"]["code"] == error, ans
        return dict(ans["error"])


def numbers(n: int, prefix: str = "r", **extra: Any) -> list[dict[str, Any]]:
    """``n`` importable records with valid Dutch mobile numbers."""
    return [{"id": f"{prefix}{i}", "phones": [f"+3161234{i:04d}"], "timezone": "UTC",
             **extra} for i in range(n)]
