"""Online backup and restore of the SQLite database, exactly as docs/operations.md says:
a backup taken while the daemon is committing is a consistent snapshot (every write
acknowledged before it started, and otherwise a prefix of the writes in commit order), and
a daemon started on the restored file serves the backed-up records and nothing newer."""

from __future__ import annotations

import os
import shlex
import shutil
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from nextcall.client import Client, ClientError
from nextcall.config import FileCfg
from tests.acceptance.test_daemon_process import Proc
from tests.conftest import write_config

ROOT = Path(__file__).resolve().parents[2]
OPERATIONS = ROOT / "docs" / "operations.md"
REQUIRE_TOOLS = os.environ.get("NEXTCALL_REQUIRE_TOOLS") == "1"
N_INITIAL = 200
BATCH = 5

#: the backup commands of docs/operations.md, with the paths as placeholders
DOC_DB = "/var/lib/nextcall/nextcall.db"
BACKUPS = {
    "vacuum_into": "sqlite3 {db} \"VACUUM INTO '{dest}'\"",
    "python_api": ("{python} -c 'import sqlite3, sys; src = sqlite3.connect(sys.argv[1]); "
                   "dst = sqlite3.connect(sys.argv[2]); src.backup(dst); dst.close()' "
                   "{db} {dest}"),
}


def records(start: int, n: int, prefix: str) -> list[dict[str, Any]]:
    """Records with distinct valid Dutch mobile numbers."""
    return [{"id": f"{prefix}{i}", "phones": [f"+3161{i:07d}"], "timezone": "UTC"}
            for i in range(start, start + n)]


class Writer(threading.Thread):
    """Imports batches of new records and disposes leases until stopped; ``acked`` lists
    the ids the daemon acknowledged (committed), in order."""

    def __init__(self, sock: str) -> None:
        super().__init__(daemon=True)
        self.sock = sock
        self.acked: list[str] = []
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        i = 100_000
        try:
            with Client(self.sock, timeout=30) as c:
                c.call("agent.login", agent="w", campaigns=["t"])
                while not self.stop.is_set():
                    batch = records(i, BATCH, "w")
                    i += BATCH
                    assert c.call("records.import", campaign="t", list="w",
                                  records=batch)["inserted"] == BATCH
                    with self.lock:
                        self.acked += [r["id"] for r in batch]
                    for lz in c.call("next", agent="w", count=2)["leases"]:
                        c.call("dispose", lease=lz["token"], code="NA")
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            self.error = exc

    def snapshot(self) -> list[str]:
        with self.lock:
            return list(self.acked)


