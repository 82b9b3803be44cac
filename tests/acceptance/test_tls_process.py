"""``nextcall serve`` with ``[tcp]`` as a real process, on each event loop: clients with
certificates are served over TLS, refused handshakes leave one log line and no traceback,
and SIGTERM still stops the daemon cleanly with TLS clients connected."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.integration.tls import LOOPS, Client, make_pki, refused_in_handshake, tls_config

BIN = Path(sys.executable).parent / "nextcall"


def tcp_port(log: Path, p: subprocess.Popen[bytes], timeout_s: float = 60) -> int:
    """The port the daemon logged (``tcp_listening``), once it serves."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        text = log.read_text(errors="replace")
        found = re.search(r"tcp_listening address=\S+ port=(\d+)", text)
        if found and "daemon_ready" in text:
            return int(found.group(1))
        assert p.poll() is None, text
        time.sleep(0.05)
    raise AssertionError(f"no daemon_ready: {log.read_text(errors='replace')}")


@pytest.mark.parametrize("loop", LOOPS)
def test_the_daemon_process_serves_tls_and_refuses_quietly(tmp_path: Path, loop: str
                                                           ) -> None:
    if loop == "uvloop":
        pytest.importorskip("uvloop")
    pki = make_pki(tmp_path)
    cfg = tls_config(tmp_path, pki, extra_daemon=f'event_loop = "{loop}"')
    log = tmp_path / "daemon.log"
    with log.open("wb") as out:
        p = subprocess.Popen([str(BIN), "--config", str(cfg), "serve"], stdout=out,
                             stderr=subprocess.STDOUT)
    try:
        port = tcp_port(log, p)
        agent = Client(port, pki, pki.alice)
        pong = agent.ok("ping")
        assert (pong["role"], pong["transport"]) == ("agent", "tls")
        for cert in (None, pki.forged, None):
            refused_in_handshake(port, pki, cert)
        assert agent.ok("ping")["cert_names"] == ["alice", "alice@example.com"]
        p.send_signal(signal.SIGTERM)  # with a TLS client still connected
        assert p.wait(60) == 0, log.read_text()
        agent.close()
    finally:
        if p.poll() is None:
            p.kill()
            p.wait(10)
    text = log.read_text(errors="replace")
    assert f"event_loop_selected loop={loop}" in text
    assert len(re.findall(r"tls_handshake_failed reason=PEER_DID_NOT_RETURN_A_CERTIFICATE",
                          text)) == 1, text
    assert "Traceback" not in text and "exception" not in text.lower(), text
    assert "daemon_stopped exit=0" in text
