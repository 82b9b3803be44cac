"""TOML configuration -> validated settings and core campaign objects.

One main file (``[daemon]``, ``[auth]``, ``[metrics]``, ``include``) plus included files holding
``[resultsets.NAME]`` and ``[campaigns.NAME]`` tables. Every problem in every file is
collected and reported at once, each with its file and key path; unknown keys are errors.
"""

from __future__ import annotations

import glob
import os
import tomllib
from dataclasses import dataclass, field
from datetime import date
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from .addresses import listen_address as listen_address  # re-exported (metrics)
from .bindings import Bindings
from .codes import ResultSetCfg, result_sets
from .core.errors import ConfigError
from .core.model import (
    WEEKDAYS,
    Budgets,
    Campaign,
    Interval,
    ResultCode,
)
from .mailcfg import DEFAULT_REMINDER_EMAIL, EmailText, ReminderEmailCfg
from .scorecfg import ScoringCfg, check_value_fields
from .tlscfg import TcpCfg

DEFAULT_CONFIG = "config/nextcall.toml"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DaemonCfg(_Strict):
    """``[daemon]``: where to listen, where to store, limits."""

    socket: str = "./run/nextcall.sock"
    socket_mode: str = "0660"
    database: str = "sqlite+aiosqlite:///./var/nextcall.db"
    lease_s: Annotated[int, Field(ge=5, le=86_400)] = 300
    max_line_bytes: Annotated[int, Field(ge=1024, le=16 * 1024 * 1024)] = 65_536
    max_inflight: Annotated[int, Field(ge=1, le=10_000)] = 64
    max_count: Annotated[int, Field(ge=1, le=10_000)] = 500
    max_wait_s: Annotated[float, Field(ge=0, le=3600)] = 300.0
    max_import_records: Annotated[int, Field(ge=1, le=1_000_000)] = 5_000
    sqlite_synchronous: Literal["normal", "full"] = "normal"
    drain_timeout_s: Annotated[float, Field(gt=0, le=600)] = 10.0
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    #: "auto": uvloop when installed (20-45 % less time per request), else asyncio
    event_loop: Literal["auto", "asyncio", "uvloop"] = "auto"
    #: connection limits (docs/protocol.md#limits): a burst of connects waits in the
    #: listen queue (capped by the kernel's somaxconn) instead of being refused
    listen_backlog: Annotated[int, Field(ge=1, le=65_535)] = 1024
    max_connections: Annotated[int, Field(ge=1, le=100_000)] = 1000
    #: a request line must be complete this long after its first byte (slowloris)
    partial_line_timeout_s: Annotated[float, Field(gt=0, le=3600)] = 10.0
    #: answers queued for clients that do not read, summed over all connections
    max_buffered_bytes: Annotated[int, Field(ge=65_536, le=1 << 40)] = 64 * 1024 * 1024
    #: how long the agent who disposed may amend its own disposition (``amend``);
    #: supervisors may at any time. A campaign's ``amend_grace_s`` overrides it.
    amend_grace_s: Annotated[int, Field(ge=0, le=30 * 86_400)] = 600

    @field_validator("socket_mode")
    @classmethod
    def _octal(cls, v: str) -> str:
        try:
            mode = int(v, 8)
        except ValueError:
            raise ValueError("must be an octal string such as '0660'") from None
        if not 0 <= mode <= 0o777:
            raise ValueError("must be between 0000 and 0777")
        return v


#: the largest uid or gid (``uid_t`` is 32 bits; -1 means "none")
MAX_ID = 2**32 - 2
PosixId = Annotated[int, Field(ge=0, le=MAX_ID)]
#: an agent name as requests carry it (``protocol.Name``)
AgentName = Annotated[str, Field(min_length=1, max_length=100, pattern=r"^[^\x00-\x1f]+$")]
#: a client certificate's name as ``[auth]`` lists it (``roles.cert_names``)
CertName = Annotated[str, Field(min_length=1, max_length=1024, pattern=r"^[^\x00-\x1f]+$")]


