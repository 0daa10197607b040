"""Confinement of a local run's process: Landlock, ``no_new_privs``, capabilities, uid.

Standard library only (``ctypes`` for the three Landlock system calls and ``capset``): the
run wrapper starts as ``python -I -S`` and imports this file by its path, not through the
``app`` package. runyard itself imports it to probe the kernel and to build the plan that
it passes to the wrapper as JSON.

``apply(plan)`` runs in the child between fork and exec (the wrapper's ``preexec_fn``):

1. the Landlock ruleset is built while every path can still be opened;
2. ``PR_SET_NO_NEW_PRIVS``: no set-uid binary or file capability can give powers back;
3. as root: the capability bounding set and ambient set are emptied, then either the uid
   switches to the plan's unprivileged user, or every capability is dropped with
   ``capset`` (the process keeps uid 0 but without CAP_DAC_OVERRIDE and friends, root's
   files are only reachable through their owner bits, which Landlock then limits);
4. ``landlock_restrict_self``: from here on the process and everything it starts can open
   only what the rules allow, whatever the file permissions say.

What Landlock governs: opening files and directories (read, write, execute, list), and
creating, removing, renaming and linking entries. It does not govern ``stat`` or path
look-ups, nor already-open descriptors (stdout and stderr go to the run's spool file,
opened before). With ABI 6 and later it also keeps the run from signalling processes
outside its domain (runyard, other runs) and from abstract unix sockets.
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import stat
import sys
from dataclasses import dataclass, field
from pathlib import Path

# System call numbers: the same on x86_64 and aarch64 (the generic table), and on every
# architecture since Linux 5.13.
SYS_LANDLOCK_CREATE_RULESET = 444
SYS_LANDLOCK_ADD_RULE = 445
SYS_LANDLOCK_RESTRICT_SELF = 446

_CREATE_RULESET_VERSION = 1 << 0
_RULE_PATH_BENEATH = 1

# Filesystem access rights, by the ABI version that introduced them.
EXECUTE = 1 << 0
WRITE_FILE = 1 << 1
READ_FILE = 1 << 2
READ_DIR = 1 << 3
REMOVE_DIR = 1 << 4
REMOVE_FILE = 1 << 5
MAKE_CHAR = 1 << 6
MAKE_DIR = 1 << 7
MAKE_REG = 1 << 8
MAKE_SOCK = 1 << 9
MAKE_FIFO = 1 << 10
MAKE_BLOCK = 1 << 11
MAKE_SYM = 1 << 12
REFER = 1 << 13  # ABI 2
TRUNCATE = 1 << 14  # ABI 3
IOCTL_DEV = 1 << 15  # ABI 5
_ABI1_FS = (1 << 13) - 1
_FS_BY_ABI = {1: _ABI1_FS, 2: _ABI1_FS | REFER, 3: _ABI1_FS | REFER | TRUNCATE}
# Rights that make sense on a file (a rule on a file with directory rights is EINVAL).
_FILE_RIGHTS = EXECUTE | WRITE_FILE | READ_FILE | TRUNCATE | IOCTL_DEV

SCOPE_ABSTRACT_UNIX_SOCKET = 1 << 0  # ABI 6
SCOPE_SIGNAL = 1 << 1  # ABI 6

# prctl options and capability constants (linux/prctl.h, linux/capability.h).
PR_CAPBSET_DROP = 24
PR_SET_SECUREBITS = 28
PR_SET_NO_NEW_PRIVS = 38
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_CLEAR_ALL = 4
SECBIT_NOROOT = 1 << 0
SECBIT_NOROOT_LOCKED = 1 << 1
_LINUX_CAPABILITY_VERSION_3 = 0x20080522

READ_ONLY = READ_FILE | READ_DIR | EXECUTE


class SandboxError(OSError):
    """The confinement could not be applied; the run must not start unconfined."""


class _RulesetAttr(ctypes.Structure):
    _fields_ = [
        ("handled_access_fs", ctypes.c_uint64),
        ("handled_access_net", ctypes.c_uint64),
        ("scoped", ctypes.c_uint64),
    ]


class _PathBeneathAttr(ctypes.Structure):
    _pack_ = 1  # __attribute__((packed)) in linux/landlock.h: 12 bytes
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [
        ("effective", ctypes.c_uint32),
        ("permitted", ctypes.c_uint32),
        ("inheritable", ctypes.c_uint32),
    ]


_libc: ctypes.CDLL | None = None


def _c() -> ctypes.CDLL:
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    return _libc


def _check(result: int, what: str) -> int:
    if result < 0:
        code = ctypes.get_errno()
        raise SandboxError(code, f"{what}: {os.strerror(code)}")
    return result


def abi_version() -> int:
    """The kernel's Landlock ABI version; 0 when Landlock is missing or disabled."""
    try:
        result = _c().syscall(
            SYS_LANDLOCK_CREATE_RULESET, None, ctypes.c_size_t(0), _CREATE_RULESET_VERSION
        )
    except (OSError, AttributeError):  # no libc syscall(): not Linux
        return 0
    if result < 0:
        # ENOSYS: kernel without Landlock; EOPNOTSUPP: built in but disabled at boot.
        return 0
    return int(result)


