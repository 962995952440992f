"""Atomic writes and advisory locks: the one place the package touches files for safety.

Every file the package writes goes through :func:`atomic_path` (or one of its
wrappers): the data is written to a temporary file beside the target, named
``.<target>.<host>-<pid>.<random>.tmp``, and renamed onto the target only when
complete. A reader never sees a half-written file, and an interrupted write
leaves the previous version in place. A temporary file whose writer was killed
(``kill -9``, power loss) cannot remove itself; the next write to the same
target removes those of dead processes on this host, never a live writer's.

Locks use the ``filelock`` package (installed with torch), which works on
Linux, macOS and Windows; the operating system frees a lock when the process
holding it dies.
"""

from __future__ import annotations

import os
import re
import socket
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import filelock

__all__ = [
    "advisory_lock",
    "atomic_path",
    "atomic_write",
    "remove_stale_temporaries",
    "save_figure",
    "write_netcdf",
]

_HOST = re.sub(r"[^A-Za-z0-9_-]", "_", socket.gethostname())[:40] or "host"


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # exists but belongs to someone else, or we cannot tell: keep it
    return True


def remove_stale_temporaries(path: str | os.PathLike) -> list[Path]:
    """Remove temporary files of ``path`` left by dead writers on this host; return what was removed."""
    path = Path(path)
    pattern = re.compile(rf"^\.{re.escape(path.name)}\.{re.escape(_HOST)}-(\d+)\.[^.]+\.tmp$")
    removed = []
    if not path.parent.is_dir():
        return removed
    for candidate in path.parent.iterdir():
        match = pattern.match(candidate.name)
        if match and not _pid_alive(int(match.group(1))):
            try:
                candidate.unlink()
                removed.append(candidate)
            except FileNotFoundError:
                pass
    return removed


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it onto ``path``.

    On any exception (KeyboardInterrupt included) the temporary file is
    removed and the previous ``path`` is left untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{_HOST}-{os.getpid()}.", suffix=".tmp")
    os.close(fd)
    try:
        yield Path(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; give the usual permissions
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write(path: str | os.PathLike, data: bytes | str) -> Path:
    """Write ``data`` to ``path`` atomically and durably (see :func:`atomic_path`)."""
    payload = data.encode() if isinstance(data, str) else data
    with atomic_path(path) as tmp, tmp.open("wb") as handle:
        handle.write(payload)
        handle.flush()
        os.fsync(handle.fileno())
    return Path(path)


def write_netcdf(dataset, path: str | os.PathLike) -> Path:
    """Write an xarray Dataset to NetCDF (h5netcdf) atomically."""
    with atomic_path(path) as tmp:
        dataset.to_netcdf(tmp, engine="h5netcdf")
    return Path(path)


def save_figure(fig, path: str | os.PathLike, dpi: int = 120) -> Path:
    """Save a matplotlib figure atomically (format from the suffix, PNG by default) and close it."""
    import matplotlib.pyplot as plt

    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=dpi, format=Path(path).suffix.lstrip(".") or "png")
    finally:
        plt.close(fig)
    return Path(path)


@contextmanager
def advisory_lock(lock_file: str | os.PathLike, busy: Exception) -> Iterator[None]:
    """Hold an exclusive lock on ``lock_file``, or raise ``busy`` at once if another process holds it.

    The lock is the operating system's (``filelock``), so it is released when
    its holder dies, however it dies.
    """
    lock = filelock.FileLock(str(lock_file), timeout=0)
    try:
        lock.acquire()
    except filelock.Timeout:
        raise busy from None
    try:
        yield
    finally:
        lock.release()