class AuthCfg(_Strict):
    """``[auth]``: who is admin or supervisor, by peer uid/gid (SO_PEERCRED) on the Unix
    socket and by client certificate on TCP."""

    admin_uids: list[int] = []
    admin_gids: list[int] = []
    supervisor_uids: list[int] = []
    supervisor_gids: list[int] = []
    #: the daemon's own uid (and root) are admins: the person who started it owns it
    trust_own_uid: bool = True
    #: ``[auth.acts_for]``: uid -> the agent names that uid may act as (a dialer's list);
    #: composes with ``[agents.NAME] uids`` into one relation (``Bindings``)
    acts_for: dict[PosixId, Annotated[list[AgentName], Field(min_length=1)]] = {}
    #: which records an agent-role peer may read with ``record.get``: ``any``, or only
    #: those ``held`` now or before by a lease its uid took
    record_get: Literal["any", "held"] = "any"
    #: TCP clients by certificate name (subject CN or a SAN DNS, e-mail or URI value):
    #: the admins and supervisors; any other valid certificate is an agent
    cert_admins: list[CertName] = []
    cert_supervisors: list[CertName] = []
    #: ``[auth.cert_acts_for]``: certificate name -> the agent names it may act as (like
    #: ``acts_for`` for uids; the same relation, ``Bindings``)
    cert_acts_for: dict[CertName, Annotated[list[AgentName], Field(min_length=1)]] = {}


METRICS_OFF = "off"


class MetricsCfg(_Strict):
    """``[metrics]``: the Prometheus HTTP endpoint (docs/metrics.md)."""

    enabled: bool = True
    #: ``host:port``; the default keeps the endpoint on the loopback interface.
    #: ``""`` or ``"off"`` disables the endpoint, like ``enabled = false``.
    address: str = "127.0.0.1:9464"
    #: how often the engine gauges are recomputed on the event loop
    refresh_s: Annotated[float, Field(ge=0.1, le=60)] = 1.0
    #: a due callback still waiting this long after its promised time is overdue
    callback_overdue_s: Annotated[int, Field(ge=0, le=86_400)] = 60

    @field_validator("address")
    @classmethod
    def _address(cls, v: str) -> str:
        if v.strip().lower() in ("", METRICS_OFF):
            return METRICS_OFF
        listen_address(v)
        return v.strip()

    @property
    def active(self) -> bool:
        """Whether the daemon serves metrics at all."""
        return self.enabled and self.address != METRICS_OFF


class SmtpCfg(_Strict):
    """``[smtp]``: where callback reminders are e-mailed (docs/configuration.md). Without
    ``host`` no e-mail is sent; reminders still reach subscribed connections."""

    host: str = ""
    port: Annotated[int, Field(ge=1, le=65_535)] = 25
    #: the From address (``from`` in TOML)
    sender: EmailText | None = Field(default=None, alias="from")
    #: upgrade the connection with STARTTLS (submission on port 587)
    starttls: bool = False
    #: implicit TLS from the first byte (SMTPS on port 465)
    ssl: bool = False
    username: str | None = None
    password: str | None = None
    timeout_s: Annotated[float, Field(gt=0, le=300)] = 10.0

    @model_validator(mode="after")
    def _complete(self) -> SmtpCfg:
        if self.host and self.sender is None:
            raise ValueError("from: an [smtp] host needs a From address")
        if self.starttls and self.ssl:
            raise ValueError("starttls and ssl exclude each other (ssl is TLS from the "
                             "start, starttls upgrades a plain connection)")
        if (self.username is None) != (self.password is None):
            raise ValueError("username and password go together")
        return self

    @property
    def active(self) -> bool:
        """Whether reminders are e-mailed."""
        return bool(self.host)


class AgentCfg(_Strict):
    """``[agents.NAME]``: what the daemon knows about an agent beyond its logins."""

    #: where this agent's callback reminders are e-mailed (when ``[smtp]`` is set)
    email: EmailText | None = None
    #: the agent's own zone: reminder e-mails give the callback time in it (none: the
    #: zone the callback was set in)
    timezone: str | None = None
    #: peers that may act as this agent (with ``gids``); none listed: any peer may
    uids: list[PosixId] = []
    #: groups whose member peers may act as this agent; a group confines none of them
    gids: list[PosixId] = []

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str | None) -> str | None:
        return None if v is None else _zone(v)


