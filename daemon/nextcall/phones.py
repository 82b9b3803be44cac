"""Phone numbers: E.164 normalisation and the timezone a number implies (phonenumbers)."""

from __future__ import annotations

import phonenumbers
from phonenumbers import timezone as pn_timezone

from .core.errors import BadRequest

_UNKNOWN_ZONE = "Etc/Unknown"


def normalise(raw: str, field: str, default_region: str | None = None) -> str:
    """``raw`` as E.164.

    Raises:
        BadRequest: not a valid number (naming ``field``).
    """
    try:
        num = phonenumbers.parse(raw, default_region)
    except phonenumbers.NumberParseException as exc:
        raise BadRequest(f"{raw!r} is not a phone number ({exc._msg}); use E.164 such as "
                         "+31201234567", field=field) from None
    if not phonenumbers.is_valid_number(num):
        raise BadRequest(f"{raw!r} is not a valid number", field=field)
    return phonenumbers.format_number(num, phonenumbers.PhoneNumberFormat.E164)


def zones_for(e164: str) -> list[str]:
    """IANA zones a number may be in (empty when unknown)."""
    num = phonenumbers.parse(e164, None)
    return [z for z in pn_timezone.time_zones_for_number(num) if z != _UNKNOWN_ZONE]


def derive_timezone(phones: list[str], fallback: str) -> str:
    """The record's timezone when the importer gives none.

    Rule (docs/configuration.md): the zones of the first number that maps to any; if that
    number spans several zones, the campaign's timezone when it is one of them, else the
    first in phonenumbers' (alphabetical) list; no number maps to a zone -> the campaign's.
    """
    for p in phones:
        zs = zones_for(p)
        if len(zs) == 1:
            return zs[0]
        if zs:
            return fallback if fallback in zs else zs[0]
    return fallback
