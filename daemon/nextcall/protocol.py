"""The wire protocol, sans I/O: bytes <-> typed requests, and answers -> bytes.

Newline-delimited JSON, one object per line. Each request is ``{"id": ..., "op": ...,
...fields}``; each answer echoes ``id``. Request fields are validated by pydantic models
with unknown fields refused, so a typo is an error naming the field, not a silent default.

Each op's request model lives beside its handler (``ops/``) and reaches the decoder
through the registry; this module holds the codec, the field types and models several ops
share (``Name``, ``CallbackReq``, ``ImportRecord``) and the hand-checked fast path of the
call cycle's two requests.
"""

from __future__ import annotations

import builtins
import json
import re
from collections.abc import Mapping
from typing import Annotated, Any, Literal, TypeGuard

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .core.errors import BadJson, BadRequest, NextcallError, UnknownOp

Name = Annotated[str, Field(min_length=1, max_length=100, pattern=r"^[^\x00-\x1f]+$")]
#: a request's ``id`` as accepted and echoed: a number the parser turned into a float (a
#: fraction, an exponent, an integer beyond 64 bits) is kept as its JSON text, so the
#: answer gives it back exactly as sent
RequestId = str | int | orjson.Fragment | None
#: how deep a request may nest objects and arrays (the request object is level 1). The
#: parser itself stops at 1024 levels; the limit keeps every request far from that, and
#: anything a request stores and an answer shows is bounded tighter where it is kept
#: (``records.import`` rows' ``data``)
MAX_DEPTH = 512
#: a refused ``id`` is echoed in its error answer only up to this depth (``null`` beyond)
ID_ECHO_DEPTH = 32


class Request(BaseModel):
    """The base of every op's request model (``ops/``): unknown fields refused, strict
    types, frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class CallbackReq(Request):
    """``dispose.callback``."""

    at: Annotated[str, Field(min_length=1, max_length=64)]
    timezone: Annotated[str, Field(min_length=1, max_length=64)] | None = None
    scope: Literal["personal", "personal_then_team", "team", "anyone"] | None = None
    owner: Name | None = None
    team: Name | None = None
    reason: Annotated[str, Field(max_length=1000)] = ""
    override_window: bool = False
    #: a callback window: due at ``at``, promised until ``until`` (same zone)
    until: Annotated[str, Field(min_length=1, max_length=64)] | None = None


class ImportRecord(BaseModel):
    """One record of an import."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[^\x00-\x1f]+$")]
    phones: Annotated[list[Annotated[str, Field(min_length=3, max_length=40)]],
                      Field(min_length=1, max_length=20)]
    timezone: Annotated[str, Field(min_length=1, max_length=64)] | None = None
    priority: Annotated[int, Field(ge=-1000, le=1000)] = 0
    team: Name | None = None
    data: dict[str, Any] = {}


def field_path(loc: tuple[Any, ...]) -> str:
    """pydantic's ``loc`` as ``a.b[2].c``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif isinstance(part, str) and part.startswith(("function-", "tagged-union")):
            continue
        else:
            out += ("." if out else "") + str(part)
    return out


def validation_error(exc: ValidationError, prefix: str = "") -> BadRequest:
    """The first problem of ``exc`` as a ``BadRequest`` naming its field."""
    errs = exc.errors()
    first = errs[0]
    path = field_path(tuple(first["loc"]))
    if prefix:
        path = f"{prefix}.{path}" if path else prefix
    msg = first["msg"]
    if first["type"] == "extra_forbidden":
        msg = "unknown field"
    elif first["type"] == "missing":
        msg = "field required"
    text = f"{path}: {msg}" if path else msg
    if len(errs) > 1:
        text += f" (and {len(errs) - 1} more problem{'s' if len(errs) > 2 else ''})"
    return BadRequest(text, field=path or None)


def depth(value: Any, limit: int) -> int:
    """How deep ``value`` nests arrays and objects (a scalar is 0, ``[]`` is 1), counted
    only up to ``limit + 1``: a walk with its own stack, so no depth can exhaust Python's
    recursion or the walk's time (each container is visited once)."""
    if type(value) is not dict and type(value) is not list:
        return 0
    deepest = 1
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, level = stack.pop()
        if level > deepest:
            deepest = level
            if deepest > limit:
                return deepest
        for v in (node.values() if type(node) is dict else node):
            if type(v) is dict or type(v) is list:
                stack.append((v, level + 1))
    return deepest


