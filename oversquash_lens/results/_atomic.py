"""Atomic file writes: a temporary file beside the target, flushed, then renamed over it.

Every file the package writes goes to a temporary file in the same folder, is flushed
to disk, then renamed over the target, so a crash never leaves a half-written file. The
temporary file's name carries the writer's PID; a later save of the same target removes
the temporary files that writers killed mid-write left behind.
"""

import contextlib
import os
import socket
import tempfile
import time
import zlib
from pathlib import Path

_STALE_AGE_S = 3600.0  # temp files whose writer cannot be checked are stale after this
_MKSTEMP_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789_")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _host_tag() -> str:
    """Short tag of this machine, so a PID is only checked on the host that owns it."""
    return f"{zlib.crc32(socket.gethostname().encode()):08x}"


def _temp_prefix(target: Path, pid: int | None = None) -> str:
    """Name prefix of the temporary files that process ``pid`` writes for ``target``.

    Example:
        >>> _temp_prefix(Path("out/norms.npz"), pid=42).startswith(".norms.npz.42-")
        True
    """
    return f".{target.name}.{os.getpid() if pid is None else pid}-{_host_tag()}."


def atomic_write_bytes(target: Path, payload: bytes) -> None:
    """Write ``payload`` to ``target`` via a temporary file and an atomic rename.

    The temporary file is ``.<name>.<pid>-<host>.<random>.tmp`` beside the target. After
    the rename, temporary files of the same target left by dead writers are removed.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=_temp_prefix(target), suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        # mkstemp creates the file 0600; give it the permissions a plain open() would.
        os.chmod(tmp_name, 0o666 & ~_umask())
        os.replace(tmp_name, target)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    _remove_stale_temps(target)


def _remove_stale_temps(target: Path) -> None:
    """Delete the temporary files of ``target`` whose writer is gone; never fails.

    A file named by :func:`_temp_prefix` is stale when its PID is not a live process on
    this host; one from another host, or named without a PID (older versions), when it
    has not changed for an hour. Temporary files of live writers are never touched.
    """
    prefix, now = f".{target.name}.", time.time()
    with contextlib.suppress(OSError), os.scandir(target.parent) as entries:
        for entry in entries:
            name = entry.name
            if not (name.startswith(prefix) and name.endswith(".tmp")):
                continue
            with contextlib.suppress(OSError):
                if _is_stale(name[len(prefix) : -len(".tmp")], entry, now):
                    os.unlink(entry.path)


def _is_stale(middle: str, entry: os.DirEntry[str], now: float) -> bool:
    """Whether a temp file (``middle``: its name between the prefix and ``.tmp``) is stale."""
    owner, _, random_part = middle.rpartition(".")
    if not _is_mkstemp_name(random_part) or not entry.is_file(follow_symlinks=False):
        return False
    pid, dash, host = owner.partition("-")
    if owner and not (dash and pid.isascii() and pid.isdigit()):
        return False  # another target's temp, e.g. of "<name>.1" when the target is <name>
    if owner and host == _host_tag():
        return not _pid_alive(int(pid))
    return now - entry.stat(follow_symlinks=False).st_mtime > _STALE_AGE_S


def _is_mkstemp_name(text: str) -> bool:
    return len(text) == 8 and set(text) <= _MKSTEMP_CHARS


def _pid_alive(pid: int) -> bool:
    """True unless ``pid`` is surely not a running process (unsure counts as alive)."""
    if os.name == "nt" or pid <= 0:  # os.kill(pid, 0) would terminate it on Windows
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (OSError, OverflowError):  # PermissionError: alive, owned by another user
        return True
    return True
