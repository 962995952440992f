"""Checks of task options, shared by every task: one message shape for every bad value.

Each check raises ``ValueError("<option> must be <what it must be>, got <value>")``
when the task is constructed, so a bad option never surfaces later as a
``ZeroDivisionError`` or a NumPy error from inside a trial.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Collection, Mapping
from typing import Any

__all__ = ["check_integer", "check_number", "check_timing"]


def check_integer(name: str, value: Any, minimum: int) -> int:
    """``value`` as an int; ``ValueError`` naming ``name`` unless it is an integer >= ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def check_number(
    name: str, value: Any, low: float = -math.inf, high: float = math.inf, *, low_open: bool = False
) -> float:
    """``value`` as a float; ``ValueError`` naming ``name`` unless it is a finite number in [low, high].

    ``low_open``: the interval is (low, high] instead. Booleans, strings,
    NaN and infinities are rejected.
    """
    real = isinstance(value, numbers.Real) and not isinstance(value, bool)
    if not real or not math.isfinite(value) or not (value > low if low_open else value >= low) or not value <= high:
        if high == math.inf:
            interval = f"{'>' if low_open else '>='} {low:g}"
        else:
            interval = f"in {'(' if low_open else '['}{low:g}, {high:g}]"
        raise ValueError(f"{name} must be a finite number {interval}, got {value!r}")
    return float(value)


def check_timing(
    timing: Mapping[str, Any] | None, defaults: Mapping[str, Any], dt: float, *, one_step_at_least: Collection[str] = ()
) -> dict[str, Any]:
    """``defaults`` updated with ``timing`` (epoch -> NeuroGym timing spec, in ms), every spec checked.

    A spec is one of: a duration (a number >= 0); a non-empty list of
    durations (one is drawn per trial); ``("choice", durations)``;
    ``("uniform", (low, high))`` with 0 <= low <= high;
    ``("truncated_exponential", (mean[, minimum[, maximum]]))``;
    ``("constant", duration)``; ``("until", end time)``; or a callable that
    returns a duration. NeuroGym rounds a drawn duration down to a multiple
    of ``dt``, so the epochs in ``one_step_at_least`` must never be drawn
    shorter than ``dt`` (callables are not checked there).

    Raises ``ValueError`` naming the epoch, its spec and what it must be.
    """
    if timing is None:
        timing = {}
    if not isinstance(timing, Mapping):
        raise ValueError(f"timing must be a dict epoch -> duration in ms, got {timing!r}")
    unknown = sorted(set(timing) - set(defaults), key=str)
    if unknown:
        raise ValueError(f"timing names unknown epochs {unknown}; valid epochs: {list(defaults)}")
    merged = {**defaults, **timing}
    for epoch, spec in merged.items():
        shortest = _shortest_duration(f"timing[{epoch!r}]", spec)
        if epoch in one_step_at_least and shortest is not None and shortest < dt:
            raise ValueError(
                f"timing[{epoch!r}] must always last at least one step of dt = {dt:g} ms, got {spec!r} "
                "(lengthen the epoch or choose a smaller dt)"
            )
    return merged


def _durations(name: str, values: Any) -> list[float]:
    if isinstance(values, str | bytes) or not isinstance(values, Collection) or not values:
        raise ValueError(f"{name} must be a non-empty list of durations in ms, got {values!r}")
    return [check_number(name, value, 0.0) for value in values]


DISTRIBUTIONS = ("choice", "constant", "truncated_exponential", "uniform", "until")


def _shortest_duration(name: str, spec: Any) -> float | None:
    """The shortest duration ``spec`` can draw (None when not known in advance); checks the spec."""
    if isinstance(spec, numbers.Real) and not isinstance(spec, bool):
        return check_number(name, spec, 0.0)
    if callable(spec):
        return None
    if isinstance(spec, tuple | list) and len(spec) == 2 and isinstance(spec[0], str):
        distribution, args = spec
        if distribution == "choice":
            return min(_durations(name, args))
        if distribution == "constant":
            return check_number(name, args, 0.0)
        if distribution == "until":  # an end time: the duration depends on the epochs before
            check_number(name, args, 0.0)
            return None
        if distribution == "uniform":
            bounds = _durations(name, args)
            if len(bounds) != 2 or bounds[0] > bounds[1]:
                raise ValueError(f"{name} must be ('uniform', (low, high)) with 0 <= low <= high ms, got {spec!r}")
            return bounds[0]
        if distribution == "truncated_exponential":
            bounds = _durations(name, args)
            if len(bounds) > 3 or bounds[0] <= 0 or (len(bounds) == 3 and bounds[1] > bounds[2]):
                raise ValueError(
                    f"{name} must be ('truncated_exponential', (mean > 0[, minimum[, maximum >= minimum]])) "
                    f"in ms, got {spec!r}"
                )
            return bounds[1] if len(bounds) > 1 else 0.0
        raise ValueError(f"{name} has unknown distribution {distribution!r}; valid: {list(DISTRIBUTIONS)}")
    if isinstance(spec, tuple | list):
        return min(_durations(name, spec))
    raise ValueError(
        f"{name} must be a duration in ms, a list of durations, a (distribution, arguments) pair "
        f"or a callable, got {spec!r}"
    )
