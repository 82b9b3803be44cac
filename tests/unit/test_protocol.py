"""The sans-IO codec: bytes in, typed requests or typed errors out."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from nextcall import protocol as P
from nextcall.core.errors import NextcallError
from nextcall.ops import MODELS, REGISTRY
from nextcall.ops.leases import DisposeReq, NextReq


def _err(line: bytes) -> NextcallError:
    with pytest.raises(NextcallError) as exc:
        P.decode(line, MODELS)
    return exc.value


def test_decodes_every_op_with_defaults() -> None:
    rid, op, req = P.decode(b'{"id":"a1","op":"next","agent":"ann"}', MODELS)
    assert (rid, op) == ("a1", "next")
    assert req.count == 1 and req.wait == 0.0 and req.agent == "ann"
    for op, spec in REGISTRY.items():
        assert spec.model.__doc__, f"{op} model documents itself"
        assert spec.handler.__doc__, f"{op} handler documents itself"


@pytest.mark.parametrize("line, code, field, req_id", [
    (b"not json", "bad_json", None, None),
    (b"\xff\xfe\x00", "bad_json", None, None),
    (b"[1,2]", "bad_request", None, None),
    (b"42", "bad_request", None, None),
    (b'{"id":7}', "bad_request", "op", 7),
    (b'{"id":7,"op":5}', "bad_request", "op", 7),
    (b'{"id":[1],"op":"ping"}', "bad_request", "id", [1]),
    (b'{"id":true,"op":"ping"}', "bad_request", "id", True),
    (b'{"id":8,"op":"fly"}', "unknown_op", "op", 8),
    (b'{"id":9,"op":"next"}', "bad_request", "agent", 9),
    (b'{"id":9,"op":"next","agent":"a","count":"2"}', "bad_request", "count", 9),
    (b'{"id":9,"op":"next","agent":"a","count":0}', "bad_request", "count", 9),
    (b'{"id":9,"op":"next","agent":"a","cont":2}', "bad_request", "cont", 9),
    (b'{"id":9,"op":"next","agent":""}', "bad_request", "agent", 9),
    (b'{"id":9,"op":"next","agent":"a\\n"}', "bad_request", "agent", 9),
    (b'{"id":9,"op":"dispose","lease":"1.x","code":"A","callback":{"at":5}}',
     "bad_request", "callback.at", 9),
    (b'{"id":9,"op":"dispose","lease":"1.x","code":"A","callback":{"when":"x"}}',
     "bad_request", "callback.at", 9),
    (b'{"id":9,"op":"dispose","lease":"1.x","code":"A","revenue":"12"}',
     "bad_request", "revenue", 9),
    (b'{"id":9,"op":"agent.login","agent":"a","campaigns":[]}', "bad_request",
     "campaigns", 9),
])
def test_errors_name_the_field(line: bytes, code: str, field: str | None,
                               req_id: object) -> None:
    err = _err(line)
    assert err.code == code
    assert err.field == field
    assert getattr(err, "req_id", None) == req_id


def test_error_lines_round_trip() -> None:
    err = _err(b'{"id":3,"op":"next","agent":"a","count":-1,"wait":-1}')
    assert "and 1 more problem" in err.message
    line = P.encode_error(3, err)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    msg = orjson.loads(line)
    assert msg == {"id": 3, "ok": False, "error": {"code": "bad_request",
                                                   "message": err.message,
                                                   "field": "count"}}
    ok = orjson.loads(P.encode_ok("x", {"leases": []}))
    assert ok == {"id": "x", "ok": True, "leases": []}


def test_import_record_model() -> None:
    r = P.ImportRecord.model_validate({"id": "a", "phones": ["+31612345678"]})
    assert r.priority == 0 and r.data == {}
    with pytest.raises(ValidationError):
        P.ImportRecord.model_validate({"id": "a", "phones": []})


# The hand-checked fast path of next and dispose must accept exactly what the models
# accept (and give the same values), or leave the request to the model.
_VALUES = st.one_of(st.none(), st.booleans(), st.integers(-5, 20_000),
                    st.sampled_from([0.0, 1.5, 3600.0, 3600.5, -0.1, float("nan"),
                                     float("inf")]),
                    st.text(max_size=8),
                    st.sampled_from(["ann", "a\x01b", "x" * 100, "x" * 101, "1.abcdef", "",
                                     "NA", "y" * 33]),
                    st.lists(st.sampled_from(["t", "", "u\x00", "x" * 101]), max_size=3))
_SETTINGS = settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])


@_SETTINGS
@given(st.dictionaries(st.sampled_from(["agent", "campaigns", "count", "wait", "extra"]),
                       _VALUES, max_size=5))
def test_fast_next_agrees_with_the_model(obj: dict[str, Any]) -> None:
    fast = P._fast_next(dict(obj))
    if fast is None:
        return
    model = NextReq.model_validate(obj)
    assert (fast.agent, fast.campaigns, fast.count, fast.wait) == \
        (model.agent, model.campaigns, model.count, model.wait)


@_SETTINGS
@given(st.dictionaries(st.sampled_from(["lease", "code", "agent", "note"]), _VALUES,
                       max_size=4))
def test_fast_dispose_agrees_with_the_model(obj: dict[str, Any]) -> None:
    fast = P._fast_dispose(dict(obj))
    if fast is None:
        return
    model = DisposeReq.model_validate(obj)
    assert (fast.lease, fast.code, fast.agent, fast.phone, fast.note, fast.revenue,
            fast.callback, fast.appointment, fast.fields) == \
        (model.lease, model.code, model.agent, model.phone, model.note, model.revenue,
         model.callback, model.appointment, model.fields)
