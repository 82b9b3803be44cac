"""The registry is the one list of ops: the docs, the decoder and the dispatcher agree."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from nextcall.ops import MODELS, REGISTRY
from nextcall.roles import ADMIN, AGENT, SUPERVISOR
from tests.unit.ops.harness import Ops

DOCS = Path(__file__).resolve().parents[3] / "docs" / "protocol.md"


def test_every_documented_op_is_registered_and_every_registered_op_documented() -> None:
    documented = set(re.findall(r"^### `([a-z.]+)`$", DOCS.read_text(), re.MULTILINE))
    assert documented == set(REGISTRY)
    assert set(MODELS) == set(REGISTRY)


def test_every_entry_is_complete() -> None:
    for name, spec in REGISTRY.items():
        assert spec.name == name
        assert spec.kind in ("sync", "deferred", "async")
        assert spec.role in (AGENT, SUPERVISOR, ADMIN)
        assert spec.handler.__doc__ and f"``{name}``" in spec.handler.__doc__, name


@pytest.mark.parametrize(("op", "fields", "needs"), [
    ("config.reload", {}, "admin"),
    ("record.reopen", {"record": "x"}, "supervisor"),
    ("records.import", {"campaign": "t", "list": "l", "records": []}, "supervisor"),
])
async def test_the_dispatcher_enforces_each_ops_least_role(
        ops: Ops, op: str, fields: dict[str, object], needs: str) -> None:
    err = await ops.refused(op, "forbidden", ops.peer(AGENT), **fields)
    assert needs in err["message"]


async def test_an_unknown_op_is_refused_by_the_decoder(ops: Ops) -> None:
    err = await ops.refused("fly", "unknown_op")
    assert err["field"] == "op"
