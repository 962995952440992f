"""Train N runs of one task as one batched model (a pack), each ending as an ordinary run directory.

A sweep trains the same task at many P values and seeds; at M = 32–64 a
training step is mostly fixed per-step cost, so N small networks trained as
one :class:`~neuroalrnn.models.pack.PackedALRNN` take far fewer steps' worth
of that cost than N separate runs. :class:`PackTrainer` keeps every network
what it would be alone: each gets, to rounding, the weights the
:class:`~neuroalrnn.training.Trainer` gives it with the same config (its own
initialisation, training trials, recurrent-noise stream, loss, gradient
clipping, learning-rate schedule and Adam state), and each run directory is
written by a solo ``Trainer`` of that run, so ``load_run``, ``evaluate``,
``analyze`` and ``Trainer.resume`` see no difference.

:func:`time_pack` measures trained network-steps per second, packed against
solo Trainers run one after another (``benchmarks/pack_speed.py`` prints it).
"""

from __future__ import annotations

import contextlib
import json
import math
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from ..models import PARAMETER_NAMES
from ..models.pack import PackedALRNN
from .config import TrainConfig
from .rundir import (
    CHECKPOINT_FILE,
    RunDirectoryError,
    read_config,
    read_config_record,
    remove_temporaries,
    sync_metrics,
    training_session,
    write_config,
    write_metrics,
)
from .trainer import (
    Trainer,
    TrainingDiverged,
    TrainingInterrupted,
    _deferred_interrupt,
    decision_accuracy,
    learning_rate,
    task_loss,
)

__all__ = ["PACK_FREE_FIELDS", "PackTrainer", "check_packable", "pack_groups", "time_pack"]

PACK_FREE_FIELDS = (
    "n_nonlinear", "seed", "lr", "schedule", "noise_std", "grad_clip", "slope", "init",
    "fast_step", "data_workers",
)
"""Config fields the runs of one pack may differ in; every other field must be equal.

The last two change how a solo run computes, never what: a pack trains with
the plain autograd forward of its packed model and samples trials in its own
process.
"""

ADAM_BETAS = (0.9, 0.999)
ADAM_EPS = 1e-8
"""torch.optim.Adam's defaults, which the Trainer uses."""


def check_packable(configs: Sequence[TrainConfig]) -> None:
    """Raise ValueError unless ``configs`` can be trained as one pack.

    Each must train an AL-RNN (``model="alrnn"``) with Adam, and all must be
    equal but in :data:`PACK_FREE_FIELDS`; the error names the first field
    that differs and its values.
    """
    configs = list(configs)
    if not configs:
        raise ValueError("a pack needs at least one config, got none")
    for index, config in enumerate(configs):
        if not isinstance(config, TrainConfig):
            raise TypeError(f"configs[{index}] must be a TrainConfig, got {type(config).__name__}")
        if config.model != "alrnn":
            raise ValueError(f"configs[{index}].model is {config.model!r}; only AL-RNNs ('alrnn') can be packed")
        if config.optimizer != "adam":
            raise ValueError(
                f"configs[{index}].optimizer is {config.optimizer!r}; a pack trains with Adam ('adam') only"
            )
    first = configs[0].to_dict()
    for index, config in enumerate(configs[1:], start=1):
        for name, value in config.to_dict().items():
            if name not in PACK_FREE_FIELDS and value != first[name]:
                raise ValueError(
                    f"configs[{index}].{name} is {value!r} but configs[0].{name} is {first[name]!r}: the runs of "
                    f"a pack may differ only in {', '.join(PACK_FREE_FIELDS)}; train them in separate packs"
                )