def wait_for_progress(w: Writer, beyond: int, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while len(w.snapshot()) <= beyond:
        assert w.error is None, w.error
        assert time.monotonic() < deadline, "the writer made no progress"
        time.sleep(0.01)


@pytest.fixture
def proc(tmp_path: Path) -> Iterator[Proc]:
    cfg = write_config(tmp_path)
    text = cfg.read_text()
    if "metrics" in FileCfg.model_fields and "[metrics]" not in text:
        # no Prometheus endpoint: two daemons in a row must not race for its port
        cfg.write_text(text + "\n[metrics]\nenabled = false\n")
    p = Proc(cfg)
    p.start()
    yield p
    if p.p is not None and p.p.poll() is None:
        p.p.kill()
        p.p.wait(10)


def backup_command(method: str, db: Path, dest: Path) -> str:
    if method == "vacuum_into" and shutil.which("sqlite3") is None:
        reason = "the sqlite3 command-line shell is not installed (apt-get install sqlite3)"
        if REQUIRE_TOOLS:
            pytest.fail(reason + " (required: NEXTCALL_REQUIRE_TOOLS=1)")
        pytest.skip(reason)
    python = Path(sys.executable).parent / "python"
    return BACKUPS[method].format(db=shlex.quote(str(db)), dest=shlex.quote(str(dest)),
                                  python=python)


def test_the_documented_commands_are_the_tested_ones() -> None:
    doc = OPERATIONS.read_text()
    assert BACKUPS["vacuum_into"].format(db=DOC_DB, dest="") .rstrip("'\"") in doc
    assert BACKUPS["python_api"].format(python="/opt/nextcall/.venv/bin/python", db=DOC_DB,
                                        dest="/var/backups/nextcall/nextcall.db") in doc
    assert "mv /var/lib/nextcall/nextcall.db* /var/lib/nextcall/before-restore/" in doc


@pytest.mark.parametrize("method", list(BACKUPS))
def test_online_backup_then_restore_into_a_fresh_daemon(proc: Proc, tmp_path: Path,
                                                        method: str) -> None:
    db = proc.config.parent / "db.sqlite"
    with Client(proc.sock) as c:
        assert c.call("records.import", campaign="t", list="l",
                      records=records(0, N_INITIAL, "r"))["inserted"] == N_INITIAL
    writer = Writer(proc.sock)
    writer.start()
    wait_for_progress(writer, beyond=20 * BATCH)

    dest = tmp_path / "backup" / "nextcall.db"
    dest.parent.mkdir()
    before = writer.snapshot()
    r = subprocess.run(backup_command(method, db, dest), shell=True, capture_output=True,
                       text=True, timeout=300, check=False)
    after = writer.snapshot()
    assert r.returncode == 0, r.stderr
    # the daemon kept committing: the backup did not block it
    wait_for_progress(writer, beyond=len(after))
    writer.stop.set()
    writer.join(30)
    assert writer.error is None, writer.error

    if method == "vacuum_into":
        again = subprocess.run(backup_command(method, db, dest), shell=True,
                               capture_output=True, text=True, timeout=300, check=False)
        assert again.returncode != 0, "VACUUM INTO must refuse to overwrite a backup"
    con = sqlite3.connect(dest)
    assert con.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    ids = {row[0] for row in con.execute("SELECT id FROM records")}
    con.close()
    assert {r["id"] for r in records(0, N_INITIAL, "r")} <= ids
    written = [i for i in writer.snapshot() if i in ids]
    # a snapshot: everything acknowledged before the backup began, then a prefix of the
    # later writes in the order they were committed (at most one batch in flight at the end)
    assert set(before) <= ids, "an acknowledged write is missing from the backup"
    assert written == writer.snapshot()[:len(written)], "the backup is not a snapshot"
    assert len(written) <= len(after) + BATCH
    n_backup = len(ids)

    # newer than the backup: must be gone after the restore
    with Client(proc.sock) as c:
        assert c.call("records.import", campaign="t", list="late",
                      records=records(900_000, 3, "late"))["inserted"] == 3
        c.call("agent.login", agent="late-agent", campaigns=["t"])
        late_lease = c.call("next", agent="late-agent")["leases"][0]["token"]
    assert proc.term() == 0

    # restore, as docs/operations.md does it (systemctl stop, move aside, install, start)
    state = db.parent
    aside = state / "before-restore"
    aside.mkdir()
    for f in state.glob(db.name + "*"):  # the database and any -wal / -shm with it
        f.rename(aside / f.name)
    shutil.copyfile(dest, db)
    os.chmod(db, 0o600)
    assert not list(state.glob(db.name + "-*")), "no -wal or -shm next to the restored file"

    proc.start()
    with Client(proc.sock) as c:
        assert c.call("ping")["records"] == n_backup
        assert c.call("record.get", record="r0")["record"]["id"] == "r0"
        assert c.call("record.get", record=written[-1])["record"]["id"] == written[-1]
        with pytest.raises(ClientError) as err:
            c.call("record.get", record="late900000")
        assert err.value.code == "not_found"
        # a lease handed out after the backup is unknown to the restored daemon
        with pytest.raises(ClientError) as late:
            c.call("dispose", lease=late_lease, code="NA")
        assert late.value.code == "not_found"
        # it serves them: hand one out and dispose it
        c.call("agent.login", agent="alice", campaigns=["t"])
        lease = c.call("next", agent="alice")["leases"][0]
        assert lease["record"]["id"] in ids
        c.call("dispose", lease=lease["token"], code="SALE", revenue=1)
    assert proc.term() == 0


def test_migrate_on_a_backup_copy_reports_the_schema_state(proc: Proc, tmp_path: Path) -> None:
    """The upgrade rehearsal of docs/operations.md: `nextcall migrate` against a copy."""
    db = proc.config.parent / "db.sqlite"
    dest = tmp_path / "rehearsal" / "nextcall.db"
    dest.parent.mkdir()
    subprocess.run(backup_command("python_api", db, dest), shell=True, check=True,
                   timeout=120)
    assert proc.term() == 0
    cfg = tmp_path / "rehearsal" / "nextcall.toml"
    cfg.write_text(proc.config.read_text().replace(str(db), str(dest))
                   .replace('include = ["codes.toml", "camps.toml"]',
                            f'include = ["{proc.config.parent}/codes.toml", '
                            f'"{proc.config.parent}/camps.toml"]'))
    nextcall = Path(sys.executable).parent / "nextcall"
    r = subprocess.run([str(nextcall), "--config", str(cfg), "migrate"], capture_output=True,
                       text=True, timeout=120, check=False)
    assert r.returncode == 0 and "schema up to date" in r.stdout, r.stdout + r.stderr
    fresh = tmp_path / "rehearsal" / "fresh.toml"
    fresh.write_text(cfg.read_text().replace(str(dest), str(tmp_path / "rehearsal/new.db")))
    r = subprocess.run([str(nextcall), "--config", str(fresh), "migrate"],
                       capture_output=True, text=True, timeout=120, check=False)
    assert r.returncode == 0 and r.stdout.startswith("migrated: empty -> "), r.stdout
