"""Agent logins, as the engine keeps them to scope hand-outs and route callbacks."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class AgentSession:
    """An agent's login: which campaigns and teams it works."""

    agent: str
    campaigns: tuple[str, ...]
    teams: tuple[str, ...]
    logged_in: bool = True