def pack_groups(configs: Sequence[TrainConfig], max_size: int) -> list[list[int]]:
    """Indices of ``configs`` grouped into packs of at most ``max_size`` packable runs.

    The n runs that can share packs are split into ceil(n / max_size) packs whose sizes differ by at most
    one (21 runs under a cap of 8: 7, 7, 7, not 8, 8, 5), taken in the order of their seeds (stable), so a
    pack holds as few seeds as it can: runs of one seed train on the same trials, which a pack samples
    once. Runs that cannot be packed with any other (not an AL-RNN trained with Adam) get a pack of their
    own; ``max_size=1`` gives one run per pack. The grouping depends only on ``configs`` and ``max_size``.
    """
    if isinstance(max_size, bool) or not isinstance(max_size, int) or max_size < 1:
        raise ValueError(f"max_size must be a positive integer, got {max_size!r}")
    groups: dict[Any, list[int]] = {}
    for index, config in enumerate(configs):
        if config.model != "alrnn" or config.optimizer != "adam":
            key: Any = ("alone", index)
        else:
            shared = {name: value for name, value in config.to_dict().items() if name not in PACK_FREE_FIELDS}
            key = json.dumps(shared, sort_keys=True, default=str)
        groups.setdefault(key, []).append(index)
    packs = []
    for members in groups.values():
        members = sorted(members, key=lambda index: configs[index].seed)
        n_packs = -(-len(members) // max_size)
        size, larger = divmod(len(members), n_packs)  # the first `larger` packs get one run more
        start = 0
        for position in range(n_packs):
            stop = start + size + (position < larger)
            packs.append(sorted(members[start:stop]))
            start = stop
    return packs


class PackTrainer:
    """Train N runs (``configs[i]`` into ``run_dirs[i]``) as one batched model.

    Each run gets, to rounding, what ``Trainer(configs[i], run_dirs[i]).fit()``
    gives it: the same initialisation, training trials (padded to the pack's
    longest batch; padded steps carry no loss weight), recurrent noise (a
    ``torch.Generator`` per network reproducing the stream the solo Trainer
    draws from torch's global RNG after ``torch.manual_seed(seed)``), loss,
    global-norm gradient clipping, learning-rate schedule and Adam update, and
    its held-out evaluations, checkpoints and metrics rows at the same steps.
    The losses of the networks are summed for one backward pass; their
    parameter blocks are disjoint, so each network's gradient is its own.

    A network whose loss or gradient norm becomes NaN or infinite stops at
    its last good weights; its run directory is left as a diverged solo run
    leaves it, and the :class:`TrainingDiverged` error (with the Trainer's
    message) is kept in ``errors[i]``. The other networks train on.
    ``wall_time`` and ``elapsed`` in each run are the pack's wall time.

    Checkpoints are written by a solo ``Trainer`` of each run (``trainers[i]``,
    into which the network's weights, Adam state and noise-generator state
    are copied), so a run is resumed alone by ``Trainer.resume`` or with its
    pack by :meth:`resume`. Ctrl-C or SIGTERM finishes the step, checkpoints
    every run and raises :class:`TrainingInterrupted`.

    Usage::

        pack = PackTrainer([config.replace(n_nonlinear=P) for P in (0, 2, 4)],
                           ["runs/P0", "runs/P2", "runs/P4"]).fit()
        pack = PackTrainer.resume(["runs/P0", "runs/P2", "runs/P4"]).fit()
    """

    def __init__(self, configs: Sequence[TrainConfig], run_dirs: Sequence[str | Path], *,
                 progress: bool = False) -> None:
        configs, run_dirs = list(configs), [Path(path) for path in run_dirs]
        if len(configs) != len(run_dirs):
            raise ValueError(f"configs and run_dirs must be as long; got {len(configs)} configs and "
                             f"{len(run_dirs)} run directories")
        check_packable(configs)
        trainers = [Trainer(config, run_dir, progress=False) for config, run_dir in zip(configs, run_dirs, strict=True)]
        self._setup(trainers, rng_states=None, progress=progress)

    @classmethod
    def resume(cls, run_dirs: Sequence[str | Path], *, steps: int | None = None,
               bank_cache: str | Path | None = None, progress: bool = False) -> PackTrainer:
        """Continue the runs in ``run_dirs`` from their checkpoints, as one pack.

        Each run is restored by ``Trainer.resume`` (its checks apply, and
        ``steps`` and ``bank_cache`` mean what they mean there); the restored
        configs must be packable (:func:`check_packable`). Runs at different
        steps are fine: a run behind the others trains alone until it has
        caught up.
        """
        trainers, rng_states = [], []
        for run_dir in run_dirs:
            trainers.append(Trainer.resume(run_dir, steps=steps, bank_cache=bank_cache, progress=False))
            # Trainer.resume sets torch's global RNG to the run's noise stream: that is its state.
            rng_states.append(torch.get_rng_state())
        check_packable([trainer.config for trainer in trainers])
        pack = cls.__new__(cls)
        pack._setup(trainers, rng_states=rng_states, progress=progress)
        return pack

    def _setup(self, trainers: list[Trainer], rng_states: list[torch.Tensor] | None, progress: bool) -> None:
        folders = [trainer.run_dir.resolve() for trainer in trainers]
        if len(set(folders)) != len(folders):
            repeated = sorted({str(path) for path in folders if folders.count(path) > 1})
            raise ValueError(f"run_dirs must differ; repeated: {', '.join(repeated)}")
        self.trainers = trainers
        self.configs = [trainer.config for trainer in trainers]
        self.run_dirs = [trainer.run_dir for trainer in trainers]
        self.progress = progress
        self.model = PackedALRNN.from_models([trainer.model for trainer in trainers])
        self.generators = []  # on the CPU, as the solo run's noise (neuroalrnn.models.alrnn.recurrent_noise)
        for index, config in enumerate(self.configs):
            generator = torch.Generator()
            if rng_states is None:
                generator.manual_seed(config.seed)
            else:
                generator.set_state(rng_states[index])
            self.generators.append(generator)
        # Adam's state, stacked like the parameters; the step count per network.
        parameters = [getattr(self.model, name) for name in PARAMETER_NAMES]
        self._exp_avg = [torch.zeros_like(parameter) for parameter in parameters]
        self._exp_avg_sq = [torch.zeros_like(parameter) for parameter in parameters]
        self._adam_steps = [0] * len(trainers)
        for index, trainer in enumerate(trainers):
            for position, parameter in enumerate(trainer.model.parameters()):
                state = trainer.optimizer.state.get(parameter)
                if state:
                    self._exp_avg[position][index] = state["exp_avg"]
                    self._exp_avg_sq[position][index] = state["exp_avg_sq"]
                    self._adam_steps[index] = int(state["step"])
        self.errors: list[TrainingDiverged | None] = [None] * len(trainers)
        self._locks: list[contextlib.ExitStack | None] = [None] * len(trainers)
        self._failed = [False] * len(trainers)

    @property
    def n_networks(self) -> int:
        return len(self.trainers)

    def _running(self, index: int) -> bool:
        trainer = self.trainers[index]
        return self.errors[index] is None and not trainer.stopped_early and trainer.step < trainer.config.steps

    # ------------------------------------------------------------------------- the loop

    def fit(self) -> PackTrainer:
        """Train every run to its end (or its accuracy criterion, or divergence); returns ``self``.

        Refuses (RunDirectoryError, before anything is written) a new run whose
        directory already holds a run. A run that fails or is stopped before
        its first checkpoint leaves nothing behind, as with ``Trainer.fit``.
        """
        for trainer in self.trainers:
            if trainer.saved_step is None and (trainer.run_dir / CHECKPOINT_FILE).exists():
                raise RunDirectoryError(
                    f"{trainer.run_dir} already holds a run; resume it (--resume) or choose another output directory"
                )
        try:
            for index in range(self.n_networks):
                self._open(index)
            self._train()
        except BaseException:
            for index in range(self.n_networks):
                self._close(index, failed=True)
            raise
        for index in range(self.n_networks):
            self._close(index, failed=False)
        return self

    def _open(self, index: int) -> None:
        """Lock run ``index`` and write its config (new run) or bring its metrics.csv to its checkpoint (resumed)."""
        trainer = self.trainers[index]
        stack = contextlib.ExitStack()
        self._locks[index] = stack
        stack.enter_context(training_session(
            trainer.run_dir, resumed=trainer.saved_step is not None, saved=lambda: trainer.saved_step is not None,
            failed=lambda: self._failed[index] or self.errors[index] is not None))
        remove_temporaries(trainer.run_dir)
        if trainer.saved_step is None:
            write_config(trainer.run_dir, trainer.config)
        else:
            if read_config(trainer.run_dir) != trainer.config:  # e.g. a new number of steps
                write_config(trainer.run_dir, trainer.config,
                             created=read_config_record(trainer.run_dir).get("created"))
            sync_metrics(trainer.run_dir, trainer.metrics)

    def _close(self, index: int, *, failed: bool) -> None:
        """Release run ``index``; a run that failed before its first checkpoint leaves nothing (as Trainer.fit)."""
        stack, self._locks[index] = self._locks[index], None
        if stack is None:
            return
        self._failed[index] = failed
        stack.close()

    def _train(self) -> None:
        total = max(config.steps for config in self.configs)
        bar = tqdm(total=total, initial=min(trainer.step for trainer in self.trainers), desc="training pack",
                   unit="step", disable=not self.progress, dynamic_ncols=True,
                   mininterval=0.2 if sys.stderr.isatty() else 10.0)
        started = time.perf_counter()
        elapsed_before = [trainer.elapsed for trainer in self.trainers]
        in_step = False
        with _deferred_interrupt() as interrupt:
            try:
                while any(self._running(index) for index in range(self.n_networks)):
                    running = [index for index in range(self.n_networks) if self._running(index)]
                    step = min(self.trainers[index].step for index in running)
                    # Runs ahead of the others (resumed from later checkpoints) wait for them.
                    active = [index for index in running if self.trainers[index].step == step]
                    batches = self._sample(active, step)
                    in_step = True  # until every network's metrics row is in: an abrupt stop here saves nothing
                    self._step(batches, started, elapsed_before)
                    in_step = False
                    bar.update(min(self.trainers[index].step for index in running) - bar.n)
                    if interrupt.requested is not None:
                        raise TrainingInterrupted(interrupt.requested)
                with interrupt.shielded():
                    for index in range(self.n_networks):
                        trainer = self.trainers[index]
                        if self.errors[index] is None and trainer.saved_step != trainer.step:
                            self._save(index)
            except KeyboardInterrupt:
                if not in_step:  # between steps every network is consistent: keep them
                    with interrupt.shielded():
                        for index in range(self.n_networks):
                            trainer = self.trainers[index]
                            if self.errors[index] is None and trainer.step > 0 and trainer.saved_step != trainer.step:
                                self._save(index)
                raise
            finally:
                bar.close()

    def _sample(self, active: list[int], step: int) -> dict[int, Any]:
        """Step ``step``'s training batch of each network in ``active``.

        A pack's configs agree in every data setting but the seed, so networks
        of one seed train on the same trials: they are sampled once, by the
        first of them (bank sampling costs about as much as training at M = 32).
        """
        sampled: dict[int, Any] = {}
        batches = {}
        for index in active:
            seed = self.configs[index].seed
            if seed not in sampled:
                sampled[seed] = self.trainers[index].sample_batch(step)
            batches[index] = sampled[seed]
        return batches

    def _step(self, batches: dict[int, Any], started: float, elapsed_before: list[float]) -> None:
        """One training update of the networks in ``batches`` (index -> its batch); the others stay as they are."""
        model = self.model
        device, dtype = model.A.device, model.A.dtype
        active = list(batches)
        n_trials = max(batch.n_trials for batch in batches.values())
        n_steps = max(batch.n_steps for batch in batches.values())
        inputs = torch.zeros(self.n_networks, n_trials, n_steps, model.n_inputs, dtype=dtype, device=device)
        noise = torch.zeros(self.n_networks, n_trials, n_steps, model.n_units, dtype=dtype, device=device)
        any_noise = False
        for index, batch in batches.items():
            inputs[index, : batch.n_trials, : batch.n_steps] = torch.from_numpy(batch.inputs)
            sigma = model.noise_stds[index]
            if sigma > 0:  # the draw ALRNN.forward makes: σ · randn_like(drive), drive (trial, time, M)
                draw = torch.randn(batch.n_trials, batch.n_steps, model.n_units, dtype=dtype,
                                   generator=self.generators[index]).to(device)
                noise[index, : batch.n_trials, : batch.n_steps] = sigma * draw
                any_noise = True
        model.train()
        outputs, _ = model(inputs, noise=noise if any_noise else None)
        losses = {index: task_loss(outputs[index, : batch.n_trials, : batch.n_steps], batch)
                  for index, batch in batches.items()}
        values = dict(zip(losses, torch.stack(list(losses.values())).tolist(), strict=True))
        updating = []
        for index in active:
            if math.isfinite(values[index]):
                updating.append(index)
            else:
                self._diverge(index, f"loss is {values[index]}")
        parameters = [getattr(model, name) for name in PARAMETER_NAMES]
        for parameter in parameters:
            parameter.grad = None
        if updating:
            torch.stack([losses[index] for index in updating]).sum().backward()
            grads = [parameter.grad for parameter in parameters]
            # nn.utils.get_total_norm per network: the norm of the per-tensor norms.
            norms = torch.linalg.vector_norm(
                torch.stack([torch.linalg.vector_norm(grad.flatten(1), dim=1) for grad in grads], dim=1), dim=1)
            norm_values = norms.tolist()
            for index in list(updating):
                if not math.isfinite(norm_values[index]):
                    updating.remove(index)
                    self._diverge(index, f"gradient norm is {norm_values[index]}")
        rates = {index: learning_rate(self.configs[index], self.trainers[index].step) for index in active}
        if updating:
            self._clip(grads, norms, norm_values, updating)
            self._adam(parameters, grads, updating, rates)
        for parameter in parameters:
            parameter.grad = None
        elapsed = time.perf_counter() - started
        detached = outputs.detach()
        for index in updating:
            batch, trainer, config = batches[index], self.trainers[index], self.configs[index]
            accuracy = decision_accuracy(detached[index, : batch.n_trials, : batch.n_steps].cpu().numpy(), batch)
            trainer.step += 1
            trainer.elapsed = elapsed_before[index] + elapsed
            row = {"step": trainer.step, "loss": values[index], "accuracy": accuracy, "eval_accuracy": "",
                   "lr": rates[index], "wall_time": round(trainer.elapsed, 3)}
            if trainer.step % config.eval_every == 0 or trainer.step == config.steps:
                row["eval_accuracy"] = self._evaluate(index)
                if config.target_accuracy > 0 and row["eval_accuracy"] >= config.target_accuracy:
                    trainer.stopped_early = True
            trainer.metrics.append(row)
            if trainer.step % config.checkpoint_every == 0:
                self._save(index)

    def _evaluate(self, index: int) -> float:
        """Network ``index``'s held-out accuracy, by its Trainer's ``evaluate``.

        Networks of one seed share their evaluation trials (the Trainer draws
        them from the seed): they are sampled once, by the first of them.
        """
        trainer = self.trainers[index]
        if trainer._eval_batch is None:
            for other in self.trainers:
                if other.config.seed == trainer.config.seed and other._eval_batch is not None:
                    trainer._eval_batch = other._eval_batch
                    break
        self._copy_weights(index)
        return trainer.evaluate()

    def _clip(self, grads: list[torch.Tensor], norms: torch.Tensor, norm_values: list[float],
              updating: list[int]) -> None:
        """Trainer._update's clipping per network: by min(1, clip / (norm + 1e-6)) where norm > 0.99 clip."""
        factors = torch.ones_like(norms)
        clipped = False
        for index in updating:
            clip = self.configs[index].grad_clip
            if clip > 0 and norm_values[index] > 0.99 * clip:
                # clip_grads_with_norm_'s arithmetic: max_norm / (norm + 1e-6), clamped to 1.
                factors[index] = torch.clamp(clip / (norms[index] + 1e-6), max=1.0)
                clipped = True
        if clipped:
            for grad in grads:
                grad.mul_(factors.view(-1, *([1] * (grad.ndim - 1))))

    @torch.no_grad()
    def _adam(self, parameters: list[torch.Tensor], grads: list[torch.Tensor], updating: list[int],
              rates: dict[int, float]) -> None:
        """torch.optim.Adam's update (betas 0.9, 0.999; eps 1e-8) of the networks ``updating``, stacked.

        Per network n at its step k_n and learning rate lr_n:
        m ← β₁ m + (1 − β₁) g; v ← β₂ v + (1 − β₂) g²;
        θ ← θ − (lr_n / (1 − β₁^k_n)) m / (√v / √(1 − β₂^k_n) + ε).
        The other networks' weights and moments are left untouched.
        """
        beta1, beta2 = ADAM_BETAS
        n = self.n_networks
        step_size = torch.zeros(n, dtype=torch.float64)
        correction2 = torch.ones(n, dtype=torch.float64)
        for index in updating:
            self._adam_steps[index] += 1
            k = self._adam_steps[index]
            # The bias corrections in double precision, as torch.optim.Adam computes them.
            step_size[index] = rates[index] / (1 - beta1**k)
            correction2[index] = math.sqrt(1 - beta2**k)
        device, dtype = parameters[0].device, parameters[0].dtype
        mask = torch.zeros(n, dtype=torch.bool)
        mask[updating] = True
        every = len(updating) == n
        mask, step_size = mask.to(device), step_size.to(device=device, dtype=dtype)
        correction2 = correction2.to(device=device, dtype=dtype)
        for parameter, grad, exp_avg, exp_avg_sq in zip(parameters, grads, self._exp_avg, self._exp_avg_sq,
                                                        strict=True):
            shape = (-1, *([1] * (parameter.ndim - 1)))
            new_avg = exp_avg.lerp(grad, 1 - beta1)
            new_avg_sq = exp_avg_sq.mul(beta2).addcmul_(grad, grad, value=1 - beta2)
            denominator = (new_avg_sq.sqrt() / correction2.view(shape)).add_(ADAM_EPS)
            update = step_size.view(shape) * new_avg / denominator
            if every:
                exp_avg.copy_(new_avg)
                exp_avg_sq.copy_(new_avg_sq)
                parameter.sub_(update)
            else:
                keep = mask.view(shape)
                exp_avg.copy_(torch.where(keep, new_avg, exp_avg))
                exp_avg_sq.copy_(torch.where(keep, new_avg_sq, exp_avg_sq))
                parameter.copy_(torch.where(keep, parameter - update, parameter))

    def _diverge(self, index: int, what: str) -> None:
        """Stop network ``index`` where it is, as a diverged solo run stops (its message, its metrics.csv)."""
        trainer = self.trainers[index]
        try:
            trainer._diverged(what)
        except TrainingDiverged as error:
            self.errors[index] = error
        if self._locks[index] is not None:
            write_metrics(trainer.run_dir, trainer.metrics)  # the rows up to the failing step, for diagnosis
            self._close(index, failed=True)

    # ------------------------------------------------------------------------- run directories

    @torch.no_grad()
    def _copy_weights(self, index: int) -> None:
        trainer = self.trainers[index]
        for name in PARAMETER_NAMES:
            getattr(trainer.model, name).copy_(getattr(self.model, name)[index])

    def _save(self, index: int) -> None:
        """Write run ``index``'s checkpoint and metrics through its solo Trainer, holding the network's state."""
        self._copy_weights(index)
        trainer = self.trainers[index]
        optimizer = trainer.optimizer
        step = self._adam_steps[index]
        for position, parameter in enumerate(trainer.model.parameters()):
            previous = optimizer.state.get(parameter) or {}
            step_tensor = previous.get("step", torch.zeros((), dtype=torch.float32, device=parameter.device))
            optimizer.state[parameter] = {
                "step": step_tensor.new_full((), step),
                "exp_avg": self._exp_avg[position][index].clone(),
                "exp_avg_sq": self._exp_avg_sq[position][index].clone(),
            }
        if trainer.metrics:
            for group in optimizer.param_groups:  # as the Trainer leaves it: the last step's rate
                group["lr"] = trainer.metrics[-1]["lr"]
        # The checkpoint stores torch's global RNG state; lend it the network's noise stream meanwhile.
        global_state = torch.get_rng_state()
        torch.set_rng_state(self.generators[index].get_state())
        try:
            trainer.save()
        finally:
            torch.set_rng_state(global_state)

    def network(self, index: int):
        """Network ``index`` as a trained :class:`~neuroalrnn.models.ALRNN` (a copy)."""
        return self.model.network(index)


# ----------------------------------------------------------------------------- benchmark


def time_pack(n_networks: int = 21, *, n_units: int = 32, steps: int = 300, rounds: int = 3,
              p_values: Sequence[int] | None = None, config: TrainConfig | None = None) -> dict[str, Any]:
    """Trained network-steps per second: N networks as one pack vs N solo Trainers one after another.

    The networks are a P × seed grid like ``experiments/stimulus_selection_p.toml``'s AL-RNN part:
    network i has P = ``p_values[i % len(p_values)]`` (default 0, 1, 2, 4, 8, 16, 32, capped at
    M) and seed i // len(p_values), on ``config`` (default: stimulus selection at M = ``n_units``,
    batch 32, held-out evaluation of 500 trials every 100 steps), ``steps`` steps each. Trials
    are sampled in this process for both (``data_workers=0``); the solo runs use the fast step
    (the Trainer's default), the pack its autograd forward. Both are timed in this process,
    ``rounds`` times alternately, from construction to the last checkpoint; returns the median
    rates, their ratio (``speedup``) and every round's rates. Set ``torch.set_num_threads(1)``
    first for per-core figures.
    """
    base = config or TrainConfig(task="stimulus-selection", n_units=n_units, n_nonlinear=0, batch_size=32,
                                 eval_every=100, eval_trials=500)
    base = base.replace(steps=steps, data_workers=0)
    p_values = [min(P, base.n_units) for P in (p_values or (0, 1, 2, 4, 8, 16, 32))]
    configs = [base.replace(n_nonlinear=p_values[index % len(p_values)], seed=index // len(p_values))
               for index in range(n_networks)]
    packed, solo = [], []
    for _ in range(rounds):
        with tempfile.TemporaryDirectory() as folder:
            start = time.perf_counter()
            PackTrainer(configs, [Path(folder) / f"run{index}" for index in range(n_networks)]).fit()
            packed.append(n_networks * steps / (time.perf_counter() - start))
        with tempfile.TemporaryDirectory() as folder:
            start = time.perf_counter()
            for index, config in enumerate(configs):
                Trainer(config, Path(folder) / f"run{index}", progress=False).fit()
            solo.append(n_networks * steps / (time.perf_counter() - start))
    result: dict[str, Any] = {
        "n_networks": n_networks, "n_units": base.n_units, "steps": steps, "batch_size": base.batch_size,
        "n_seeds": len({config.seed for config in configs}), "rounds": rounds, "threads": torch.get_num_threads(),
        "packed_network_steps_per_s": statistics.median(packed), "solo_network_steps_per_s": statistics.median(solo),
    }
    result["speedup"] = result["packed_network_steps_per_s"] / result["solo_network_steps_per_s"]
    result["packed_rounds"], result["solo_rounds"] = packed, solo
    return result