Cap = Annotated[int, Field(ge=1, le=10_000)]


class BudgetsCfg(_Strict):
    """``[campaigns.X.budgets]``: attempt budgets checked at hand-out (every hand-out is
    an attempt); a key left out is no budget (docs/configuration.md)."""

    #: hand-outs of one record per local day (the record's timezone)
    record_per_day: Cap | None = None
    #: hand-outs of one record within any 24 hours
    record_per_24h: Cap | None = None
    #: hand-outs of one record within any ``record_days`` days (Regulation F: 7 in 7)
    record_per_days: Cap | None = None
    record_days: Annotated[int, Field(ge=1, le=366)] = 7
    #: hand-outs of one number (the one to be dialled) per local day, and within 24 hours
    number_per_day: Cap | None = None
    number_per_24h: Cap | None = None
    #: the least time between two hand-outs of one number
    number_gap_s: Annotated[int, Field(ge=0, le=7 * 86_400)] = 0

    def core(self) -> Budgets | None:
        """The core's ``Budgets``; None when every budget is off (nothing is counted)."""
        b = Budgets(self.record_per_day, self.record_per_24h, self.record_days,
                    self.record_per_days, self.number_per_day, self.number_per_24h,
                    self.number_gap_s)
        return None if b == Budgets(record_days=self.record_days) else b


def _interval(text: str) -> str:
    Interval.parse(text)
    return text


IntervalText = Annotated[str, AfterValidator(_interval)]
Window = dict[Literal[WEEKDAYS], list[IntervalText]]  # type: ignore[valid-type]


class CampaignCfg(_Strict):
    """``[campaigns.X]``."""

    description: str = ""
    enabled: bool = True
    resultset: str
    window: Window = {d: ["09:00-21:00"] for d in WEEKDAYS}
    legal_window: IntervalText = "08:00-21:00"
    holidays: list[date] = []
    max_attempts: Annotated[int, Field(ge=1, le=1000)] = 10
    lease_s: Annotated[int, Field(ge=5, le=86_400)] | None = None
    #: the largest ``count`` of a ``next`` drawing from this campaign (at most, and by
    #: default, ``[daemon] max_count``)
    max_count: Annotated[int, Field(ge=1, le=10_000)] | None = None
    grace_s: Annotated[int, Field(ge=0, le=7 * 86_400)] = 900
    timezone: str = "UTC"
    scoring: ScoringCfg = ScoringCfg()
    #: the callback reminder e-mail of this campaign (none: the shipped default)
    reminder_email: ReminderEmailCfg | None = None
    #: an agent logged in to the campaign may schedule a callback on an open record that
    #: nobody has leased (``callback.schedule`` with ``agent``)
    agent_schedule: bool = False
    #: the agent's time to amend its own disposition (default: ``[daemon] amend_grace_s``)
    amend_grace_s: Annotated[int, Field(ge=0, le=30 * 86_400)] | None = None

    #: attempt budgets at hand-out time (none: no budgets)
    budgets: BudgetsCfg | None = None

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str) -> str:
        return _zone(v)


def _zone(v: str) -> str:
    try:
        ZoneInfo(v)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown IANA timezone {v!r}") from None
    return v


class FileCfg(_Strict):
    """The shape of every config file (the main one may use all keys)."""

    daemon: DaemonCfg = DaemonCfg()
    auth: AuthCfg = AuthCfg()
    metrics: MetricsCfg = MetricsCfg()
    smtp: SmtpCfg = SmtpCfg()
    tcp: TcpCfg = TcpCfg()
    include: list[str] = []
    resultsets: dict[str, ResultSetCfg] = {}
    campaigns: dict[str, CampaignCfg] = {}
    agents: dict[str, AgentCfg] = {}


