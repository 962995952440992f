"""Small facts about the running system and values, shared by every layer: usable cores, JSON-safe values."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from typing import Any

import numpy as np

__all__ = ["available_cores", "jsonable"]


def available_cores() -> int:
    """CPU cores this process may run on (its affinity mask on Linux, else the machine's count)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


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
