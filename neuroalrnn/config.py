"""The training configuration: one frozen, validated dataclass, saved as config.json."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

from .envs.trials import WEIGHTINGS
from .models import INITIALISATIONS, MODEL_KINDS

OPTIMIZERS = ("adam", "radam")
SCHEDULES = ("constant", "cosine", "step")


@dataclass(frozen=True)
class TrainConfig:
    """Everything needed to rebuild a training run.

    Model: ``model`` (see ``MODEL_KINDS``), ``n_units`` (M), ``n_nonlinear``
    (P; AL-RNN only), ``noise_std`` (recurrent noise σ_rec while training),
    ``slope`` (α of the nonlinear units), ``init``.

    Task: ``task`` name and ``task_kwargs`` for its constructor; the loss
    weighting ``weighting`` ("epoch": each epoch of a trial weighs the same;
    "uniform") times ``decision_weight`` on decision steps.

    Optimisation: ``steps`` of ``batch_size`` fresh trials, ``optimizer``
    (adam, radam), ``lr`` with ``schedule`` (constant; cosine to 5 % of lr;
    step: ×0.1 at 2/3 of the steps), ``grad_clip`` (max global L2 norm; 0 = off),
    ``seed``.

    ``fast_step``: train AL-RNNs with :func:`neuroalrnn.fast.alrnn_forward_fast`
    (hand-written backward through time, gradients tested against autograd)
    instead of autograd through ``ALRNN.forward``.

    Data: trials are pre-sampled into banks of ``bank_size`` trials; each
    step draws ``batch_size`` of them, and a new bank is drawn after
    ``bank_reuse`` × bank_size / batch_size steps, so each trial is used about
    ``bank_reuse`` times (``bank_size=0``: fresh trials every step). With
    ``train_trials`` = N the model trains on one fixed set of N trials (the
    low-data regime); held-out evaluation trials are always separate.
    ``data_workers`` processes sample the coming banks while the model trains
    (0 = sample in the training process); results do not depend on it.
    ``bank_cache``: a directory where sampled banks (and the fixed training
    set) are stored as ``.npz`` files named by a hash of everything that
    determines them (task, its options, weighting, size, seed, package and
    NeuroGym versions), so a rerun or another run on the same task loads them
    instead of sampling again (None = no cache). It does not change results.

    Bookkeeping: ``checkpoint_every`` steps, ``eval_every`` steps on
    ``eval_trials`` held-out trials, and ``target_accuracy`` (stop once the
    held-out decision accuracy reaches it; 0 = never stop early).
    """

    task: str = "stimulus-selection"
    task_kwargs: dict[str, Any] = field(default_factory=dict)
    model: str = "alrnn"
    n_units: int = 64
    n_nonlinear: int | None = 4
    noise_std: float = 0.0
    slope: float = 0.0
    init: str = "stable"
    weighting: str = "epoch"
    decision_weight: float = 1.0
    steps: int = 2000
    batch_size: int = 32
    optimizer: str = "adam"
    lr: float = 3e-3
    schedule: str = "cosine"
    grad_clip: float = 1.0
    seed: int = 0
    checkpoint_every: int = 250
    eval_every: int = 100
    eval_trials: int = 500
    target_accuracy: float = 0.0
    data_workers: int = 0
    bank_size: int = 2048
    bank_reuse: int = 4
    train_trials: int | None = None
    fast_step: bool = True
    bank_cache: str | None = None

    def __post_init__(self) -> None:
        _choice("model", self.model, tuple(MODEL_KINDS))
        _choice("optimizer", self.optimizer, OPTIMIZERS)
        _choice("schedule", self.schedule, SCHEDULES)
        _choice("weighting", self.weighting, WEIGHTINGS)
        _choice("init", self.init, INITIALISATIONS)
        for name in ("n_units", "steps", "batch_size", "checkpoint_every", "eval_every", "eval_trials"):
            _positive_int(name, getattr(self, name))
        if self.model == "alrnn":
            if self.n_nonlinear is None:
                raise ValueError("n_nonlinear (P) is required for model 'alrnn'")
            if isinstance(self.n_nonlinear, bool) or not isinstance(self.n_nonlinear, int):
                raise ValueError(f"n_nonlinear must be an integer, got {self.n_nonlinear!r}")
            if not 0 <= self.n_nonlinear <= self.n_units:
                raise ValueError(
                    f"n_nonlinear (P) must lie in [0, n_units={self.n_units}], got {self.n_nonlinear}"
                )
        for name in ("noise_std", "grad_clip", "decision_weight"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if not 0 <= self.slope <= 1:
            raise ValueError(f"slope must lie in [0, 1], got {self.slope}")
        if not 0 <= self.target_accuracy <= 1:
            raise ValueError(f"target_accuracy must lie in [0, 1], got {self.target_accuracy}")
        if not isinstance(self.fast_step, bool):
            raise ValueError(f"fast_step must be True or False, got {self.fast_step!r}")
        for name in ("bank_size", "data_workers", "seed"):
            _non_negative_int(name, getattr(self, name))
        _positive_int("bank_reuse", self.bank_reuse)
        if self.train_trials is not None:
            _positive_int("train_trials", self.train_trials)
        if self.bank_cache is not None and not isinstance(self.bank_cache, str):
            raise ValueError(f"bank_cache must be a directory path (str) or None, got {self.bank_cache!r}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise ValueError(f"unknown config keys {sorted(unknown)}; valid keys: {sorted(known)}")
        return cls(**values)

    def replace(self, **changes: Any) -> TrainConfig:
        return dataclasses.replace(self, **changes)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)


def _choice(name: str, value: Any, valid: tuple[str, ...]) -> None:
    if value not in valid:
        raise ValueError(f"{name} must be one of {', '.join(valid)}; got {value!r}")


def _positive_int(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


def _non_negative_int(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name} must be an integer >= 0, got {value!r}")