def fs_rights(abi: int) -> int:
    """Every filesystem right the kernel's ABI knows: all of them are handled (denied
    unless a rule allows them)."""
    if abi <= 0:
        return 0
    return _FS_BY_ABI.get(abi, _ABI1_FS | REFER | TRUNCATE | IOCTL_DEV)


@dataclass(frozen=True)
class Plan:
    """What a run may reach. Paths that do not exist are skipped when applied."""

    read_write: tuple[str, ...] = ()
    read_only: tuple[str, ...] = ()  # read, list and execute
    uid: int | None = None  # switch to this uid (and gid) when runyard runs as root
    gid: int | None = None
    landlock: bool = True
    notes: tuple[str, ...] = field(default=(), compare=False)

    def to_json(self) -> str:
        return json.dumps(
            {
                "read_write": list(self.read_write),
                "read_only": list(self.read_only),
                "uid": self.uid,
                "gid": self.gid,
                "landlock": self.landlock,
            }
        )

    @classmethod
    def from_json(cls, text: str) -> Plan:
        raw = json.loads(text)
        return cls(
            read_write=tuple(raw["read_write"]),
            read_only=tuple(raw["read_only"]),
            uid=raw["uid"],
            gid=raw["gid"],
            landlock=raw["landlock"],
        )


def _add_rule(ruleset: int, path: str, rights: int) -> bool:
    try:
        fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        if not stat.S_ISDIR(os.fstat(fd).st_mode):
            rights &= _FILE_RIGHTS
        attr = _PathBeneathAttr(allowed_access=rights, parent_fd=fd)
        _check(
            _c().syscall(
                SYS_LANDLOCK_ADD_RULE,
                ctypes.c_int(ruleset),
                ctypes.c_int(_RULE_PATH_BENEATH),
                ctypes.byref(attr),
                ctypes.c_uint32(0),
            ),
            f"landlock_add_rule({path!r})",
        )
    finally:
        os.close(fd)
    return True


def build_ruleset(plan: Plan, abi: int) -> int:
    """A Landlock ruleset fd that handles every right of ``abi`` and allows the plan's
    paths."""
    handled = fs_rights(abi)
    attr = _RulesetAttr(handled_access_fs=handled, handled_access_net=0, scoped=0)
    size = ctypes.sizeof(ctypes.c_uint64)  # ABI 1-3: only handled_access_fs
    if abi >= 6:
        attr.scoped = SCOPE_ABSTRACT_UNIX_SOCKET | SCOPE_SIGNAL
        size = ctypes.sizeof(_RulesetAttr)
    elif abi >= 4:
        size = 2 * ctypes.sizeof(ctypes.c_uint64)
    ruleset = _check(
        _c().syscall(SYS_LANDLOCK_CREATE_RULESET, ctypes.byref(attr), ctypes.c_size_t(size), 0),
        "landlock_create_ruleset",
    )
    try:
        for path in plan.read_write:
            _add_rule(ruleset, path, handled)
        for path in plan.read_only:
            _add_rule(ruleset, path, READ_ONLY & handled)
    except BaseException:
        os.close(ruleset)
        raise
    return ruleset


