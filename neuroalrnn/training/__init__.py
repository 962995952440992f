"""Training layer: configs, trial sampling, the Trainer and run directories.

Modules: :mod:`.config` (``TrainConfig`` and its constraints), :mod:`.data`
(the task of a config and the chunks of trials it is trained on),
:mod:`.trainer` (``Trainer``, ``load_model``), :mod:`.losses` (the losses
and per-task scores) and :mod:`.rundir` (the files of a run directory).
Imports models, never evaluation or workflows.
"""

from .config import TrainConfig
from .data import bank_cache_path, batch_of_step, data_chunk, make_task, sample_chunk
from .pack import PACK_FREE_FIELDS, PackTrainer, check_packable, pack_groups, time_pack
from .trainer import (
    EVAL_SEED_OFFSET,
    TEST_SEED_OFFSET,
    LoadedRun,
    Trainer,
    TrainingDiverged,
    TrainingInterrupted,
    accuracy_by_task,
    decision_accuracy,
    learning_rate,
    load_model,
    load_run,
    make_model,
    n_outputs,
    task_loss,
    weighted_cross_entropy,
    weighted_squared_error,
    yang_squared_error,
)

__all__ = [
    "PACK_FREE_FIELDS",
    "PackTrainer",
    "check_packable",
    "pack_groups",
    "time_pack",
    "EVAL_SEED_OFFSET",
    "LoadedRun",
    "TEST_SEED_OFFSET",
    "TrainConfig",
    "Trainer",
    "TrainingDiverged",
    "TrainingInterrupted",
    "accuracy_by_task",
    "bank_cache_path",
    "batch_of_step",
    "data_chunk",
    "decision_accuracy",
    "learning_rate",
    "load_model",
    "load_run",
    "make_model",
    "make_task",
    "n_outputs",
    "sample_chunk",
    "task_loss",
    "weighted_cross_entropy",
    "weighted_squared_error",
    "yang_squared_error",
]
