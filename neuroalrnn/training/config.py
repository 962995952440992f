"""The training configuration: one frozen, validated dataclass, saved as config.json.

Each field of :class:`TrainConfig` declares, in one place, its default, the
values it accepts (a :class:`Constraint`) and a one-line help text; the
``neuroalrnn train`` options are generated from these fields, and
:data:`CONSTRAINTS` (field -> constraint) is the one table both
``TrainConfig.__post_init__`` and the command line check values against.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..envs.trials import WEIGHTINGS
from ..models import INITIALISATIONS, MODEL_KINDS
from ..system import DEVICES

__all__ = [
    "CONSTRAINTS",
    "Constraint",
    "NON_NEGATIVE_INTEGER",
    "OPTIMIZERS",
    "POSITIVE_INTEGER",
    "RENAMED_FIELDS",
    "SCHEDULES",
    "TASK_TRAINING",
    "TrainConfig",
]

DEFAULT_TEST_TRIALS = 1000
"""Held-out test trials simulated by ``evaluate``, ``analyze``, ``compare`` and the sweep unless told otherwise."""
OPTIMIZERS = ("adam", "radam")
SCHEDULES = ("constant", "cosine", "step")
KINDS = ("integer", "number", "choice", "flag", "text", "mapping")


@dataclass(frozen=True)
class Constraint:
    """The values one setting accepts.

    ``kind``: ``integer`` (a Python int, not a bool), ``number`` (a finite int
    or float, not a bool), ``choice`` (one of ``choices``), ``flag`` (True or
    False), ``text`` (a non-empty string) or ``mapping`` (a dict with string
    keys). ``minimum`` / ``maximum`` bound integers and numbers (inclusive;
    ``above_minimum=True`` excludes the minimum). ``optional``: None is
    accepted as well.
    """

    kind: str
    minimum: float | None = None
    maximum: float | None = None
    above_minimum: bool = False
    choices: tuple[str, ...] = ()
    optional: bool = False

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"Constraint kind must be one of {', '.join(KINDS)}; got {self.kind!r}")

    def describe(self) -> str:
        """What the accepted values are, in words: "a positive integer", "a number in [0, 1]", ..."""
        if self.kind == "choice":
            text = f"one of {', '.join(self.choices)}"
        elif self.kind in ("integer", "number"):
            noun = "an integer" if self.kind == "integer" else "a number"
            if self.kind == "integer" and self.minimum == 1 and self.maximum is None:
                text = "a positive integer"
            elif self.minimum is not None and self.maximum is not None:
                text = f"{noun} in {'(' if self.above_minimum else '['}{self.minimum:g}, {self.maximum:g}]"
            elif self.minimum is not None:
                text = f"{noun} {'>' if self.above_minimum else '>='} {self.minimum:g}"
            else:
                text = noun
        else:
            text = {"flag": "true or false", "text": "a non-empty string",
                    "mapping": "a dict of options (name -> value)"}[self.kind]
        return f"{text} or None" if self.optional else text

    def accepts(self, value: Any) -> bool:
        """Whether ``value`` satisfies the constraint."""
        if value is None:
            return self.optional
        if self.kind == "choice":
            return isinstance(value, str) and value in self.choices
        if self.kind == "flag":
            return isinstance(value, bool)
        if self.kind == "text":
            return isinstance(value, str) and bool(value)
        if self.kind == "mapping":
            return isinstance(value, Mapping) and all(isinstance(key, str) for key in value)
        number_types = int if self.kind == "integer" else (int, float)
        if isinstance(value, bool) or not isinstance(value, number_types) or not math.isfinite(value):
            return False
        if self.minimum is not None and (value <= self.minimum if self.above_minimum else value < self.minimum):
            return False
        return self.maximum is None or value <= self.maximum

    def check(self, name: str, value: Any) -> None:
        """Raise ValueError naming ``name``, the value and what it must be, unless the value is accepted."""
        if not self.accepts(value):
            raise ValueError(f"{name} must be {self.describe()}, got {value!r}")

    def parse(self, text: str) -> Any:
        """The value that command-line ``text`` stands for, checked; ValueError says what was expected."""
        value: Any = text
        try:
            if self.kind == "integer":
                value = int(text)
            elif self.kind == "number":
                value = float(text)
        except ValueError:
            raise ValueError(f"expected {self.describe()}, got {text!r}") from None
        if not self.accepts(value):
            raise ValueError(f"expected {self.describe()}, got {text!r}")
        return value


POSITIVE_INTEGER = Constraint("integer", minimum=1)
NON_NEGATIVE_INTEGER = Constraint("integer", minimum=0)
NON_NEGATIVE_NUMBER = Constraint("number", minimum=0)
FRACTION = Constraint("number", minimum=0, maximum=1)


def _setting(default: Any, constraint: Constraint, help: str, **options: Any) -> Any:
    """A dataclass field with its default, its constraint and its help (read by the CLI)."""
    metadata = {"constraint": constraint, "help": help}
    if isinstance(default, dict):
        return field(default_factory=lambda: dict(default), metadata=metadata, **options)
    return field(default=default, metadata=metadata, **options)


@dataclass(frozen=True)
class TrainConfig:
    """Everything needed to rebuild a training run.

    Model: ``model`` (see ``MODEL_KINDS``), ``n_units`` (M), ``n_nonlinear``
    (P; AL-RNN only), ``noise_std`` (recurrent noise σ_rec while training),
    ``slope`` (α of the nonlinear units), ``init``.

    Task: ``task`` name and ``task_kwargs`` for its constructor; the loss
    weighting ``weighting`` ("epoch": each epoch of a trial weighs the same;
    "uniform"; "yang": Yang et al.'s cost mask) times ``decision_weight`` on
    decision steps. The loss itself follows the task's targets (see
    :func:`neuroalrnn.training.task_loss`). A task may come with training
    settings of its own (:data:`TASK_TRAINING`, e.g. Yang et al.'s for
    ``yang19-faithful``): :meth:`for_task` applies them, as the CLI and
    sweeps do; the constructor does not.

    Optimisation: ``steps`` of ``batch_size`` fresh trials, ``optimizer``
    (adam, radam), ``lr`` with ``schedule`` (constant; cosine to 5 % of lr;
    step: ×0.1 at 2/3 of the steps), ``grad_clip`` (max global L2 norm; 0 = off),
    ``seed``.

    ``fast_step``: train AL-RNNs with :func:`neuroalrnn.models.fast.alrnn_forward_fast`
    (hand-written backward through time, gradients tested against autograd)
    instead of autograd through ``ALRNN.forward``.

    Data: trials are pre-sampled into banks of ``bank_size`` trials; each
    step draws ``batch_size`` of them, and a new bank is drawn after
    ``bank_reuse`` × bank_size / batch_size steps, so each trial is used about
    ``bank_reuse`` times (``bank_size=0``: fresh trials every step). With
    ``train_trials`` = N the model trains on one fixed set of N trials (the
    low-data regime); held-out evaluation trials are always separate.
    ``data_workers`` processes sample the coming banks while the model trains
    (0 = sample in the training process); results do not depend on it. The
    workers die with the training process. Where Python starts processes by
    spawning (macOS, Windows), a script that trains needs the usual
    ``if __name__ == "__main__":`` guard, or ``data_workers=0``.
    ``bank_cache``: a directory where sampled banks (and the fixed training
    set) are stored as ``.npz`` files named by a hash of everything that
    determines them (task, its options, weighting, size, seed, package and
    NeuroGym versions), so a rerun or another run on the same task loads them
    instead of sampling again (None = no cache). It does not change results.

    ``device``: where the model, its optimiser state and each step's tensors
    live (cpu, cuda, auto). Initial weights and recurrent noise are drawn on
    the CPU, so a seed gives the same initial weights and noise on any device;
    the arithmetic differs in rounding between devices. A Trainer records the
    device it resolved (``auto`` becomes ``cpu`` or ``cuda``) in config.json.

    Bookkeeping: ``checkpoint_every`` steps, ``eval_every`` steps on
    ``eval_trials`` held-out trials, and ``target_accuracy`` (stop once the
    held-out decision accuracy reaches it; 0 = never stop early).

    Every field's accepted values are in :data:`CONSTRAINTS`; besides them,
    ``n_nonlinear`` is required for model ``alrnn`` and lies in [0, n_units].
    """

    task: str = _setting("stimulus-selection", Constraint("text"), "task name (see `neuroalrnn tasks`)")
    task_kwargs: dict[str, Any] = _setting(
        {}, Constraint("mapping"), "task constructor option, e.g. sigma=0.3 (value parsed as JSON if it can be)")
    model: str = _setting("alrnn", Constraint("choice", choices=tuple(MODEL_KINDS)), "the model kind")
    n_units: int = _setting(64, POSITIVE_INTEGER, "M, the number of units")
    n_nonlinear: int | None = _setting(4, Constraint("integer", minimum=0, optional=True),
                                       "P, the number of ReLU units (alrnn only)")
    noise_std: float = _setting(0.0, NON_NEGATIVE_NUMBER, "recurrent noise std σ_rec while training")
    slope: float = _setting(0.0, FRACTION, "leaky slope α of the P units (0 = ReLU, 1 = linear)")
    init: str = _setting("stable", Constraint("choice", choices=INITIALISATIONS), "initialisation (see ALRNN)")
    weighting: str = _setting("epoch", Constraint("choice", choices=WEIGHTINGS),
                              "loss weights: epoch (each epoch of a trial equal), uniform, or yang "
                              "(Yang et al. 2019's cost mask)")
    decision_weight: float = _setting(1.0, NON_NEGATIVE_NUMBER, "extra factor on the loss of decision steps")
    steps: int = _setting(2000, POSITIVE_INTEGER, "training steps")
    batch_size: int = _setting(32, POSITIVE_INTEGER, "trials per step")
    optimizer: str = _setting("adam", Constraint("choice", choices=OPTIMIZERS), "the optimiser")
    lr: float = _setting(3e-3, Constraint("number", minimum=0, above_minimum=True), "learning rate")
    schedule: str = _setting("cosine", Constraint("choice", choices=SCHEDULES),
                             "learning-rate schedule: constant, cosine (to 5 % of lr) or step (x0.1 at 2/3)")
    grad_clip: float = _setting(1.0, NON_NEGATIVE_NUMBER, "max global gradient norm (0 = off)")
    seed: int = _setting(0, NON_NEGATIVE_INTEGER, "seed of initialisation, trials and noise")
    checkpoint_every: int = _setting(250, POSITIVE_INTEGER, "steps between checkpoints")
    eval_every: int = _setting(100, POSITIVE_INTEGER, "steps between held-out evaluations")
    eval_trials: int = _setting(500, POSITIVE_INTEGER, "held-out trials per evaluation")
    target_accuracy: float = _setting(0.0, FRACTION,
                                      "stop once held-out decision accuracy reaches this (0 = train all steps)")
    data_workers: int = _setting(1, NON_NEGATIVE_INTEGER,
                                 "processes sampling trials while the model trains (0 = none; results do not "
                                 "depend on it)")
    bank_size: int = _setting(2048, NON_NEGATIVE_INTEGER,
                              "trials per pre-sampled bank (0 = fresh trials every step)")
    bank_reuse: int = _setting(4, POSITIVE_INTEGER, "times each bank trial is used on average before a new bank")
    train_trials: int | None = _setting(None, Constraint("integer", minimum=1, optional=True),
                                        "train on one fixed set of N trials (low-data regime); "
                                        "evaluation stays held out")
    fast_step: bool = _setting(True, Constraint("flag"), "train the AL-RNN with the fast step (else plain autograd)")
    device: str = _setting("cpu", Constraint("choice", choices=DEVICES),
                           "where the model and each step's tensors live: cpu, cuda, or auto (cuda when "
                           "available); a run records the device it used")
    bank_cache: str | None = _setting(None, Constraint("text", optional=True),
                                      "cache sampled trial banks in this directory, keyed by the task's "
                                      "full configuration")

    def __post_init__(self) -> None:
        for name, constraint in CONSTRAINTS.items():
            constraint.check(name, getattr(self, name))
        if self.model == "alrnn":
            if self.n_nonlinear is None:
                raise ValueError("n_nonlinear (P) is required for model 'alrnn'")
            if not 0 <= self.n_nonlinear <= self.n_units:
                raise ValueError(
                    f"n_nonlinear (P) must lie in [0, n_units={self.n_units}], got {self.n_nonlinear}"
                )

    @classmethod
    def for_task(cls, **values: Any) -> TrainConfig:
        """The config of ``values``, with the task's training settings (:data:`TASK_TRAINING`) for fields not given.

        ``task_kwargs`` merge: the task's come first, the given ones override them.
        """
        task = values.get("task", cls.task)
        preset = {name: dict(value) if isinstance(value, Mapping) else value
                  for name, value in TASK_TRAINING.get(task, {}).items()}
        if "task_kwargs" in values and "task_kwargs" in preset:
            values = {**values, "task_kwargs": {**preset["task_kwargs"], **values["task_kwargs"]}}
        return cls(**{**preset, **values})

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> TrainConfig:
        """The config of a ``config.json``'s fields; renamed keys (:data:`RENAMED_FIELDS`) mapped, unknown refused."""
        if not isinstance(values, Mapping):
            raise ValueError(f"a config must be a JSON object of TrainConfig fields, got {type(values).__name__}")
        values = dict(values)
        for old, new in RENAMED_FIELDS.items():
            if old in values:
                if new in values:
                    raise ValueError(f"config has both {old!r} and its new name {new!r}; keep only {new!r}")
                values[new] = values.pop(old)
        unknown = sorted(set(values) - set(CONSTRAINTS))
        if unknown:
            raise ValueError(f"unknown config keys {unknown}; valid keys: {sorted(CONSTRAINTS)}")
        return cls(**values)

    def replace(self, **changes: Any) -> TrainConfig:
        return dataclasses.replace(self, **changes)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)


