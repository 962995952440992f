"""Small facts about the running system and values, shared by every layer: usable cores, JSON-safe values,
worker processes that end with their parent."""

from __future__ import annotations

import contextlib
import ctypes
import math
import os
import signal
import sys
import threading
import time
from collections.abc import Mapping
from typing import Any

import numpy as np

__all__ = ["DEVICES", "available_cores", "die_with_parent", "jsonable", "resolve_device"]

DEVICES = ("cpu", "cuda", "auto")
"""Where tensors live: ``cpu``, ``cuda`` (the current CUDA device) or ``auto`` (cuda when one is available)."""

_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>
_WATCH_INTERVAL = 0.5  # seconds between the watchdog's looks at the parent process


def available_cores() -> int:
    """CPU cores this process may run on (its affinity mask on Linux, else the machine's count)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def resolve_device(name: str) -> str:
    """The device ``name`` (one of :data:`DEVICES`) stands for on this machine: ``"cpu"`` or ``"cuda"``.

    Raises ValueError for an unknown name, or for ``cuda`` where torch sees no CUDA device.
    """
    import torch

    if name not in DEVICES:
        raise ValueError(f"device must be one of {', '.join(DEVICES)}, got {name!r}")
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' asked for, but torch sees no CUDA device on this machine "
                         f"(torch {torch.__version__}, CUDA build: {torch.version.cuda or 'no'}); use --device cpu")
    return name


def jsonable(value: Any) -> Any:
    """``value`` as plain JSON types: mappings and sequences recursively, NumPy scalars as Python
    numbers, non-finite floats as ``None``, anything else unknown as its ``str``."""
    if isinstance(value, Mapping):
        return {str(key): jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(item) for item in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return str(value)


def die_with_parent(parent_pid: int) -> None:
    """Make this (worker) process end as soon as process ``parent_pid`` ends, however it ends.

    On Linux the kernel kills this process when its parent dies
    (``prctl(PR_SET_PDEATHSIG, SIGKILL)``); everywhere a daemon watchdog thread
    exits it once its parent process has changed. If the parent is already
    gone when this is called, the process exits at once. Exits use
    ``os._exit``: nothing is cleaned up, because a queue's feeder thread could
    otherwise block the exit forever and the parent is no longer there.
    """
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
    try:
        os.kill(parent_pid, 0)  # the parent may have died before the death signal was armed
    except ProcessLookupError:
        os._exit(1)
    except PermissionError:
        pass
    parent = os.getppid()
    if parent != parent_pid and parent == 1:
        os._exit(1)
    threading.Thread(target=_exit_when_orphaned, args=(parent,), name="neuroalrnn-parent-watchdog",
                     daemon=True).start()


def _exit_when_orphaned(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(_WATCH_INTERVAL)
    os._exit(1)
