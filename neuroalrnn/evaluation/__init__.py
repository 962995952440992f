"""Evaluation layer: simulate trained models on fresh trials and score them.

Modules: :mod:`.simulate` (run a model on trials -> the ``trials.nc``
Dataset) and :mod:`.evaluate` (decision accuracy, psychometric curves and
:func:`evaluate_run`, the one path to a run's test trials). Imports models and
training, never workflows.
"""

from .evaluate import (
    DEFAULT_TEST_TRIALS,
    EVALUATION_FILE,
    SUMMARY_ATTRIBUTE,
    TRIALS_FILE,
    accuracy_by,
    accuracy_by_congruence,
    accuracy_by_strength,
    choices,
    current_trials,
    decision_choice,
    decision_mse,
    evaluate_run,
    outcomes,
    outcomes_by_task,
    plot_psychometric,
    psychometric,
    read_evaluation,
    scores,
    write_evaluation,
)
from .simulate import (
    read_trials,
    simulate,
    simulate_batch,
    trials_dataset,
    write_trials,
)

__all__ = [
    "DEFAULT_TEST_TRIALS",
    "EVALUATION_FILE",
    "SUMMARY_ATTRIBUTE",
    "TRIALS_FILE",
    "accuracy_by",
    "accuracy_by_congruence",
    "accuracy_by_strength",
    "choices",
    "current_trials",
    "decision_choice",
    "decision_mse",
    "evaluate_run",
    "outcomes",
    "outcomes_by_task",
    "plot_psychometric",
    "psychometric",
    "read_evaluation",
    "read_trials",
    "scores",
    "simulate",
    "simulate_batch",
    "trials_dataset",
    "write_evaluation",
    "write_trials",
]
