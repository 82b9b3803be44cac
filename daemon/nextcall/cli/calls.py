"""How a command finds its config and the daemon, calls it, and turns failures into the
command line's exit statuses (1 refused or invalid, 3 cannot connect). Every command
reaches the daemon through ``connect`` here: the failover client of ``nextcall.client``.

These helpers exit the process: they only run inside a command, which is the entry point.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import click

from ..client import DEFAULT_SOCKET, Client, ClientError, NoActiveDaemon
from ..config import DEFAULT_CONFIG, Settings, load
from ..core.errors import ConfigError
from ..core.model import CALLBACK_SCOPES
from .output import err_console

#: exit statuses other than 0 (ok) and 2 (usage, click's own)
EXIT_REFUSED = 1
EXIT_NO_DAEMON = 3
#: ``--scope`` of callbacks, spelled as the protocol spells it
SCOPE_CHOICE = click.Choice(list(CALLBACK_SCOPES))


def config_path(value: str | None) -> str:
    """The config file: ``--config``, else ``NEXTCALL_CONFIG``, else the default."""
    return value or os.environ.get("NEXTCALL_CONFIG") or DEFAULT_CONFIG


def load_or_exit(path: str) -> Settings:
    """The settings at ``path``, or every problem printed and exit status 1."""
    try:
        return load(path)
    except ConfigError as exc:
        for where, msg in exc.problems:
            err_console.print(f"[red]{where}[/red]: {msg}")
        sys.exit(EXIT_REFUSED)


def socket_addresses(socket_opt: str | None, config_opt: str | None) -> list[str]:
    """The daemon's addresses: ``--socket``/``--connect``, ``NEXTCALL_SOCKET``, the
    config's socket, the default. The option and the variable may list several,
    separated by commas (a high-availability deployment: the active one is used).

    A broken config is not an error here: a client that only needs the socket should still
    reach a daemon that runs on a config it loaded earlier.
    """
    text = socket_opt or os.environ.get("NEXTCALL_SOCKET")
    if text:
        return [a.strip() for a in text.split(",") if a.strip()] or [DEFAULT_SOCKET]
    path = config_path(config_opt)
    if Path(path).exists():
        try:
            return [str(load(path).daemon.socket)]
        except ConfigError:
            pass
    return [DEFAULT_SOCKET]


def make_client(ctx: click.Context) -> Client:
    """The failover client for the command line's addresses and TLS options (one
    address: the plain client, which fails at once when no daemon listens)."""
    o = ctx.obj
    return Client(socket_addresses(o.get("socket"), o.get("config")),
                  tls=not o.get("plaintext"), cafile=o.get("tls_ca"),
                  certfile=o.get("tls_cert"), keyfile=o.get("tls_key"),
                  server_hostname=o.get("tls_server_name"),
                  failover_timeout=o.get("failover_timeout"))


def connect(ctx: click.Context) -> Client:
    """A client connected to the active daemon, or a hint to start the daemon and exit
    status 3."""
    c = make_client(ctx)
    try:
        return c.connect()
    except OSError as exc:
        why = str(exc) if isinstance(exc, NoActiveDaemon) else (exc.strerror or exc)
        err_console.print(f"[red]cannot connect to {','.join(c.addresses)}[/red]: {why}. "
                          "Is the daemon running (make run)?", highlight=False)
        sys.exit(EXIT_NO_DAEMON)


def request(ctx: click.Context, c: Client, op: str, *, timeout: float | None = None,
            **fields: Any) -> dict[str, Any]:
    """One request on ``c``: the answer; the daemon's refusal printed (as JSON with
    ``--json``, so scripts can read it too) and exit status 1; a daemon lost for good
    printed and exit status 3."""
    try:
        return c.call(op, timeout=timeout, **fields)
    except ClientError as exc:
        if ctx.obj.get("json"):
            print(json.dumps({"ok": False, "error": {"code": exc.code,
                                                     "message": exc.message,
                                                     "field": exc.field}}))
        else:
            err_console.print(f"[red]{exc.code}[/red]: {exc.message}"
                              + (f" [dim](field {exc.field})[/dim]" if exc.field else ""))
        sys.exit(EXIT_REFUSED)
    except ConnectionError as exc:
        err_console.print(f"[red]lost the daemon[/red]: {exc}", highlight=False)
        sys.exit(EXIT_NO_DAEMON)


def call(ctx: click.Context, op: str, *, timeout: float | None = None,
         **fields: Any) -> dict[str, Any]:
    """One request on a fresh connection to the active daemon (see ``request``)."""
    with connect(ctx) as c:
        return request(ctx, c, op, timeout=timeout, **fields)


def optional_fields(**values: Any) -> dict[str, Any]:
    """The options that were given: the protocol's defaults apply to those left out."""
    return {k: v for k, v in values.items() if v is not None}


def window_end(at: str, until: str | None) -> str | None:
    """A callback window's end: ``HH:MM`` means that time on AT's day (``--callback-at
    2027-03-30T14:00 --callback-until 16:00``); anything else is sent as given."""
    if until is None or len(until) != 5 or until[2] != ":" or "T" not in at:
        return until
    return f"{at.split('T', 1)[0]}T{until}"
