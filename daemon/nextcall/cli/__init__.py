"""The ``nextcall`` command: the daemon, admin commands and a thin client.

Human output is rich tables; ``--json`` prints the daemon's answer as JSON for scripts.
Exit status: 0 ok, 1 refused by the daemon or invalid input, 2 usage, 3 cannot connect.

The commands live by concern: ``admin`` (the daemon and its config), ``agent`` (leases
and dispositions), ``records`` (import and changes to one record), ``reports``
(read-only overviews), ``listing`` (records found by state and last result),
``explain`` (why a record or a campaign is not handed out), ``amend`` (corrections of
dispositions); ``calls`` reaches the daemon and ``output`` renders its answers.
"""

from __future__ import annotations

import click

from ..config import DEFAULT_CONFIG
from . import admin, agent, amend, explain, listing, records, reports


@click.group()
@click.option("--config", "config", envvar="NEXTCALL_CONFIG", default=None,
              help=f"Daemon config file (default {DEFAULT_CONFIG}).")
@click.option("--socket", "socket_", envvar="NEXTCALL_SOCKET", default=None,
              help="Daemon socket (default: from the config).")
@click.option("--json", "as_json", is_flag=True, help="Print the answer as JSON.")
@click.version_option(package_name="nextcall")
@click.pass_context
def main(ctx: click.Context, config: str | None, socket_: str | None, as_json: bool) -> None:
    """nextcall: which record should this agent call next?"""
    ctx.ensure_object(dict)
    ctx.obj.update(config=config, socket=socket_, json=as_json)


for _command in (*admin.COMMANDS, *agent.COMMANDS, *records.COMMANDS, *reports.COMMANDS,
                 *listing.COMMANDS, *explain.COMMANDS, *amend.COMMANDS):
    main.add_command(_command)

__all__ = ["main"]