def _prctl(option: int, arg: int, what: str) -> None:
    _check(
        _c().prctl(
            ctypes.c_int(option),
            ctypes.c_ulong(arg),
            ctypes.c_ulong(0),
            ctypes.c_ulong(0),
            ctypes.c_ulong(0),
        ),
        what,
    )


def _last_cap() -> int:
    try:
        return int(Path("/proc/sys/kernel/cap_last_cap").read_text().strip())
    except (OSError, ValueError):
        return 40  # CAP_CHECKPOINT_RESTORE, the last one in Linux 6.x


def drop_capabilities() -> None:
    """Empty the bounding, ambient, effective, permitted and inheritable sets. After
    this, exec cannot give root's powers back (the bounding set caps what exec grants)."""
    for cap in range(_last_cap() + 1):
        result = _c().prctl(PR_CAPBSET_DROP, ctypes.c_ulong(cap), 0, 0, 0)
        if result < 0 and ctypes.get_errno() != errno.EINVAL:  # EINVAL: unknown cap
            _check(result, f"prctl(PR_CAPBSET_DROP, {cap})")
    _prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, "prctl(PR_CAP_AMBIENT_CLEAR_ALL)")
    # uid 0 no longer means "all capabilities" on exec, and that cannot be undone.
    with_securebits = _c().prctl(
        PR_SET_SECUREBITS, ctypes.c_ulong(SECBIT_NOROOT | SECBIT_NOROOT_LOCKED), 0, 0, 0
    )
    if with_securebits < 0 and ctypes.get_errno() != errno.EPERM:
        _check(with_securebits, "prctl(PR_SET_SECUREBITS)")


def _capset_empty() -> None:
    header = _CapHeader(version=_LINUX_CAPABILITY_VERSION_3, pid=0)
    data = (_CapData * 2)()
    _check(_c().capset(ctypes.byref(header), ctypes.byref(data)), "capset")


def apply(plan: Plan) -> list[str]:
    """Confine the calling process (and what it executes) by ``plan``. Returns what was
    applied, for the run's log. Raises SandboxError when a step fails."""
    applied: list[str] = []
    ruleset = -1
    abi = abi_version() if plan.landlock else 0
    if plan.landlock:
        if abi <= 0:
            raise SandboxError(errno.EOPNOTSUPP, "Landlock is not available in this kernel")
        ruleset = build_ruleset(plan, abi)
    try:
        _prctl(PR_SET_NO_NEW_PRIVS, 1, "prctl(PR_SET_NO_NEW_PRIVS)")
        applied.append("no_new_privs")
        if os.geteuid() == 0:
            drop_capabilities()
            if plan.uid is not None and plan.uid != 0:
                gid = plan.gid if plan.gid is not None else plan.uid
                os.setgroups([])
                os.setresgid(gid, gid, gid)
                os.setresuid(plan.uid, plan.uid, plan.uid)  # clears every capability
                applied.append(f"uid {plan.uid}")
            else:
                _capset_empty()
                applied.append("capabilities dropped")
        if ruleset >= 0:
            _check(
                _c().syscall(SYS_LANDLOCK_RESTRICT_SELF, ctypes.c_int(ruleset), ctypes.c_uint32(0)),
                "landlock_restrict_self",
            )
            applied.append(f"landlock ABI {abi}")
    finally:
        if ruleset >= 0:
            os.close(ruleset)
    return applied


# --- what a run may reach (built by runyard, in the parent) --------------------------------