@dataclass(frozen=True)
class Settings:
    """The validated configuration of one daemon generation."""

    path: str
    daemon: DaemonCfg
    auth: AuthCfg
    campaigns: dict[str, Campaign]
    files: tuple[str, ...] = ()
    resultsets: dict[str, ResultSetCfg] = field(default_factory=dict)
    metrics: MetricsCfg = field(default_factory=MetricsCfg)
    smtp: SmtpCfg = field(default_factory=SmtpCfg)
    agents: dict[str, AgentCfg] = field(default_factory=dict)
    #: the TCP listener (off by default)
    tcp: TcpCfg = field(default_factory=TcpCfg)
    #: campaign -> its own reminder e-mail template (the others use the default)
    reminder_emails: dict[str, ReminderEmailCfg] = field(default_factory=dict)

    def reminder_email(self, campaign: str) -> ReminderEmailCfg:
        """The reminder e-mail template of ``campaign``."""
        return self.reminder_emails.get(campaign, DEFAULT_REMINDER_EMAIL)

    @cached_property
    def bindings(self) -> Bindings | None:
        """Who may act as which agent, from ``auth`` and ``agents``; None when nothing is
        bound (computed once per generation: a reload builds new ``Settings``)."""
        return Bindings.of(self.auth, self.agents)


