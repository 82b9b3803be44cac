"""File modes of what the daemon creates: the SQLite database holds lease secrets and
phone numbers, so it and its directories are for the daemon's user only, whatever umask
the daemon was started with. SQLite gives ``-wal``, ``-shm`` and journal files the mode
of the database file, so creating that file ``0600`` covers them. Standard library only.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from pathlib import Path

logger = logging.getLogger(__name__)

PRIVATE_FILE = 0o600
PRIVATE_DIR = 0o700
#: the umask the ``serve``, ``migrate`` and ``demo`` commands add to the one they inherit
PRIVATE_UMASK = 0o077
#: the files of a SQLite database (the database itself, then its companions)
SQLITE_SUFFIXES = ("", "-wal", "-shm")


def restrict_umask() -> None:
    """Add ``PRIVATE_UMASK`` to the process umask (it is never loosened), so that anything
    a library creates is private too."""
    os.umask(os.umask(PRIVATE_UMASK) | PRIVATE_UMASK)


def make_dirs(path: str | Path, mode: int = PRIVATE_DIR) -> None:
    """Create ``path`` and its missing parents with exactly ``mode`` (not cut by the
    umask). Directories that exist are left as they are: they may be shared (``/run``,
    a systemd ``StateDirectory=``) and are the administrator's to set."""
    missing: list[Path] = []
    p = Path(os.path.abspath(path))
    while not p.exists():
        missing.append(p)
        p = p.parent
    for d in reversed(missing):
        try:
            os.mkdir(d, mode)
        except FileExistsError:
            continue  # made meanwhile by someone else: theirs
        os.chmod(d, mode)


def socket_dir_mode(socket_mode: int) -> int:
    """The mode of a socket directory the daemon creates: the owner's, plus search (never
    listing) for the group and others when ``socket_mode`` lets them reach the socket."""
    mode = PRIVATE_DIR
    if socket_mode & 0o060:
        mode |= 0o010
    if socket_mode & 0o006:
        mode |= 0o001
    return mode


def create_private(path: str | Path) -> bool:
    """Create ``path`` empty with mode ``0600`` unless it exists; whether it did. SQLite
    takes an empty file for an empty database, and gives its companions this mode."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC,
                     PRIVATE_FILE)
    except FileExistsError:
        return False
    try:
        os.fchmod(fd, PRIVATE_FILE)  # exactly, whatever the umask
    finally:
        os.close(fd)
    return True


def open_to_others(paths: Iterable[str | Path]) -> list[tuple[str, int]]:
    """``(path, mode)`` of each existing file in ``paths`` that its group or others may
    read or write."""
    found = []
    for path in paths:
        try:
            mode = os.stat(path).st_mode & 0o7777
        except FileNotFoundError:
            continue
        if mode & 0o077:
            found.append((str(path), mode))
    return found


def warn_if_open(paths: Iterable[str | Path]) -> list[tuple[str, int]]:
    """Log ``storage_files_readable`` for each of ``paths`` its group or others may read
    (a database made before the daemon created it private, or copied in); what it found.
    The daemon does not change them: the administrator may share them on purpose."""
    found = open_to_others(paths)
    for path, mode in found:
        logger.warning("storage_files_readable path=%s mode=%04o fix=\"chmod 600 %s\"",
                       path, mode, path)
    return found
