"""``[tcp]``: the optional TCP listener, TLS with client certificates by default
(docs/configuration.md#tcp).

Every file is loaded when the configuration is: a certificate that does not parse, a key
that is not the certificate's, or a CA file without a certificate is a config error naming
its key, found by ``nextcall check`` or a reload instead of at the first handshake.
Plaintext is for tests on the loopback interface only: anything that reaches the network
must prove who it is.
"""

from __future__ import annotations

import ssl
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from .addresses import is_loopback, listen_address

#: TLS below 1.2 has known weaknesses and no client of ours needs it
MIN_TLS = ssl.TLSVersion.TLSv1_2


class EncryptedKey(ValueError):
    """The key file asks for a password: the daemon has no one to ask."""


def _no_password() -> bytes:
    # without a callback, OpenSSL would prompt on the terminal (and block the daemon)
    raise EncryptedKey("the key is encrypted; give the daemon an unencrypted key file "
                       "(readable by the daemon only)")


def _why(exc: Exception) -> str:
    """An OpenSSL or OS error as one short phrase."""
    if isinstance(exc, ssl.SSLError):  # an OSError too, its strerror OpenSSL's whole text
        return (exc.reason or str(exc)).lower().replace("_", " ")
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    return str(exc)


def load_certificate(path: str) -> None:
    """Check that ``path`` holds at least one PEM certificate.

    Raises:
        ValueError: it cannot be read or holds none.
    """
    probe = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    try:
        probe.load_verify_locations(cafile=path)
    except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
        raise ValueError(f"cannot load a certificate from {path!r}: {_why(exc)}") from None


def _readable(path: str) -> None:
    try:
        with open(path, "rb"):
            pass
    except OSError as exc:
        raise ValueError(f"cannot read {path!r}: {_why(exc)}") from None


def load_key_pair(certfile: str, keyfile: str, ctx: ssl.SSLContext | None = None) -> None:
    """Load the certificate and its private key (into ``ctx``, or a throwaway context).

    Raises:
        ValueError: the key cannot be read, is encrypted, or is not the certificate's.
    """
    target = ctx if ctx is not None else ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        target.load_cert_chain(certfile, keyfile, password=_no_password)
    except EncryptedKey as exc:
        raise ValueError(str(exc)) from None
    except (OSError, ValueError) as exc:
        why = _why(exc)
        if isinstance(exc, ssl.SSLError) and exc.reason == "KEY_VALUES_MISMATCH":
            why = "it is not the private key of tcp.certfile"
        raise ValueError(f"cannot load the private key {keyfile!r}: {why}") from None


class TcpCfg(BaseModel):
    """``[tcp]``: where to listen for TCP clients and how they prove who they are.

    Fields are validated in this order, each seeing the ones before it (``info.data``), so
    that every problem is reported under its own key.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: ``host:port``; empty: no TCP listener (the default)
    listen: str = ""
    #: no TLS: only on a loopback address (tests, a local proxy that terminates TLS)
    plaintext: bool = False
    #: the daemon's certificate (PEM; the chain may follow it in the same file)
    certfile: str | None = Field(default=None, validate_default=True)
    #: the certificate's private key (PEM, unencrypted)
    keyfile: str | None = Field(default=None, validate_default=True)
    #: the CA (PEM, one or more) that signs client certificates
    client_cafile: str | None = Field(default=None, validate_default=True)

    @field_validator("listen")
    @classmethod
    def _listen(cls, v: str) -> str:
        v = v.strip()
        if v:
            listen_address(v)
        return v

    @field_validator("plaintext")
    @classmethod
    def _plaintext(cls, v: bool, info: ValidationInfo) -> bool:
        listen = info.data.get("listen")
        if v and listen and not is_loopback(listen_address(listen)[0]):
            raise ValueError("plaintext TCP is allowed only on a loopback address "
                             "(127.0.0.0/8, ::1, localhost); anything that reaches the "
                             "network uses TLS with client certificates")
        return v

    @field_validator("certfile", "keyfile", "client_cafile")
    @classmethod
    def _files(cls, v: str | None, info: ValidationInfo) -> str | None:
        name = info.field_name
        data: dict[str, Any] = info.data
        # absent when listen or plaintext were refused: check what is given, require nothing
        plaintext = data.get("plaintext")
        if plaintext and v is not None:
            raise ValueError("not used with plaintext = true (remove it, or use TLS)")
        if v is None:
            if plaintext is False and data.get("listen"):
                raise ValueError("required with [tcp] listen: TLS needs certfile, keyfile "
                                 "and client_cafile (or plaintext = true on loopback)")
            return v
        if name != "keyfile":
            load_certificate(v)
        elif data.get("certfile") is not None:
            load_key_pair(data["certfile"], v)
        else:
            _readable(v)  # the certificate's problem is reported under certfile
        return v

    @property
    def active(self) -> bool:
        """Whether the daemon listens on TCP at all."""
        return bool(self.listen)

    @property
    def tls(self) -> bool:
        """Whether TCP clients speak TLS (and present a certificate)."""
        return not self.plaintext

    def address(self) -> tuple[str, int]:
        """The host and port to listen on."""
        return listen_address(self.listen)
