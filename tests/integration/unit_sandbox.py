"""Run a command under the restrictions nextcall.service asks systemd for, without systemd.

    python unit_sandbox.py --syscalls FILE [--rw DIR ...] [--ro DIR ...] -- COMMAND ...

The test suite has no systemd as PID 1, so this helper applies, in order, what systemd's
exec step would apply for the unit, then ``execve``s the command (the pid stays the same,
so ``LISTEN_PID`` from systemd-socket-activate still matches):

- a private mount namespace (PrivateMounts=yes) where every mount is read-only
  (ProtectSystem=strict) except the ``--rw`` directories (StateDirectory=); a fresh /tmp
  and /var/tmp (PrivateTmp=yes), where only the ``--rw`` and ``--ro`` directories (say, a
  checkout under /tmp) stay visible; a /dev with only null, zero, full, random, urandom and
  tty (PrivateDevices=yes); a /proc mounted ``hidepid=invisible`` (ProtectProc=invisible);
  umask 0077 (UMask=0077);
- an empty capability bounding set (CapabilityBoundingSet=) and no_new_privs
  (NoNewPrivileges=yes);
- seccomp filters, each as systemd builds them (src/shared/seccomp-util.c): the syscall
  allow list read from FILE (default action: kill the process, as SystemCallFilter= does),
  MemoryDenyWriteExecute=yes (EPERM for mmap with PROT_WRITE|PROT_EXEC, mprotect and
  pkey_mprotect with PROT_EXEC, shmat with SHM_EXEC; plus the kernel's PR_SET_MDWE where
  available, which newer systemd versions use), and RestrictAddressFamilies=AF_UNIX
  AF_INET AF_INET6 (EAFNOSUPPORT for any other family).

Not emulated: IPAddressDeny= (cgroup BPF), the non-root user (the test venv lives under
/root), ProtectKernel*/ProtectClock/ProtectHostname (they only deny what the daemon never
does). Linux and root only; it needs libseccomp.so.2.
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import errno
import os
import sys

# <linux/sched.h>, <sys/mount.h>, <linux/mount.h>, <linux/prctl.h>
CLONE_NEWNS, CLONE_NEWUSER = 0x00020000, 0x10000000
SERVICE_UID = 990
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_BIND, MS_REC, MS_PRIVATE = 4096, 16384, 1 << 18
AT_FDCWD, AT_RECURSIVE = -100, 0x8000
MOUNT_ATTR_RDONLY = 0x1
SYS_MOUNT_SETATTR = 442  # same number on every architecture
PR_CAPBSET_DROP, PR_SET_NO_NEW_PRIVS, PR_SET_MDWE = 24, 38, 65
PR_MDWE_REFUSE_EXEC_GAIN = 1
PROT_WRITE, PROT_EXEC = 0x2, 0x4
SHM_EXEC = 0o100000

# <seccomp.h>
SCMP_ACT_KILL_PROCESS = 0x80000000
SCMP_ACT_ALLOW = 0x7FFF0000
SCMP_CMP_EQ, SCMP_CMP_GE, SCMP_CMP_MASKED_EQ = 4, 5, 7
AF_MAX = 46
ALLOWED_FAMILIES = {1, 2, 10}  # AF_UNIX, AF_INET, AF_INET6

DEVICES = ("null", "zero", "full", "random", "urandom", "tty")


def SCMP_ACT_ERRNO(code: int) -> int:
    return 0x00050000 | (code & 0xFFFF)


class ArgCmp(ctypes.Structure):
    _fields_ = [("arg", ctypes.c_uint), ("op", ctypes.c_int),
                ("datum_a", ctypes.c_uint64), ("datum_b", ctypes.c_uint64)]


class MountAttr(ctypes.Structure):
    _fields_ = [("attr_set", ctypes.c_uint64), ("attr_clr", ctypes.c_uint64),
                ("propagation", ctypes.c_uint64), ("userns_fd", ctypes.c_uint64)]


libc = ctypes.CDLL(None, use_errno=True)


def check(rc: int, what: str) -> None:
    if rc < 0:
        e = ctypes.get_errno()
        raise OSError(e, f"{what}: {os.strerror(e)}")


def mount(src: str | None, dst: str, fstype: str | None, flags: int,
          data: str | None = None) -> None:
    def enc(s):
        return (s.encode() if s is not None else None)
    check(libc.mount(enc(src), enc(dst), enc(fstype), ctypes.c_ulong(flags), enc(data)),
          f"mount {src} {dst}")


def mount_setattr(path: str, flags: int, attr_set: int = 0, attr_clr: int = 0) -> None:
    attr = MountAttr(attr_set, attr_clr, 0, 0)
    check(libc.syscall(SYS_MOUNT_SETATTR, AT_FDCWD, path.encode(), flags, ctypes.byref(attr),
                       ctypes.sizeof(attr)), f"mount_setattr {path}")


def filesystem(rw_dirs: list[str], ro_dirs: list[str]) -> None:
    """PrivateMounts, ProtectSystem=strict + StateDirectory, PrivateTmp, PrivateDevices,
    ProtectProc=invisible."""
    check(libc.unshare(CLONE_NEWNS), "unshare")
    mount(None, "/", None, MS_REC | MS_PRIVATE)
    # handles (in this namespace) on what the new mounts will cover: the writable
    # directories (under the fresh /tmp) and the device nodes of the full /dev
    handles = [(d, os.open(d, os.O_PATH | os.O_DIRECTORY), True) for d in rw_dirs]
    handles += [(d, os.open(d, os.O_PATH | os.O_DIRECTORY), False) for d in ro_dirs]
    devices = [(name, os.open(f"/dev/{name}", os.O_PATH)) for name in DEVICES]
    mount_setattr("/", AT_RECURSIVE, attr_set=MOUNT_ATTR_RDONLY)
    for tmp in ("/tmp", "/var/tmp"):
        mount("tmpfs", tmp, "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777")
    mount("tmpfs", "/dev", "tmpfs", MS_NOSUID | MS_NOEXEC, "mode=755")
    for name, fd in devices:
        path = f"/dev/{name}"
        open(path, "w").close()
        mount(f"/proc/self/fd/{fd}", path, None, MS_BIND)
        os.close(fd)
    os.mkdir("/dev/shm", 0o1777)
    mount("tmpfs", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=1777")
    # outer directories first, so a writable one inside a read-only one stays visible
    for path, fd, writable in sorted(handles, key=lambda h: h[0].count("/")):
        os.makedirs(path, exist_ok=True)
        mount(f"/proc/self/fd/{fd}", path, None, MS_BIND | MS_REC)
        mount_setattr(path, AT_RECURSIVE, **({"attr_clr": MOUNT_ATTR_RDONLY} if writable
                                             else {"attr_set": MOUNT_ATTR_RDONLY}))
        os.close(fd)
    mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC,
          "hidepid=invisible")


def become_unprivileged(uid: int) -> None:
    """User=: the test venv lives under /root (mode 0700), so instead of a real other uid
    the process enters a user namespace where its own uid is ``uid``. It keeps access to
    root's files, but sees itself, and acts, as non-root: SQLite, for one, fchown()s its
    -wal and -shm files only when it runs as root, and fchown is outside the allow list."""
    outer_uid, outer_gid = os.geteuid(), os.getegid()
    check(libc.unshare(CLONE_NEWUSER), "unshare user namespace")
    with open("/proc/self/setgroups", "w") as f:
        f.write("deny")
    with open("/proc/self/uid_map", "w") as f:
        f.write(f"{uid} {outer_uid} 1")
    with open("/proc/self/gid_map", "w") as f:
        f.write(f"{uid} {outer_gid} 1")


def drop_privileges() -> None:
    """CapabilityBoundingSet= (empty) and NoNewPrivileges=yes."""
    cap = 0
    while libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) == 0:
        cap += 1
    check(libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs")


def seccomp(syscalls: list[str]) -> None:
    """SystemCallFilter=, MemoryDenyWriteExecute=yes, RestrictAddressFamilies=."""
    lib = ctypes.CDLL(ctypes.util.find_library("seccomp") or "libseccomp.so.2")
    lib.seccomp_init.restype = ctypes.c_void_p
    lib.seccomp_init.argtypes = [ctypes.c_uint32]
    lib.seccomp_rule_add_array.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int,
                                           ctypes.c_uint, ctypes.POINTER(ArgCmp)]
    lib.seccomp_load.argtypes = [ctypes.c_void_p]
    lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]

    def nr(name: str) -> int:
        return int(lib.seccomp_syscall_resolve_name(name.encode()))

    def rule(ctx: int, action: int, name: str, *cmps: tuple[int, int, int, int]) -> None:
        arr = (ArgCmp * max(1, len(cmps)))(*(ArgCmp(*c) for c in cmps))
        rc = lib.seccomp_rule_add_array(ctx, action, nr(name), len(cmps), arr)
        if rc < 0:
            raise OSError(-rc, f"seccomp rule for {name}")

    # 1. the allow list; names this architecture lacks are skipped, as systemd does
    allow = lib.seccomp_init(SCMP_ACT_KILL_PROCESS)
    for name in syscalls:
        if nr(name) >= 0:
            rule(allow, SCMP_ACT_ALLOW, name)
    # 2. W^X memory
    mdwe = lib.seccomp_init(SCMP_ACT_ALLOW)
    eperm = SCMP_ACT_ERRNO(errno.EPERM)
    rule(mdwe, eperm, "mmap", (2, SCMP_CMP_MASKED_EQ, PROT_WRITE | PROT_EXEC,
                               PROT_WRITE | PROT_EXEC))
    rule(mdwe, eperm, "mprotect", (2, SCMP_CMP_MASKED_EQ, PROT_EXEC, PROT_EXEC))
    rule(mdwe, eperm, "pkey_mprotect", (2, SCMP_CMP_MASKED_EQ, PROT_EXEC, PROT_EXEC))
    rule(mdwe, eperm, "shmat", (2, SCMP_CMP_MASKED_EQ, SHM_EXEC, SHM_EXEC))
    # 3. address families
    fams = lib.seccomp_init(SCMP_ACT_ALLOW)
    refuse = SCMP_ACT_ERRNO(errno.EAFNOSUPPORT)
    for af in range(AF_MAX):
        if af not in ALLOWED_FAMILIES:
            rule(fams, refuse, "socket", (0, SCMP_CMP_EQ, af, 0))
    rule(fams, refuse, "socket", (0, SCMP_CMP_GE, AF_MAX, 0))
    for ctx in (fams, mdwe, allow):
        rc = lib.seccomp_load(ctx)
        if rc < 0:
            raise OSError(-rc, "seccomp_load")
    # the kernel's own W^X switch (Linux 6.3+), used by newer systemd; absent is fine
    libc.prctl(PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN, 0, 0, 0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--syscalls", required=True, help="file with one syscall name a line")
    ap.add_argument("--rw", action="append", default=[], help="a writable directory")
    ap.add_argument("--ro", action="append", default=[], help="keep visible, read-only")
    ap.add_argument("command", nargs=argparse.REMAINDER)
    args = ap.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    with open(args.syscalls) as f:
        syscalls = [line.strip() for line in f if line.strip()]
    filesystem([os.path.abspath(d) for d in args.rw], [os.path.abspath(d) for d in args.ro])
    os.umask(0o077)
    become_unprivileged(SERVICE_UID)
    drop_privileges()
    seccomp(syscalls)
    os.execv(command[0], command)


if __name__ == "__main__":
    sys.exit(main())
