"""Network addresses in the configuration: ``host:port`` (``[v6]:port`` for IPv6), and
whether a host is the loopback interface. Standard library only; ``config`` (metrics) and
``tlscfg`` (the TCP listener) both read them."""

from __future__ import annotations

import ipaddress
import re

_HOSTNAME = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?$")


def listen_address(text: str) -> tuple[str, int]:
    """Split ``host:port`` (``[v6]:port`` for IPv6) into host and port.

    Raises:
        ValueError: no host, no port, or either is malformed.
    """
    host, sep, port_text = text.strip().rpartition(":")
    if not sep or not host:
        raise ValueError("must be 'host:port', such as '127.0.0.1:9464' or '[::1]:9464'")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"{host!r} is not an IPv6 address") from None
    elif ":" in host:
        raise ValueError("an IPv6 address goes in brackets, such as '[::1]:9464'")
    elif not _HOSTNAME.match(host):
        raise ValueError(f"{host!r} is not a host name or IP address")
    if not port_text.isdigit() or int(port_text) > 65_535:
        raise ValueError(f"port {port_text!r} must be a number from 0 to 65535")
    return host, int(port_text)


def is_loopback(host: str) -> bool:
    """Whether ``host`` (as ``listen_address`` returns it) is this machine's loopback
    interface: ``localhost``, 127.0.0.0/8 or ::1. Other names are not resolved: a name
    that only happens to point at 127.0.0.1 today is not trusted to stay there."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
