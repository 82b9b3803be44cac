"""The real daemon as a subprocess (``nextcall serve``), for the standalone fuzzers: start,
``kill -9``, stop, and the tracebacks its log gained since a mark."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from nextcall.client import Client, ClientError

BIN = Path(sys.executable).parent / "nextcall"
_TRACE = re.compile(r"^Traceback \(most recent call last\):$", re.M)


class Daemon:
    """One daemon process on ``config``; its output goes to ``daemon.log`` beside it (a
    file, not a pipe: an unread pipe could fill up and stall the daemon)."""

    def __init__(self, config: Path) -> None:
        self.config = config
        self.sock = str(config.parent / "s.sock")
        self.db = config.parent / "db.sqlite"
        self.log = config.parent / "daemon.log"
        self.p: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self, timeout_s: float = 60.0) -> None:
        """Start and wait until it answers ``ping``.

        Raises:
            RuntimeError: it exited or did not answer in time (with its log's tail).
        """
        with self.log.open("ab") as out:
            self.p = subprocess.Popen([str(BIN), "--config", str(self.config), "serve"],
                                      stdout=out, stderr=subprocess.STDOUT)
        self.starts += 1
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                with Client(self.sock, timeout=5) as c:
                    c.call("ping")
                return
            except (OSError, ClientError):
                if self.p.poll() is not None:
                    raise RuntimeError(f"the daemon exited:\n{self.tail()}") from None
                time.sleep(0.05)
        raise RuntimeError(f"the daemon did not start in {timeout_s} s:\n{self.tail()}")

    def alive(self) -> bool:
        """Whether the process is running."""
        return self.p is not None and self.p.poll() is None

    def wait(self, timeout_s: float) -> int | None:
        """Wait for the process to exit; its status (None: still running)."""
        if self.p is None:
            return None
        try:
            return self.p.wait(timeout_s)
        except subprocess.TimeoutExpired:
            return None

    def kill9(self) -> None:
        """SIGKILL, and reap it."""
        if self.p is not None and self.p.poll() is None:
            self.p.send_signal(signal.SIGKILL)
            self.p.wait(30)

    def stop(self) -> int:
        """SIGTERM; the exit status (a SIGKILL after 60 s gives -9)."""
        if self.p is None:
            return 0
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
            try:
                return self.p.wait(60)
            except subprocess.TimeoutExpired:
                self.p.kill()
        return self.p.wait(30)

    def mark(self) -> int:
        """A position in the log, for ``tracebacks``."""
        return self.log.stat().st_size if self.log.exists() else 0

    def tracebacks(self, since: int = 0) -> list[str]:
        """Each traceback the log gained after ``since``, with the log line before it."""
        with self.log.open("rb") as f:
            f.seek(since)
            text = f.read().decode(errors="replace")
        out = []
        starts = [m.start() for m in _TRACE.finditer(text)]
        for i, at in enumerate(starts):
            head = text.rfind("\n", 0, max(at - 1, 0))
            end = starts[i + 1] if i + 1 < len(starts) else len(text)
            block = text[head + 1:end]
            # the traceback ends at the first line that is not indented after its header
            lines = block.splitlines()
            keep = lines[:2]
            for line in lines[2:]:
                keep.append(line)
                if not line.startswith((" ", "\t")) and not line.startswith("Traceback"):
                    break
            out.append("\n".join(keep))
        return out

    def tail(self, n: int = 40) -> str:
        """The last ``n`` lines of the log."""
        if not self.log.exists():
            return ""
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])
