"""The fuzzer's tally, and the frames it sends alone on a connection of their own: a line
over the limit (answered ``too_large``, then the connection closes) and lines that may
trigger a defect already known (``known.py``), whose answers are checked exactly."""

from __future__ import annotations

import asyncio
import json
import sys
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import orjson

from tests.fuzz.checks import answer_problem
from tests.fuzz.frames import Expect, Frame
from tests.fuzz.proc import Daemon

ANSWER_TIMEOUT_S = 60.0


@dataclass
class Tally:
    """What a run saw; ``report`` prints it."""

    frames: int = 0
    lines: int = 0
    answers: Counter[str] = field(default_factory=Counter)
    ok_by_op: Counter[str] = field(default_factory=Counter)
    events: int = 0
    checks: int = 0
    restarts: int = 0
    #: seconds spent in rounds, hazards and checks
    spent: Counter[str] = field(default_factory=Counter)
    violations: list[str] = field(default_factory=list)
    known: Counter[str] = field(default_factory=Counter)
    known_quiet: Counter[str] = field(default_factory=Counter)
    known_examples: dict[str, str] = field(default_factory=dict)
    #: the first line that hit each known defect, replayed alone for its traceback
    known_lines: dict[str, bytes] = field(default_factory=dict)

    def violation(self, text: str) -> None:
        """Record a finding (printed at once, and again in the report)."""
        self.violations.append(text)
        if len(self.violations) <= 20:
            print(f"VIOLATION {text}", file=sys.stderr, flush=True)


def show(line: bytes, limit: int = 300) -> str:
    text = line.decode(errors="backslashreplace")
    return text if len(text) <= limit else f"{text[:limit]}... ({len(line)} bytes)"


def parse(line: bytes) -> dict[str, Any] | None:
    try:
        msg = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    return msg if isinstance(msg, dict) else None


async def _read_all(reader: asyncio.StreamReader, n: int, until_eof: bool
                    ) -> tuple[list[bytes], bool]:
    """Up to ``n`` answer lines (events skipped), and whether the connection closed."""
    out: list[bytes] = []
    try:
        while len(out) < n or until_eof:
            line = await asyncio.wait_for(reader.readline(), 10)
            if not line:
                return out, True
            msg = parse(line)
            if msg is None or "ok" in msg or "event" not in msg:
                out.append(line)
    except ConnectionResetError:
        # closed with our bytes still unread (the rest of a long line): a reset, not EOF
        return out, True
    except (TimeoutError, ConnectionError, OSError):
        pass
    return out, False


def _exact_id(exp: Expect) -> Any:
    """The id a line carries, as its sender meant it (big integers exact)."""
    if exp.obj is None:
        return None  # not a JSON object to the daemon: answered with a null id
    obj = _json_or_none(exp.line)
    return obj.get("id") if isinstance(obj, dict) else exp.obj.get("id")


def _json_or_none(line: bytes) -> Any:
    try:
        return json.loads(line)
    except (ValueError, RecursionError):
        return None


async def alone(data: bytes, answers: int, daemon: Daemon, until_eof: bool = False
                ) -> tuple[list[bytes], bool, list[str]]:
    """Send ``data`` on a new connection; the answer lines, whether the daemon closed
    the connection, and the tracebacks its log gained meanwhile."""
    mark = daemon.mark()
    reader, writer = await asyncio.open_unix_connection(daemon.sock, limit=1 << 24)
    try:
        writer.write(data)
        if not until_eof:
            writer.write_eof()
        lines, closed = await _read_all(reader, answers, until_eof)
    finally:
        writer.close()
    return lines, closed, daemon.tracebacks(mark)


async def replay_examples(daemon: Daemon, tally: Tally) -> None:
    """Each known defect's first example again, alone, for its own traceback (hazards
    run a few at once, so their tracebacks mix)."""
    for name, line in tally.known_lines.items():
        lines, _, traces = await alone(line + b"\n", 1, daemon)
        answer = show(lines[0]) if lines else "(none)"
        tally.known_examples[name] = f"request {show(line)}\n    answer {answer}" + \
            "".join(f"\n{t}" for t in traces[-1:])


async def hazard(frame: Frame, daemon: Daemon, tally: Tally) -> None:
    """Send one frame alone on a new connection: a line over the limit (answered
    ``too_large``, then closed) or one that may trigger a known defect."""
    lines, closed, traces = await alone(frame.data, len(frame.expects) + frame.oversize,
                                        daemon, until_eof=frame.oversize)
    answers = [_json_or_none(x) for x in lines]
    for i, exp in enumerate(frame.expects):
        msg = answers[i] if i < len(answers) else None
        problem = "no answer" if msg is None else answer_problem(msg)
        if problem is None and msg.get("id") != _exact_id(exp):
            problem = f"id echoed as {msg.get('id')!r}"
        _hazard_result(tally, exp, problem, lines[i] if i < len(lines) else b"", traces)
    if frame.oversize:
        last = answers[len(frame.expects)] if len(answers) > len(frame.expects) else None
        code = ((last or {}).get("error") or {}).get("code")
        if code != "too_large" or not closed:
            tally.violation(f"a line over the limit got {last!r} (closed: {closed}); "
                            f"first bytes {show(frame.data[:200])}")


def _hazard_result(tally: Tally, exp: Expect, problem: str | None, answer: bytes,
                   traces: list[str]) -> None:
    tally.answers["(hazard)"] += 1
    if exp.known is None:
        if problem is not None:
            tally.violation(f"{problem}: request {show(exp.line)} answer {show(answer)}"
                            + "".join(f"\n{t}" for t in traces))
        return
    if problem is None:
        tally.known_quiet[exp.known] += 1
        return
    tally.known[exp.known] += 1
    tally.known_lines.setdefault(exp.known, exp.line)


