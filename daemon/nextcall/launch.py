"""The ``nextcall`` command's entry point.

For ``nextcall serve`` it reads the config's database URL with ``tomllib`` and starts the
start-up read (``storage/prefetch.py``) before importing the command line and the daemon
(click, rich, pydantic, SQLAlchemy: most of a second), so that reading the records and
loading the code overlap. Everything else is ``nextcall.cli``.
"""

from __future__ import annotations

import os
import sys
import tomllib

#: the read started here, for ``cli.admin.serve`` (None: not started)
EARLY: object | None = None
EARLY_PATH: str | None = None


def _option(argv: list[str], name: str) -> str | None:
    for i, arg in enumerate(argv):
        if arg == name and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    return None


def sqlite_file(url: str) -> str | None:
    """The file of a ``sqlite...:///path`` URL (None for other databases, or memory)."""
    scheme, sep, rest = url.partition(":///")
    if not sep or not scheme.startswith("sqlite"):
        return None
    path = rest.split("?", 1)[0]
    return path if path and path != ":memory:" else None


def _start_early(argv: list[str]) -> None:
    global EARLY, EARLY_PATH
    config = _option(argv, "--config") or os.environ.get("NEXTCALL_CONFIG") \
        or "config/nextcall.toml"
    try:
        with open(config, "rb") as f:
            url = tomllib.load(f).get("daemon", {}).get(
                "database", "sqlite+aiosqlite:///./var/nextcall.db")
    except (OSError, tomllib.TOMLDecodeError, AttributeError):
        return  # the full config load reports the problem
    path = sqlite_file(str(url))
    if path is None:
        return
    from .storage import prefetch
    EARLY, EARLY_PATH = prefetch.start(path), path


def main() -> None:
    """Run the command line (starting the daemon's read early for ``serve``)."""
    if "serve" in sys.argv[1:]:
        _start_early(sys.argv[1:])
    from .cli import main as cli_main
    cli_main()
