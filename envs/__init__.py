"""Cognitive tasks as NeuroGym/Gymnasium environments, and trial sampling.

One trial is one episode with named epochs. ``make(name)`` builds a task by
name, ``list_tasks()`` lists them, and ``sample_trials`` turns N trials of any
NeuroGym ``TrialEnv`` into the padded arrays of a :class:`TrialBatch`.

This package knows nothing of models: it depends on neurogym, gymnasium and
numpy only.
"""

from __future__ import annotations

from .registry import held_out_options, list_tasks, make
from .stimulus_selection import StimulusSelection
from .trials import TrialBatch, sample_trials

__all__ = ["StimulusSelection", "TrialBatch", "held_out_options", "list_tasks", "make", "sample_trials"]
