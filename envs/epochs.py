"""A canonical epoch vocabulary, so analyses can compare epochs across tasks.

Every task keeps its own epoch names (``sample``, ``test``, ``stim1`` ...);
each name also maps to one canonical epoch:

========== =====================================================================
canonical  meaning
========== =====================================================================
fixation   hold fixation before any task information
context    a cue that says what to do (rule, context), without the evidence
stimulus   the evidence or items the decision depends on
delay      information must be held without new input
decision   the response period: the output is scored here
other      anything else
========== =====================================================================

A task states its mapping in a ``canonical_epochs`` attribute (original name ->
canonical name); names it leaves out fall back to :data:`COMMON_EPOCH_NAMES`,
then to ``other``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

__all__ = ["CANONICAL_EPOCHS", "COMMON_EPOCH_NAMES", "canonical_epoch_map"]

CANONICAL_EPOCHS = ("fixation", "context", "stimulus", "delay", "decision", "other")

# Epoch names used across NeuroGym and our own tasks.
COMMON_EPOCH_NAMES: dict[str, str] = {
    "fixation": "fixation",
    "context": "context",
    "cue": "context",
    "rule": "context",
    "stimulus": "stimulus",
    "stim": "stimulus",
    "stim1": "stimulus",
    "stim2": "stimulus",
    "sample": "stimulus",
    "test": "stimulus",
    "delay": "delay",
    "delay1": "delay",
    "delay2": "delay",
    "decision": "decision",
    "response": "decision",
    "go": "decision",
}


def canonical_epoch_map(names: Iterable[str], declared: Mapping[str, str] | None = None) -> dict[str, str]:
    """Map each epoch name to its canonical epoch: ``declared`` first, then common names, then ``other``.

    Raises ``ValueError`` when ``declared`` maps a name outside :data:`CANONICAL_EPOCHS`.
    """
    declared = dict(declared or {})
    bad = {name: value for name, value in declared.items() if value not in CANONICAL_EPOCHS}
    if bad:
        raise ValueError(f"canonical epochs must be one of {CANONICAL_EPOCHS}; got {bad}")
    return {name: declared.get(name, COMMON_EPOCH_NAMES.get(name, "other")) for name in names}
