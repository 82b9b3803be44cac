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
@click.option("--socket", "--connect", "socket_", envvar="NEXTCALL_SOCKET", default=None,
              help="Daemon address: a Unix socket path or host:port (TLS); several, "
                   "comma-separated, reach whichever is active (default: the config's "
                   "socket).")
@click.option("--tls-ca", envvar="NEXTCALL_TLS_CA", default=None,
              help="CA file that signs the daemons' certificates (host:port addresses).")
@click.option("--tls-cert", envvar="NEXTCALL_TLS_CERT", default=None,
              help="This client's certificate file (PEM; may hold the key too).")
@click.option("--tls-key", envvar="NEXTCALL_TLS_KEY", default=None,
              help="This client's private key file, if not in --tls-cert.")
@click.option("--tls-server-name", envvar="NEXTCALL_TLS_SERVER_NAME", default=None,
              help="Name the daemons' certificates must carry (default: each host).")
@click.option("--plaintext", is_flag=True, envvar="NEXTCALL_PLAINTEXT",
              help="host:port without TLS (a daemon listening on loopback, for tests).")
@click.option("--failover-timeout", type=click.FloatRange(min=0), default=None,
              envvar="NEXTCALL_FAILOVER_TIMEOUT",
              help="Seconds to look for the active daemon (default 15 with several "
                   "addresses, 0 with one).")
@click.option("--json", "as_json", is_flag=True, help="Print the answer as JSON.")
@click.version_option(package_name="nextcall")
@click.pass_context
def main(ctx: click.Context, config: str | None, socket_: str | None, tls_ca: str | None,
         tls_cert: str | None, tls_key: str | None, tls_server_name: str | None,
         plaintext: bool, failover_timeout: float | None, as_json: bool) -> None:
    """nextcall: which record should this agent call next?"""
    ctx.ensure_object(dict)
    ctx.obj.update(config=config, socket=socket_, json=as_json, tls_ca=tls_ca,
                   tls_cert=tls_cert, tls_key=tls_key, tls_server_name=tls_server_name,
                   plaintext=plaintext, failover_timeout=failover_timeout)


for _command in (*admin.COMMANDS, *agent.COMMANDS, *records.COMMANDS, *reports.COMMANDS,
                 *listing.COMMANDS, *explain.COMMANDS, *amend.COMMANDS):
    main.add_command(_command)

__all__ = ["main"]
