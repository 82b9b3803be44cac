"""Who may bring back a closed record: the roles its closing code names.

A person reopens a closed record through ``record.reopen`` or ``callback.schedule``; both
ask here. The answer depends on the result code that closed it (its ``reopen_roles``,
or its action's default) so that, for instance, a record closed for good is an admin's
to reopen while a supervisor may bring back one closed until the list is reloaded. A list
reload reopening ``until_reload`` records is that code's own promise, not a person's
choice, and is not governed by these roles.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from .model import ResultCode
from .records import Record

#: the roles ``reopen_roles`` may name (agents reopen only through ``reopen_teams``)
REOPEN_ROLES = ("supervisor", "admin")
_ADMIN = ("admin",)
_STAFF = ("supervisor", "admin")

#: who reopens a record closed by a code of each action, unless the code says otherwise;
#: an action absent here never closes a record, so its codes take no ``reopen_roles``
DEFAULT_REOPEN_ROLES: dict[str, tuple[str, ...]] = {
    "close": _ADMIN,  # "it will stay closed unless ... an administrator reopens it"
    "dnc": _ADMIN,  # the callee asked never to be called
    "remove_number": _ADMIN,  # closes ``no_numbers``: nothing left to dial
    "block_number": _ADMIN,
    "close_until_reload": _STAFF,
    "special": _STAFF,  # and the code's reopen_teams, by setting a callback
    "retry": _STAFF,  # closes ``exhausted`` after the last allowed attempt
}

#: by close reason, for a record whose closing code is no longer configured
_BY_REASON: dict[str, tuple[str, ...]] = {
    "final": _ADMIN, "dnc": _ADMIN, "no_numbers": _ADMIN, "admin": _ADMIN,
    "until_reload": _STAFF, "special": _STAFF, "exhausted": _STAFF,
}


def closing_code(rec: Record, history: Iterable[Mapping[str, Any]],
                 codes: Mapping[str, ResultCode]) -> ResultCode | None:
    """The configured result code whose disposition closed ``rec`` (the latest history
    entry that left it closed), or None: not closed, closed by no code, or by a code
    that is no longer configured or no longer closes records."""
    if rec.state != "closed":
        return None
    for h in reversed(list(history)):
        if h.get("state") == "closed":
            rc = codes.get(str(h.get("code")))
            return rc if rc is not None and rc.reopen_roles else None
    return None


def reopen_roles(rec: Record, code: ResultCode | None) -> tuple[str, ...]:
    """The roles that may reopen closed ``rec``: its closing code's, else those its close
    reason has by default (admin alone for a reason not listed)."""
    if code is not None and code.reopen_roles:
        return code.reopen_roles
    return _BY_REASON.get(rec.reason or "final", _ADMIN)
