"""What a lease token stands for besides the live lease: its random secret, and what
became of the lease once it ended (so a retried request gets the same answer)."""

from __future__ import annotations

import base64
import os
from dataclasses import dataclass

from ..errors import BadRequest

#: lease numbers are stored as 64-bit integers (SQLite INTEGER, PostgreSQL bigint): a
#: larger one cannot exist, and a database lookup of it would overflow
MAX_LID = (1 << 63) - 1

#: ended leases remembered for idempotent retries and precise errors (older ones are
#: looked up in the database)
ENDED_MEMORY = 20_000


@dataclass(slots=True)
class EndedLease:
    """What became of a lease, for retried requests (``result``: the answer's JSON)."""

    secret: str
    kind: str  # disposed | released | expired
    result: bytes | None = None
    code: str | None = None


class Secrets:
    """Lease secrets: 12 random bytes each (16 URL-safe characters), taken from a block
    read from the system's CSPRNG 512 leases at a time, not one system call per lease
    (the same randomness as ``secrets.token_urlsafe(12)``)."""

    __slots__ = ("_block", "_pos")
    SIZE = 12
    BLOCK = 512

    def __init__(self) -> None:
        self._block = b""
        self._pos = 0

    def __call__(self) -> str:
        pos = self._pos
        if pos >= len(self._block):
            self._block, pos = os.urandom(self.SIZE * self.BLOCK), 0
        self._pos = pos + self.SIZE
        return base64.urlsafe_b64encode(self._block[pos:pos + self.SIZE]).decode()


def parse_token(token: str) -> tuple[int, str]:
    """Split a lease token ``<lid>.<secret>`` into (lid, secret).

    ``lid`` must be ASCII digits (``str.isdigit`` also accepts other scripts' digits and
    superscripts, which ``int`` refuses) and fit in 64 bits.

    Raises:
        BadRequest: malformed token, or a lease number no lease can have (field ``lease``).
    """
    lid_s, _, secret = token.partition(".")
    if not (lid_s.isascii() and lid_s.isdigit()) or not secret:
        raise BadRequest("lease must be a token as returned by next", field="lease")
    lid = int(lid_s)
    if lid > MAX_LID:
        raise BadRequest("lease must be a token as returned by next (its number is "
                         "out of range)", field="lease")
    return lid, secret
