"""Where a callback stands against its promised time, as the ``callbacks`` listing and its
views report it (the engine itself routes on the grace period when selecting), and which
of a campaign's due-callback heaps hold it (placement and ``explain`` read one answer)."""

from __future__ import annotations


def callback_standing(due_at: float, grace_s: float, now: float,
                      deadline: float | None = None) -> tuple[str, float]:
    """Where a callback stands at ``now``, and how many seconds late it is.

    ``upcoming``: not due yet (0 s late). ``due``: due and waiting for at most the
    campaign's grace period (the time a personal-then-team callback waits for its owner).
    ``overdue``: waiting longer than that. A callback window (``deadline``: its end) is
    late only from its end on.
    """
    if due_at > now:
        return "upcoming", 0.0
    late_s = max(now - (due_at if deadline is None else deadline), 0.0)
    return ("overdue" if late_s > grace_s else "due"), late_s


def callback_route(scope: str, owner: str | None, team: str | None
                   ) -> tuple[str | None, str | None, bool]:
    """The heaps a due callback goes to: the owner's personal heap (its name or None),
    the team heap (its name or None), and whether the campaign's ``anyone`` heap."""
    personal = owner if scope in ("personal", "personal_then_team") and owner else None
    if scope in ("team", "personal_then_team") and team:
        return personal, team, False
    anyone = scope == "anyone" or (scope == "personal_then_team" and not team) \
        or (scope == "personal" and not owner)
    return personal, None, anyone
