"""``config.reload`` (admin), and the reload itself (SIGHUP runs it too).

Campaigns, result codes and ``[auth]`` take effect at once (roles for new connections);
``[daemon]`` keys other than ``log_level``, ``[metrics]`` and ``[tcp]`` need a restart and
are reported, not applied (the TLS certificate is read again from its files, though).
Leases and in-flight requests are untouched.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from ..config import Settings
from ..core import reload as reloadlib
from ..protocol import Request
from ..roles import Peer
from .base import Body

if TYPE_CHECKING:
    from ..service import Service

logger = logging.getLogger(__name__)


class ReloadReq(Request):
    """``config.reload``: re-read campaigns and result codes (admin)."""

    dry_run: bool = False


def reload(svc: Service, req: ReloadReq, peer: Peer) -> Body:
    """``config.reload`` (admin): re-read the config file; ``dry_run`` only reports."""
    return svc.reload_from_disk(req.dry_run)


def _restart_keys(old: Settings, new: Settings) -> list[str]:
    """Settings that changed but apply only at the next start."""
    old_d, new_d = old.daemon, new.daemon
    keys = sorted(k for k in type(old_d).model_fields
                  if k != "log_level" and getattr(old_d, k) != getattr(new_d, k))
    old_m, new_m = old.metrics, new.metrics
    keys += sorted(f"metrics.{k}" for k in type(old_m).model_fields
                   if getattr(old_m, k) != getattr(new_m, k))
    old_t, new_t = old.tcp, new.tcp
    keys += sorted(f"tcp.{k}" for k in type(old_t).model_fields
                   if getattr(old_t, k) != getattr(new_t, k))
    return keys


def _sample_ids(svc: Service, changes: list[reloadlib.CampaignChange]) -> None:
    """Name the sampled records: by id where the engine knows it, else by number
    (``#rid``; pool records' ids live in the database)."""
    for c in changes:
        out = []
        for rid in c.sample_rids:
            rec = svc.engine.record(rid)
            out.append(rec.id if rec is not None and rec.id else f"#{rid}")
        c.sample = out


def _log_changes(changes: list[reloadlib.CampaignChange]) -> None:
    for c in changes:
        if c.status != "unchanged":
            logger.info("campaign_reloaded campaign=%s status=%s settings=%s "
                        "codes_added=%s codes_removed=%s eligibility_changed=%d "
                        "order_changed=%d", c.campaign, c.status, ",".join(c.settings),
                        ",".join(c.codes_added), ",".join(c.codes_removed),
                        c.eligibility_changed, c.order_changed)


def apply_settings(svc: Service, new: Settings, dry_run: bool) -> dict[str, Any]:
    """Plan, and unless ``dry_run`` apply, a new configuration in one synchronous step."""
    now = svc.clock()
    changes = reloadlib.plan(svc.engine, new.campaigns, now)
    _sample_ids(svc, changes)
    restart = _restart_keys(svc.settings, new)
    answer: dict[str, Any] = {
        "dry_run": dry_run, "applied": False,
        "campaigns": [c.to_json() for c in changes if c.status != "unchanged"],
        "unchanged": [c.campaign for c in changes if c.status == "unchanged"],
        "auth_changed": svc.settings.auth != new.auth,
        "restart_required": restart,
    }
    if dry_run:
        return answer
    reloadlib.apply(svc.engine, new.campaigns, now)
    old = svc.settings
    daemon_cfg = old.daemon.model_copy(update={"log_level": new.daemon.log_level})
    svc.settings = Settings(path=old.path, daemon=daemon_cfg, auth=new.auth,
                            campaigns=new.campaigns, files=new.files,
                            resultsets=new.resultsets, metrics=old.metrics, smtp=new.smtp,
                            agents=new.agents, reminder_emails=new.reminder_emails,
                            tcp=old.tcp)
    logging.getLogger().setLevel(new.daemon.log_level.upper())
    for listener in svc.reload_listeners:
        listener(svc.settings)
    svc.notify()
    answer["applied"] = True
    _log_changes(changes)
    if restart:
        logger.warning("config_restart_required keys=%s", ",".join(restart))
    logger.info("config_reloaded campaigns=%d changed=%d", len(new.campaigns),
                len(answer["campaigns"]))
    return answer