def _loc(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def _read(path: Path, problems: list[tuple[str, str]]) -> dict[str, Any] | None:
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        problems.append((str(path), "file not found"))
    except tomllib.TOMLDecodeError as exc:
        problems.append((str(path), f"not valid TOML: {exc}"))
    except OSError as exc:
        problems.append((str(path), f"cannot read: {exc.strerror}"))
    return None


def _problems(path: Path, prefix: tuple[Any, ...], exc: ValidationError,
              problems: list[tuple[str, str]]) -> None:
    for err in exc.errors():
        loc = _loc(prefix + tuple(p for p in err["loc"] if p != "[key]"))
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        problems.append((f"{path}: {loc}" if loc else str(path), msg))


def _validate(path: Path, raw: dict[str, Any], problems: list[tuple[str, str]]
              ) -> FileCfg:
    """Validate section by section and entry by entry, so one bad campaign neither hides
    another's problems nor the cross-reference checks of the valid ones."""
    out: dict[str, Any] = {}
    for key in raw:
        if key not in FileCfg.model_fields:
            problems.append((f"{path}: {key}", "unknown key"))
    section_models: tuple[tuple[str, type[BaseModel]], ...] = (
        ("daemon", DaemonCfg), ("auth", AuthCfg), ("metrics", MetricsCfg), ("smtp", SmtpCfg),
        ("tcp", TcpCfg))
    for key, model in section_models:
        if key in raw:
            try:
                out[key] = model.model_validate(raw[key])
            except ValidationError as exc:
                _problems(path, (key,), exc, problems)
    if "include" in raw:
        inc = raw["include"]
        if isinstance(inc, list) and all(isinstance(x, str) for x in inc):
            out["include"] = inc
        else:
            problems.append((f"{path}: include", "must be a list of glob patterns"))
    entry_models: tuple[tuple[str, type[BaseModel]], ...] = (
        ("resultsets", ResultSetCfg), ("campaigns", CampaignCfg), ("agents", AgentCfg))
    for key, model in entry_models:
        section = raw.get(key, {})
        if not isinstance(section, dict):
            problems.append((f"{path}: {key}", "must be a table"))
            continue
        good = {}
        for name, value in section.items():
            try:
                good[name] = model.model_validate(value)
            except ValidationError as exc:
                _problems(path, (key, name), exc, problems)
        out[key] = good
    return FileCfg.model_construct(**{k: v for k, v in out.items()})


def _campaign(name: str, c: CampaignCfg, codes: dict[str, ResultCode], daemon: DaemonCfg
              ) -> Campaign:
    window = tuple(tuple(sorted((Interval.parse(t) for t in c.window.get(d, [])),
                                key=lambda iv: iv.start_min)) for d in WEEKDAYS)
    return Campaign(
        name=name, codes=codes, window=window, legal_window=Interval.parse(c.legal_window),
        holidays=frozenset(c.holidays), max_attempts=c.max_attempts,
        lease_s=c.lease_s or daemon.lease_s, grace_s=c.grace_s, timezone=c.timezone,
        scoring=c.scoring.to_core(),
        enabled=c.enabled, description=c.description, max_count=c.max_count,
        agent_schedule=c.agent_schedule,
        amend_grace_s=c.amend_grace_s if c.amend_grace_s is not None
        else daemon.amend_grace_s,
        budgets=c.budgets.core() if c.budgets is not None else None)


def load(path: str | os.PathLike[str]) -> Settings:
    """Load and validate the configuration rooted at ``path``.

    Raises:
        ConfigError: with every problem found, each as (file: key path, message).
    """
    main = Path(path)
    problems: list[tuple[str, str]] = []
    raw = _read(main, problems)
    if raw is None:
        raise ConfigError(problems)
    top = _validate(main, raw, problems)
    parts = [(main, top), *_included(main, top, problems)]
    merged = _merge(parts, problems)
    sets = result_sets(merged.resultsets, merged.origin, merged.campaigns, problems)
    out: dict[str, Campaign] = {}
    for name, c in merged.campaigns.items():
        where = f"{merged.origin['campaigns.' + name]}: campaigns.{name}"
        if c.resultset not in sets:
            problems.append((f"{where}.resultset", f"no result-code set {c.resultset!r}"))
            continue
        if c.max_count is not None and c.max_count > top.daemon.max_count:
            problems.append((f"{where}.max_count", "must be at most [daemon] max_count "
                             f"({top.daemon.max_count})"))
        problems += [(f"{where}.scoring.{key}", msg)
                     for key, msg in check_value_fields(c.scoring, sets[c.resultset])]
        out[name] = _campaign(name, c, sets[c.resultset], top.daemon)
    if problems:
        raise ConfigError(problems)
    return Settings(path=str(main), daemon=top.daemon, auth=top.auth, campaigns=out,
                    files=tuple(str(p) for p, _ in parts), resultsets=merged.resultsets,
                    metrics=top.metrics, smtp=top.smtp, agents=merged.agents, tcp=top.tcp,
                    reminder_emails={n: c.reminder_email for n, c in merged.campaigns.items()
                                     if c.reminder_email is not None})


def _included(main: Path, top: FileCfg, problems: list[tuple[str, str]]
              ) -> list[tuple[Path, FileCfg]]:
    """The files ``include`` names, validated, in pattern order (each pattern's matches
    sorted); settings only the main file may hold are reported and dropped."""
    parts: list[tuple[Path, FileCfg]] = []
    for i, pattern in enumerate(top.include):
        matches = sorted(glob.glob(str(main.parent / str(pattern))))
        if not matches:
            problems.append((f"{main}: include[{i}]", f"{pattern!r} matches no file"))
        for m in matches:
            p = Path(m)
            sub = _read(p, problems)
            if sub is None:
                continue
            for key in ("daemon", "auth", "metrics", "smtp", "tcp", "include"):
                if key in sub:
                    problems.append((f"{p}: {key}", "only the main file may set this"))
                    sub.pop(key)
            parts.append((p, _validate(p, sub, problems)))
    return parts


@dataclass
class _Merged:
    """The named entries of every file, each defined once, with the file defining it."""

    resultsets: dict[str, ResultSetCfg] = field(default_factory=dict)
    campaigns: dict[str, CampaignCfg] = field(default_factory=dict)
    agents: dict[str, AgentCfg] = field(default_factory=dict)
    #: "kind.name" -> the file that defines it
    origin: dict[str, str] = field(default_factory=dict)


def _merge(parts: list[tuple[Path, FileCfg]], problems: list[tuple[str, str]]) -> _Merged:
    merged = _Merged()
    origin = merged.origin
    for p, cfg in parts:
        for kind, src, dst in (("resultsets", cfg.resultsets, merged.resultsets),
                               ("campaigns", cfg.campaigns, merged.campaigns),
                               ("agents", cfg.agents, merged.agents)):
            for name, value in src.items():
                key = f"{kind}.{name}"
                if key in origin:
                    problems.append((f"{p}: {key}", f"already defined in {origin[key]}"))
                    continue
                origin[key] = str(p)
                dst[name] = value  # type: ignore[assignment]
    return merged
