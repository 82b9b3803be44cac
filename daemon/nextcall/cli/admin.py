"""Running and administering the daemon: serve it, check and reload its config, create
or upgrade its database, fill it with demo records, and check that it answers."""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import click

from ..config import load
from ..core.errors import ConfigError, NextcallError
from ..files import restrict_umask
from .calls import EXIT_REFUSED, call, config_path, connect, load_or_exit, request
from .output import console, emit_json, err_console, reload_table


@click.command()
@click.pass_context
def serve(ctx: click.Context) -> None:
    """Run the daemon in the foreground (migrates and rebuilds first)."""
    settings = load_or_exit(config_path(ctx.obj["config"]))
    restrict_umask()
    # the records are read while the daemon's modules load (storage/prefetch.py); the
    # entry point (launch.py) began before the command line's own imports
    from .. import launch
    from ..storage import prefetch
    path = launch.sqlite_file(settings.daemon.database)
    early = launch.EARLY if path is not None and path == launch.EARLY_PATH else \
        (prefetch.start(path) if path else None)
    from ..app import serve as run_daemon
    console.print(f"nextcall: socket [bold]{settings.daemon.socket}[/bold], database "
                  f"{settings.daemon.database}; Ctrl-C stops", highlight=False)
    sys.exit(run_daemon(settings, early))


@click.command("check-config")
@click.argument("file", required=False)
@click.pass_context
def check_config(ctx: click.Context, file: str | None) -> None:
    """Validate a config file and its includes: print every problem, or "ok"."""
    path = file or config_path(ctx.obj["config"])
    try:
        s = load(path)
    except ConfigError as exc:
        for where, msg in exc.problems:
            click.echo(f"{where}: {msg}")
        sys.exit(EXIT_REFUSED)
    click.echo(f"ok ({len(s.campaigns)} campaigns, {len(s.files)} files)")


@click.command()
@click.pass_context
def migrate(ctx: click.Context) -> None:
    """Create or upgrade the database schema."""
    from ..storage.sql import SqlStore
    settings = load_or_exit(config_path(ctx.obj["config"]))
    restrict_umask()

    async def run() -> list[str]:
        store = SqlStore(settings.daemon.database)
        await store.open()
        try:
            return await store.migrate()
        finally:
            await store.close()
    try:
        steps = asyncio.run(run())
    except NextcallError as exc:
        err_console.print(f"[red]{exc.message}[/red]")
        sys.exit(EXIT_REFUSED)
    click.echo("schema up to date" if not steps else "migrated: " + ", ".join(steps))


@click.command()
@click.option("--campaign", default="demo", show_default=True)
@click.option("--records", "count", default=5000, show_default=True)
@click.pass_context
def demo(ctx: click.Context, campaign: str, count: int) -> None:
    """Fill the database with synthetic records for a campaign (once; idempotent)."""
    from ..demo import load_demo
    settings = load_or_exit(config_path(ctx.obj["config"]))
    if campaign not in settings.campaigns:
        err_console.print(f"[red]no campaign {campaign!r} in the config[/red]")
        sys.exit(EXIT_REFUSED)
    restrict_umask()
    added = asyncio.run(load_demo(settings, campaign, count, console))
    click.echo(f"demo campaign {campaign!r}: {added} records added")


@click.command()
@click.option("--dry-run", is_flag=True, help="Only say what would change.")
@click.pass_context
def reload(ctx: click.Context, dry_run: bool) -> None:
    """Re-read campaigns and result codes in the running daemon (admin)."""
    ans = call(ctx, "config.reload", dry_run=dry_run)
    if emit_json(ctx, ans):
        return
    console.print(reload_table(ans, dry_run))
    if ans["restart_required"]:
        console.print("needs a restart: " + ", ".join(ans["restart_required"]))
    console.print("applied" if ans["applied"] else "nothing applied (dry run)")


@click.command()
@click.pass_context
def ping(ctx: click.Context) -> None:
    """Check the daemon answers; with high availability, its state and epoch."""
    with connect(ctx) as c:
        ans = request(ctx, c, "ping")
        if emit_json(ctx, ans):
            return
        console.print(f"nextcall {ans['version']}: {ans.get('records', 0)} records, "
                      f"you are {ans['role']}", highlight=False)
        if "state" in ans or len(c.addresses) > 1:
            console.print(ha_line(ans, c.address), highlight=False)


def ha_line(ans: dict[str, Any], address: str | None) -> str:
    """The daemon's high-availability state from its ``ping`` answer, and where the
    client reached it: ``active, epoch 4, at 10.0.0.2:7443``."""
    parts = [str(ans.get("state", "active"))]
    if ans.get("epoch") is not None:
        parts.append(f"epoch {ans['epoch']}")
    if ans.get("active") and ans.get("active") != address:
        parts.append(f"active daemon {ans['active']}")
    if address:
        parts.append(f"at {address}")
    return ", ".join(parts)


COMMANDS = (serve, check_config, migrate, demo, reload, ping)