def _too_deep(obj: dict[str, Any]) -> str | None:
    """The top-level field under which ``obj`` nests deeper than ``MAX_DEPTH``, if any."""
    for key, v in obj.items():
        if depth(v, MAX_DEPTH - 1) > MAX_DEPTH - 1:
            return str(key)
    return None


class _NumberText(str):
    """A JSON number's text, as the standard library's decoder hands it to its hooks."""


_NUMBER_TEXTS = json.JSONDecoder(parse_float=_NumberText, parse_int=_NumberText)


def _number_text(line: bytes, value: float) -> RequestId:
    """The exact text of the request's numeric ``id`` (``value`` as parsed), read again
    from ``line`` by a decoder that keeps numbers as text: a float cannot be trusted to
    print as it was sent (``1e3``, ``100000000000000000000``). Only requests whose id is
    such a number pay for it."""
    try:
        obj = _NUMBER_TEXTS.decode(line.decode())
    except (ValueError, RecursionError):  # cannot happen for a line orjson read
        return orjson.Fragment(orjson.dumps(value))
    text = obj.get("id") if isinstance(obj, dict) else None
    return orjson.Fragment(str(text) if isinstance(text, _NumberText) else orjson.dumps(value))


def request_id(raw: Any, line: bytes) -> RequestId:
    """The id to echo for ``raw``, the parsed ``id`` of ``line``.

    Raises:
        BadRequest: naming ``id`` (a boolean, an array or an object); the error's
            ``req_id`` is what its answer echoes: the id as sent if it nests at most
            ``ID_ECHO_DEPTH`` levels, else ``None``.
    """
    t = type(raw)
    if t is str or t is int or raw is None:
        return raw  # type: ignore[no-any-return]
    if t is float:
        return _number_text(line, raw)
    err = BadRequest("id must be a string, a number or null", field="id")
    # echo a refused id as sent unless it nests too deep to encode safely
    echo = raw if t is bool or depth(raw, ID_ECHO_DEPTH) <= ID_ECHO_DEPTH else None
    err.req_id = echo  # type: ignore[attr-defined]
    raise err


def decode(line: bytes, models: Mapping[str, type[BaseModel]]
           ) -> tuple[RequestId, str, BaseModel]:
    """Parse one request line; ``models`` are the ops' request models (the registry in
    ``ops/__init__.py``).

    Raises:
        NextcallError: (``bad_json``, ``bad_request``, ``unknown_op``), with ``.req_id``
            set to the request's id when it could be read (a refused id: see
            ``request_id``).
    """
    try:
        obj = orjson.loads(line)
    except orjson.JSONDecodeError as exc:  # (past 1024 levels: "depth limit exceeded")
        raise BadJson(f"not valid JSON: {exc.msg}") from None
    if not isinstance(obj, dict):
        raise BadRequest("a request must be a JSON object")
    raw_id = obj.pop("id", None)
    req_id = raw_id if type(raw_id) is str or raw_id is None else request_id(raw_id, line)
    try:
        # a line with fewer brackets than the limit cannot nest that deep: the counts run
        # in C, so the call cycle's small requests are never walked
        if line.count(b"[") + line.count(b"{") > MAX_DEPTH:
            deep = _too_deep(obj)
            if deep is not None:
                raise BadRequest(f"{deep}: a request may nest at most {MAX_DEPTH} levels",
                                 field=deep)
        op = obj.pop("op", None)
        if not isinstance(op, str):
            raise BadRequest("op must be a string", field="op")
        fast = _FAST.get(op)
        if fast is not None:
            req = fast(obj)
            if req is not None:
                return req_id, op, req
        model = models.get(op)
        if model is None:
            raise UnknownOp(f"unknown op {op!r}", field="op")
        try:
            return req_id, op, model.model_validate(obj)
        except ValidationError as exc:
            raise validation_error(exc) from None
    except NextcallError as err:
        err.req_id = req_id  # type: ignore[attr-defined]
        raise


# --------------------------------------------------------------------------- fast path
# The two requests of every call cycle, in their common shape, are checked by hand: the
# same rules as their models, a tenth of the cost. Anything else (another field, a value
# out of range, a wrong type) goes through the model, which names the problem.
_CONTROL = re.compile(r"[\x00-\x1f]")
_NEXT_KEYS = frozenset(("agent", "campaigns", "count", "wait"))
_DISPOSE_KEYS = frozenset(("lease", "code", "agent"))


