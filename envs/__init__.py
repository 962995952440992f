"""Cognitive tasks as NeuroGym/Gymnasium environments, and trial sampling.

One trial is one episode with named epochs. ``make(name)`` builds a task by
name, ``list_tasks()`` lists them, ``describe_subtasks(name)`` lists a
suite's sub-tasks, and ``sample_trials`` turns N trials of any NeuroGym
``TrialEnv`` into the padded arrays of a :class:`TrialBatch`. Our tasks
declare the task interface of :class:`TaskEnv`.

Importing this package registers every task with Gymnasium:
``gymnasium.make(gymnasium_id("stimulus-selection"))``, i.e.
``gymnasium.make("neuroalrnn/StimulusSelection-v0")``.

This package knows nothing of models: it depends on neurogym, gymnasium and
numpy only.
"""

from __future__ import annotations

from .base import TaskEnv, TaskInterface, ideal_observer_accuracy, task_interface
from .registry import describe_subtasks, gymnasium_id, held_out_options, list_tasks, make, register_gymnasium_envs
from .stimulus_selection import StimulusSelection
from .trials import TrialBatch, sample_trials

register_gymnasium_envs()

__all__ = [
    "StimulusSelection", "TaskEnv", "TaskInterface", "TrialBatch", "describe_subtasks", "gymnasium_id",
    "held_out_options", "ideal_observer_accuracy", "list_tasks", "make", "register_gymnasium_envs", "sample_trials", "task_interface",
]  # fmt: skip