# Read-only: system programs and libraries, and the few files of /etc that name resolution,
# TLS, time zones and the dynamic loader read; not /etc as a whole (runyard may run as root,
# and root without capabilities still reads root's own files such as /etc/shadow or
# /etc/ssl/private through their owner bits). DuckDB sizes its memory and threads from
# /proc and /sys; /proc/self is the run's own process (the one that execs the command).
SYSTEM_READ_ONLY = (
    "/usr",
    "/lib",
    "/lib32",
    "/lib64",
    "/bin",
    "/sbin",
    "/etc/passwd",
    "/etc/group",
    "/etc/nsswitch.conf",
    "/etc/resolv.conf",
    "/etc/hosts",
    "/etc/host.conf",
    "/etc/gai.conf",
    "/etc/ssl/certs",
    "/etc/ssl/openssl.cnf",
    "/etc/ca-certificates",
    "/etc/ca-certificates.conf",
    "/etc/pki/tls/certs",
    "/etc/pki/ca-trust",
    "/etc/localtime",
    "/etc/timezone",
    "/etc/ld.so.cache",
    "/etc/ld.so.conf",
    "/etc/ld.so.conf.d",
    "/etc/locale.alias",
    "/etc/mime.types",
    "/etc/protocols",
    "/etc/services",
    "/etc/gitconfig",  # git (dbt deps) stops at a config file it may not read
    "/etc/ssh/ssh_config",  # not /etc/ssh: the host's private keys are there
    "/dev/urandom",
    "/dev/random",
    "/dev/zero",
    "/proc/self",
    "/proc/stat",
    "/proc/meminfo",
    "/proc/cpuinfo",
    "/proc/sys/vm/overcommit_memory",
    "/sys/devices/system/cpu",
    "/sys/fs/cgroup",
)
# Read-write devices: /dev/null, and /dev/shm, where Python's multiprocessing (which dbt
# uses) keeps its semaphores. /dev/shm is shared by every process of the machine.
SYSTEM_READ_WRITE = ("/dev/null", "/dev/shm")  # noqa: S108 - a rule, not a temp file


def interpreter_paths() -> list[str]:
    """The running interpreter, its virtualenv and its base installation: the run's
    ``dbt`` and ``sqlmesh`` live there and run on it."""
    paths = [
        sys.prefix,
        sys.exec_prefix,
        sys.base_prefix,
        sys.base_exec_prefix,
        str(Path(sys.executable).resolve().parent),
    ]
    return list(dict.fromkeys(p for p in paths if p))


def build_plan(
    read_write: list[str], *, user: tuple[int, int] | None = None, landlock: bool = True
) -> Plan:
    """The plan of a run: ``read_write`` (its project folder and its own temporary
    folders) plus the interpreter and system paths above."""
    return Plan(
        read_write=(*read_write, *SYSTEM_READ_WRITE),
        read_only=(*interpreter_paths(), *SYSTEM_READ_ONLY),
        uid=user[0] if user else None,
        gid=user[1] if user else None,
        landlock=landlock,
    )


def _can(st: os.stat_result, uid: int, gid: int, bits: tuple[int, int, int]) -> bool:
    if st.st_uid == uid:
        return bool(st.st_mode & bits[0])
    if st.st_gid == gid:
        return bool(st.st_mode & bits[1])
    return bool(st.st_mode & bits[2])


def reachable_by(path: str, uid: int, gid: int) -> bool:
    """Whether ``uid``/``gid`` (without supplementary groups) can walk to ``path`` and
    read it: every folder on the way searchable, the path itself readable."""
    search = (stat.S_IXUSR, stat.S_IXGRP, stat.S_IXOTH)
    read = (stat.S_IRUSR, stat.S_IRGRP, stat.S_IROTH)
    real = Path(path).resolve()
    try:
        for folder in reversed(real.parents):
            if not _can(folder.stat(), uid, gid, search):
                return False
        return _can(real.stat(), uid, gid, read)
    except OSError:
        return False


def unprivileged_user(project: str, others: list[str]) -> tuple[tuple[int, int] | None, str]:
    """Whom a run of a root runyard runs as: the owner of the project folder when that
    is not root and can reach the interpreter, the project and ``others`` (the run's own
    folders). Else None (the run keeps uid 0 without capabilities), with the reason."""
    if os.geteuid() != 0:
        return None, "runyard does not run as root"
    st = Path(project).stat()
    if st.st_uid == 0:
        return None, f"the project folder {project!r} is owned by root"
    uid, gid = st.st_uid, st.st_gid
    needed = [str(Path(sys.executable).resolve()), *interpreter_paths(), project, *others]
    for path in needed:
        if not reachable_by(path, uid, gid):
            return None, f"uid {uid} cannot reach {path!r}"
    return (uid, gid), f"uid {uid}, the owner of the project folder"
