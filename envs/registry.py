"""Task registry: names users type, mapped to environment classes."""

from __future__ import annotations

from collections.abc import Callable

from .stimulus_selection import StimulusSelection

_TASKS: dict[str, tuple[Callable, str]] = {
    "stimulus-selection": (
        StimulusSelection,
        "context-dependent selection of motion or colour evidence, with delay and go cue "
        "(Mante et al. 2013)",
    ),
}


def list_tasks() -> dict[str, str]:
    """Task names and a one-line description of each."""
    return {name: description for name, (_, description) in _TASKS.items()}


def make(name: str, **kwargs):
    """Build the task ``name`` with keyword arguments passed to its constructor.

    Raises ``ValueError`` listing the valid names when ``name`` is unknown.
    """
    if name not in _TASKS:
        raise ValueError(f"unknown task {name!r}; valid tasks: {', '.join(sorted(_TASKS))}")
    factory, _ = _TASKS[name]
    try:
        return factory(**kwargs)
    except TypeError as error:
        raise ValueError(f"bad options for task {name!r}: {error}") from None
