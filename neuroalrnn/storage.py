"""Atomic writes and advisory locks: the one place the package touches files for safety.

Every file the package writes goes through :func:`atomic_path` (or one of its
wrappers): the data is written to a temporary file beside the target, named
``.<target>.<host>-<pid>.<random>.tmp``, and renamed onto the target only when
complete. A reader never sees a half-written file, and an interrupted write
leaves the previous version in place. A temporary file whose writer was killed
(``kill -9``, power loss) cannot remove itself; the next write to the same
target removes those of dead processes on this host, never a live writer's.

Files that belong together (an analysis: ``analysis.nc``, ``report.md``, its
figures) are written as one group (:func:`file_group`): each is first written
into a hidden staging folder; a marker file then commits the group, and the
files are moved onto their targets. A kill before the marker leaves the old
files untouched (the staging folder of a dead writer is removed later); a
kill after it is finished by :func:`recover_file_groups`, which every
command that opens a run calls, so readers never meet files of two versions.

Locks use the ``filelock`` package (installed with torch), which works on
Linux, macOS and Windows; the operating system frees a lock when the process
holding it dies.
"""

from __future__ import annotations

import os
import re
import shutil
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
    "file_group",
    "recover_file_groups",
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


_GROUP_PREFIX = ".group."
_COMMITTED = ".committed"


@contextmanager
def file_group(directory: str | os.PathLike) -> Iterator[Path]:
    """Yield a staging folder; files written under it replace ``directory``'s files of the same relative path together.

    Write every file of the group below the yielded folder (subfolders such as
    ``figures/`` allowed). On success the group is committed (a marker is
    written and synced), then each file is moved onto its target. On an
    exception before the commit nothing in ``directory`` changes.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    recover_file_groups(directory)
    staging = Path(tempfile.mkdtemp(dir=directory, prefix=f"{_GROUP_PREFIX}{_HOST}-{os.getpid()}."))
    try:
        yield staging
        atomic_write(staging / _COMMITTED, "committed\n")
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    _roll_forward(staging, directory)


def recover_file_groups(directory: str | os.PathLike) -> list[Path]:
    """Finish the commits a kill interrupted in ``directory`` and drop dead writers' uncommitted groups.

    Returns the staging folders handled. A live writer's uncommitted group is left alone.
    """
    directory = Path(directory)
    pattern = re.compile(rf"^{re.escape(_GROUP_PREFIX)}{re.escape(_HOST)}-(\d+)\.")
    handled = []
    if not directory.is_dir():
        return handled
    for staging in sorted(directory.glob(f"{_GROUP_PREFIX}*")):
        match = pattern.match(staging.name)
        if not staging.is_dir() or match is None:
            continue
        if (staging / _COMMITTED).is_file():
            _roll_forward(staging, directory)
        elif not _pid_alive(int(match.group(1))):
            shutil.rmtree(staging, ignore_errors=True)
        else:
            continue
        handled.append(staging)
    return handled


def _roll_forward(staging: Path, directory: Path) -> None:
    """Move a committed group's files onto their targets (idempotent: a repeat after a kill finishes the rest)."""
    for path in sorted(staging.rglob("*")):
        if path.is_file() and path.name != _COMMITTED:
            target = directory / path.relative_to(staging)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(path, target)
    shutil.rmtree(staging, ignore_errors=True)


@contextmanager
def advisory_lock(lock_file: str | os.PathLike, busy: Exception, *, wait: float = 0.0) -> Iterator[None]:
    """Hold an exclusive lock on ``lock_file``, or raise ``busy`` if another process holds it for ``wait`` seconds.

    The lock is the operating system's (``filelock``), so it is released when
    its holder dies, however it dies.
    """
    lock = filelock.FileLock(str(lock_file), timeout=wait)
    try:
        lock.acquire()
    except filelock.Timeout:
        raise busy from None
    try:
        yield
    finally:
        lock.release()
