"""One exception root for everything a client can be told.

Each subclass carries its wire ``code`` (docs/protocol.md) and a default message (its docstring's
first line), so raising ``NotFound(field="record")`` is enough to produce a complete answer.
The core raises these too: they are plain data, not I/O.
"""

from __future__ import annotations


class NextcallError(Exception):
    """Something went wrong."""

    code = "internal"

    def __init__(self, message: str | None = None, *, field: str | None = None) -> None:
        self.message = message or (type(self).__doc__ or self.code).strip().splitlines()[0]
        self.field = field
        super().__init__(self.message)

    def to_wire(self) -> dict[str, str]:
        """The ``error`` object of a failed response."""
        err = {"code": self.code, "message": self.message}
        if self.field is not None:
            err["field"] = self.field
        return err


class BadJson(NextcallError):
    """The request line is not valid UTF-8 JSON."""

    code = "bad_json"


class BadRequest(NextcallError):
    """The request is malformed."""

    code = "bad_request"


class UnknownOp(NextcallError):
    """Unknown operation."""

    code = "unknown_op"


class TooLarge(NextcallError):
    """The request line exceeds the size limit."""

    code = "too_large"


class NotFound(NextcallError):
    """No such object."""

    code = "not_found"


class NotLoggedIn(NextcallError):
    """The agent is not logged in and the request names no campaigns."""

    code = "not_logged_in"


class UnknownCampaign(NextcallError):
    """No such campaign."""

    code = "unknown_campaign"


class LeaseExpired(NextcallError):
    """The lease has expired; the record went back to the pool unchanged."""

    code = "lease_expired"


class LeaseEnded(NextcallError):
    """The lease was already released or disposed."""

    code = "lease_ended"


class NotLeaseHolder(NextcallError):
    """Only the lease holder may do this."""

    code = "not_lease_holder"


class UnknownCode(NextcallError):
    """The result code is not in this campaign's set."""

    code = "unknown_code"


class CodeDisabled(NextcallError):
    """The result code is disabled (passive) and cannot be used."""

    code = "code_disabled"


class CallbackRequired(NextcallError):
    """This result code needs a callback date and time."""

    code = "callback_required"


class AssignNotAllowed(NextcallError):
    """This result code does not let a callback be given to another agent."""

    code = "assign_not_allowed"


class AppointmentRequired(NextcallError):
    """This result code needs an appointment date."""

    code = "appointment_required"


class RevenueRequired(NextcallError):
    """This result code needs a revenue amount greater than 0."""

    code = "revenue_required"


class NoteRequired(NextcallError):
    """This result code needs a note."""

    code = "note_required"


class InvalidTime(NextcallError):
    """The local time does not exist or is ambiguous in that timezone."""

    code = "invalid_time"


class OutsideLegalWindow(NextcallError):
    """The time is outside the legal calling window, which nothing overrides."""

    code = "outside_legal_window"


class OutsideCallingWindow(NextcallError):
    """The time is outside the campaign's calling window (set override_window to allow it)."""

    code = "outside_calling_window"


class Forbidden(NextcallError):
    """Your peer credentials do not allow this operation."""

    code = "forbidden"


class Unavailable(NextcallError):
    """The daemon cannot serve this now (starting, stopping or storage failing)."""

    code = "unavailable"


class Conflict(NextcallError):
    """The request conflicts with the record's current state."""

    code = "conflict"


class MovedOn(NextcallError):
    """The record has moved on since the disposition: it cannot be amended."""

    code = "moved_on"


class AmendGraceOver(NextcallError):
    """The agent's time to amend its own disposition is over; a supervisor may."""

    code = "amend_grace_over"


class StorageError(NextcallError):
    """The database failed; nothing was acknowledged."""

    code = "unavailable"


class ConfigError(NextcallError):
    """The configuration is invalid."""

    code = "bad_config"

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        self.problems = problems
        text = "; ".join(f"{path}: {msg}" for path, msg in problems)
        super().__init__(f"invalid configuration: {text}")