def _name(v: Any) -> TypeGuard[str]:
    return type(v) is str and 0 < len(v) <= 100 and _CONTROL.search(v) is None


class FastNext:
    """A ``next`` request checked by ``_fast_next`` (the attributes of ``NextReq``)."""

    __slots__ = ("agent", "campaigns", "count", "wait")

    def __init__(self, agent: str, campaigns: builtins.list[str] | None, count: int,
                 wait: float) -> None:
        self.agent, self.campaigns, self.count, self.wait = agent, campaigns, count, wait


class FastDispose:
    """A plain ``dispose`` (lease, code, maybe agent) checked by ``_fast_dispose``."""

    __slots__ = ("lease", "code", "agent")
    phone = note = revenue = callback = appointment = campaign = None
    fields: dict[str, Any] = {}

    def __init__(self, lease: str, code: str, agent: str | None) -> None:
        self.lease, self.code, self.agent = lease, code, agent


def _fast_next(obj: dict[str, Any]) -> FastNext | None:
    if not obj.keys() <= _NEXT_KEYS:
        return None
    agent = obj.get("agent")
    if not _name(agent):
        return None
    campaigns = obj.get("campaigns")
    if campaigns is not None and (type(campaigns) is not list or not 0 < len(campaigns) <= 100
                                  or not all(_name(c) for c in campaigns)):
        return None
    count = obj.get("count", 1)
    if type(count) is not int or not 1 <= count <= 10_000:
        return None
    wait = obj.get("wait", 0.0)
    if type(wait) not in (int, float) or not 0 <= wait <= 3600:
        return None
    return FastNext(agent, campaigns, count, float(wait))


def _fast_dispose(obj: dict[str, Any]) -> FastDispose | None:
    if not obj.keys() <= _DISPOSE_KEYS:
        return None
    lease, code, agent = obj.get("lease"), obj.get("code"), obj.get("agent")
    if type(lease) is not str or not 3 <= len(lease) <= 100:
        return None
    if type(code) is not str or not 1 <= len(code) <= 32:
        return None
    if agent is not None and not _name(agent):
        return None
    return FastDispose(lease, code, agent)


_FAST: dict[str, Any] = {"next": _fast_next, "dispose": _fast_dispose}


def _default(obj: Any) -> Any:
    raise TypeError(f"cannot encode {type(obj).__name__}")


def encode_ok(req_id: RequestId, body: dict[str, Any]) -> bytes:
    """A success line."""
    return orjson.dumps({"id": req_id, "ok": True, **body},
                        option=orjson.OPT_APPEND_NEWLINE, default=_default)


def encode_ok_raw(req_id: RequestId, body: bytes) -> bytes:
    """A success line around a body already encoded as a JSON object."""
    head = b'{"id":' + orjson.dumps(req_id) + b',"ok":true'
    return head + (b"," + body[1:] if len(body) > 2 else b"}") + b"\n"


def encode_error(req_id: RequestId, err: NextcallError) -> bytes:
    """A failure line."""
    return orjson.dumps({"id": req_id, "ok": False, "error": err.to_wire()},
                        option=orjson.OPT_APPEND_NEWLINE)


#: the answer of last resort: nothing in it can fail to encode
_INTERNAL = b'{"id":null,"ok":false,"error":{"code":"internal",' \
    b'"message":"internal error; see the daemon log"}}\n'


def encode_internal(req_id: Any) -> bytes:
    """An ``internal`` failure line that cannot fail: ``req_id`` is echoed if it is an
    id the decoder accepts (``RequestId``) and encodes, else ``null``."""
    t = type(req_id)
    if t is str or t is int or t is orjson.Fragment:
        try:
            return b'{"id":' + orjson.dumps(req_id) + _INTERNAL[10:]
        except orjson.JSONEncodeError:  # a str with lone surrogates, an int over 64 bits
            pass
    return _INTERNAL


def encode_event(event: str, body: dict[str, Any]) -> bytes:
    """An unsolicited event line (subscriptions)."""
    return orjson.dumps({"event": event, **body}, option=orjson.OPT_APPEND_NEWLINE)