CONSTRAINTS: dict[str, Constraint] = {
    item.name: item.metadata["constraint"] for item in dataclasses.fields(TrainConfig)
}
"""Field name -> the values it accepts: the one table every check of a TrainConfig value uses."""

# Yang et al. (2019)'s training settings (github.com/gyyang/multitask, train.py get_default_hp):
# batch 64, Adam, fresh trials every step, one task and one timing per batch, the least-squares cost
# mask, and recurrent noise σ_rec = 0.05 entering his leaky update
# h_t = (1 − α) h_{t−1} + α f(… + √(2/α) σ_rec ξ_t) with α = dt/τ = 0.2: on the state that is a
# std of α·√(2/α)·σ_rec = √(2α)·σ_rec, the σ_rec our update z_t = … + σ_rec ξ_t adds directly.
# One departure: lr 1e-4, not his 1e-3. His W enters the state update scaled by α = 0.2, ours
# directly, so an Adam step moves our regimes' maps 5× as far; at M = 256, P = 16 lr 1e-3 diverged
# (NaN loss at step 387) and 3e-4 overflowed on long trials by step 600, while 1e-4 kept every
# state bounded (docs/tasks.md).
YANG_RECURRENT_NOISE = math.sqrt(2 * 0.2) * 0.05
TASK_TRAINING: dict[str, dict[str, Any]] = {
    "yang19-faithful": {
        "weighting": "yang", "noise_std": YANG_RECURRENT_NOISE, "batch_size": 64, "optimizer": "adam",
        "lr": 1e-4, "schedule": "constant", "bank_size": 0, "task_kwargs": {"trials_per_draw": 64},
    },
}  # fmt: skip
"""Task name -> the training settings :meth:`TrainConfig.for_task` (the CLI, sweeps) uses unless told otherwise."""

RENAMED_FIELDS: dict[str, str] = {}
"""Old config.json key -> its current TrainConfig field, mapped by :meth:`TrainConfig.from_dict`.

No field has been renamed since the first release; a rename adds its entry here
so that older run directories stay readable.
"""
