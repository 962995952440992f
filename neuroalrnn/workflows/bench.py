"""`neuroalrnn bench`: training speed against the status quo, in one process, interleaved.

Four comparisons, each repeated in alternating rounds so that a noisy shared
machine slows both sides alike; medians are printed with their ratios.

(a) the status quo a user writes today: ``ngym.Dataset`` batches feeding a
    ``torch.nn.RNN`` (relu) plus linear readout, cross-entropy, Adam;
(b) our full training loop: the Trainer on the same task (stimulus selection
    at dt = 22 ms, ~100 steps per trial), with its data workers and the fast
    AL-RNN step — per-step time read off ``metrics.csv``'s wall clock;
(c) one training step alone (forward, loss, backward, Adam) on a fixed batch:
    ``nn.RNN`` vs the plain AL-RNN (autograd through the Python loop) vs the
    fast AL-RNN step (:mod:`neuroalrnn.models.fast`), at M = 128 / batch 32 and
    M = 256 / batch 128, 100 steps, with P = M / 16;
(d) producing one training batch (32 trials, ~100 steps): ``ngym.Dataset`` (per
    batch, its cache refills included) against ours, a trial bank of 2048
    trials from ``envs.sample_trials`` and the Trainer's ``batch_of_step`` (a
    ``.take`` of 32 trials) for each step — the bank's sampling, which the
    Trainer leaves to a data worker, is also shown spread over the steps that
    use the bank.

(e) a sweep: the AL-RNN part of ``experiments/stimulus_selection_p.toml`` (P = 0 … 32 × 3
    seeds at M = 32, 21 runs; fewer steps) run by ``neuroalrnn sweep`` as today's process pool
    (``pack=1``: one process per run, as many workers as cores) and packed (the default: packs
    of 8 runs, the same workers), in trained network-steps per second, start-up, evaluation
    and file writing included; and the same at M = 256 (P = 0, 16, 256 × 1 seed).

Peak memory: a fresh subprocess builds one variant, resets the kernel's
peak-RSS mark (``/proc/self/clear_refs``), runs 3 training steps and reports
the peak resident size during them (``VmHWM``) minus the resident size before
(``VmRSS``): the memory a training step needs on top of the set-up.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from ..models import ALRNN
from ..models.fast import alrnn_forward_fast
from ..system import resolve_device
from ..training import Trainer, batch_of_step, make_task, sample_chunk
from ..training.config import TrainConfig
from ..training.rundir import read_metrics

__all__ = ["run_benchmark", "sweep_benchmark"]

N_INPUTS, N_OUTPUTS, N_STEPS = 5, 3, 100
SIZES = ((128, 32), (256, 128))  # (units, batch)


def _rnn_step(units: int, batch: int, device: str = "cpu") -> Callable[[], None]:
    torch.manual_seed(0)
    rnn = nn.RNN(N_INPUTS, units, nonlinearity="relu", batch_first=True).to(device)
    readout = nn.Linear(units, N_OUTPUTS).to(device)
    optimizer = torch.optim.Adam([*rnn.parameters(), *readout.parameters()], lr=1e-3)
    inputs, targets = _fixed_batch(batch, device)

    def step() -> None:
        latents, _ = rnn(inputs)
        loss = nn.functional.cross_entropy(readout(latents).flatten(0, 1), targets.flatten())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def _alrnn_step(units: int, batch: int, fast: bool, device: str = "cpu") -> Callable[[], None]:
    """One AL-RNN training step: the plain model (autograd through the Python loop), or the fast step."""
    torch.manual_seed(0)
    model = ALRNN(N_INPUTS, N_OUTPUTS, units, units // 16).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    inputs, targets = _fixed_batch(batch, device)

    def step() -> None:
        outputs, _ = alrnn_forward_fast(model, inputs) if fast else model(inputs)
        loss = nn.functional.cross_entropy(outputs.flatten(0, 1), targets.flatten())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def _fixed_batch(batch: int, device: str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    inputs = torch.randn(batch, N_STEPS, N_INPUTS, generator=generator)
    targets = torch.randint(0, N_OUTPUTS, (batch, N_STEPS), generator=generator)
    return inputs.to(device), targets.to(device)


def _status_quo_loop(units: int, batch: int, device: str = "cpu") -> Callable[[], None]:
    """ngym.Dataset + nn.RNN on the stimulus-selection task, one training step per call."""
    import neurogym as ngym

    env = make_task(_task_config(units, batch))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # neurogym's own deprecation and wrapper warnings
        dataset = ngym.Dataset(env, batch_size=batch, seq_len=N_STEPS)
    torch.manual_seed(0)
    rnn = nn.RNN(env.observation_space.shape[0], units, nonlinearity="relu").to(device)
    readout = nn.Linear(units, env.action_space.n).to(device)
    optimizer = torch.optim.Adam([*rnn.parameters(), *readout.parameters()], lr=1e-3)

    def step() -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            observations, labels = dataset()
        latents, _ = rnn(torch.from_numpy(observations).float().to(device))
        labels = torch.from_numpy(labels).flatten().long().to(device)
        loss = nn.functional.cross_entropy(readout(latents).flatten(0, 1), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def _task_config(units: int, batch: int, steps: int = 1, workers: int = 1, device: str = "cpu") -> TrainConfig:
    return TrainConfig(task_kwargs={"dt": 22}, n_units=units, n_nonlinear=units // 16, batch_size=batch,
                       steps=steps, eval_every=steps, eval_trials=batch, checkpoint_every=steps, seed=0,
                       data_workers=workers, device=device)


def _our_loop_seconds_per_step(units: int, batch: int, steps: int, device: str = "cpu") -> float:
    """Mean wall time per step of the Trainer (data workers, fast step), from metrics.csv.

    Steps 3 .. steps−1 only: the first ones include the workers' start, the
    last one the final evaluation.
    """
    with tempfile.TemporaryDirectory() as folder:
        Trainer(_task_config(units, batch, steps, device=device), folder, progress=False).fit()
        wall = np.array([row["wall_time"] for row in read_metrics(folder)])
    return float((wall[-2] - wall[2]) / (len(wall) - 4))


def _batch_production(units: int, batch: int, rounds: int) -> dict[str, float]:
    """Seconds per training batch (medians over rounds of per-round means): ngym.Dataset, and ours.

    Ours: ``take``, the Trainer's ``batch_of_step`` from a bank; ``bank``, sampling a bank (once per
    ``steps_per_bank`` batches); ``ours``, both per batch.
    """
    import neurogym as ngym

    config = _task_config(units, batch).replace(bank_cache=None)  # always sample, never read a cached bank
    steps_per_bank = config.bank_size * config.bank_reuse // config.batch_size
    env = make_task(config)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dataset = ngym.Dataset(make_task(config), batch_size=batch, seq_len=N_STEPS)
        dataset()
    times: dict[str, list[float]] = {"ngym": [], "bank": [], "take": []}
    for bank in range(rounds):
        # As many ngym batches as a bank serves, so that its cache refills (every few batches) average out.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            times["ngym"].append(sum(_time(dataset, steps_per_bank)) / steps_per_bank)
        start = time.perf_counter()
        chunk = sample_chunk(env, config, bank)
        times["bank"].append(time.perf_counter() - start)
        steps = iter(range(steps_per_bank))
        takes = _time(lambda chunk=chunk, steps=steps: batch_of_step(config, chunk, next(steps)), steps_per_bank)
        times["take"].append(sum(takes) / steps_per_bank)
    medians = {name: statistics.median(values) for name, values in times.items()}
    return {**medians, "steps_per_bank": steps_per_bank, "bank_size": config.bank_size,
            "ours": medians["take"] + medians["bank"] / steps_per_bank}


def _time(step: Callable[[], None], repeats: int, device: str = "cpu") -> list[float]:
    """Wall times of ``repeats`` calls; on a GPU each waits for the device's queued work to finish."""
    synchronise = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    times = []
    for _ in range(repeats):
        synchronise()
        start = time.perf_counter()
        step()
        synchronise()
        times.append(time.perf_counter() - start)
    return times


def _peak_memory_mb(variant: str, units: int, batch: int) -> float:
    """Peak extra resident memory (MB) of 3 training steps of ``variant`` in a fresh process (Linux)."""
    code = (
        "import json, torch; torch.set_num_threads(1)\n"
        "from neuroalrnn.workflows import bench\n"
        f"step = bench._make({variant!r}, {units}, {batch})\n"
        "before = bench._status_kib('VmRSS')\n"
        "open('/proc/self/clear_refs', 'w').write('5')\n"  # resets the peak mark (VmHWM) to the current RSS
        "for _ in range(3): step()\n"
        "print(json.dumps((bench._status_kib('VmHWM') - before) / 1024))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=600)
    return json.loads(result.stdout.strip().splitlines()[-1])


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


def _make(variant: str, units: int, batch: int, device: str = "cpu") -> Callable[[], None]:
    return {
        "nn.RNN": lambda: _rnn_step(units, batch, device),
        "AL-RNN plain": lambda: _alrnn_step(units, batch, fast=False, device=device),
        "AL-RNN fast": lambda: _alrnn_step(units, batch, fast=True, device=device),
        "status quo loop": lambda: _status_quo_loop(units, batch, device),
    }[variant]()


SWEEP_GRIDS = {  # units -> (P values, seeds, steps) of benchmark (e)
    32: ((0, 1, 2, 4, 8, 16, 32), (0, 1, 2), 300),
    256: ((0, 16, 256), (0,), 40),
}


def _sweep_rate(units: int, pack: int | None, workers: int, device: str = "cpu") -> float:
    """Trained network-steps per second of benchmark (e)'s grid at ``units``, swept with ``pack``."""
    from .sweeps import parse_experiment, run_sweep

    p_values, seeds, steps = SWEEP_GRIDS[units]
    text = (f'name = "bench"\n[fixed]\ntask = "stimulus-selection"\nn_units = {units}\nsteps = {steps}\n'
            f'batch_size = 32\neval_every = 100\neval_trials = 200\ndevice = "{device}"\n'
            f"[grid]\nn_nonlinear = {list(p_values)}\nseed = {list(seeds)}\n[evaluate]\ntrials = 200\n")
    with tempfile.TemporaryDirectory() as folder:
        experiment = parse_experiment(text, out=folder)
        start = time.perf_counter()
        run_sweep(experiment, workers=workers, progress=False, pack=pack)
        seconds = time.perf_counter() - start
    return len(p_values) * len(seeds) * steps / seconds


def sweep_benchmark(rounds: int = 1, log: Callable[[str], None] = print, device: str = "cpu",
                    workers: int | None = None) -> dict:
    """(e): a sweep's trained network-steps per second, process pool (pack=1) vs packed; medians of ``rounds``.

    ``workers``: the sweeps' worker processes (default: the usable cores; 0 = in this process).
    """
    from ..system import available_cores

    workers = available_cores() if workers is None else workers
    results = {}
    log(f"\n(e) a P x seed sweep on stimulus selection, {workers} workers: network-steps per second")
    for units, (p_values, seeds, steps) in SWEEP_GRIDS.items():
        pool, packed = [], []
        for _ in range(rounds):
            pool.append(_sweep_rate(units, 1, workers, device))
            packed.append(_sweep_rate(units, None if units <= 64 else 8, workers, device))
        rates = {"pool": statistics.median(pool), "packed": statistics.median(packed)}
        rates["speedup"] = rates["packed"] / rates["pool"]
        log(f"  M={units}, {len(p_values) * len(seeds)} runs x {steps} steps: process pool "
            f"{rates['pool']:7.0f}, packed {rates['packed']:7.0f}  ({rates['speedup']:.2f}x)")
        results[f"sweep_M{units}"] = rates
    return results


def run_benchmark(rounds: int = 5, repeats: int = 10, loop_steps: int = 40, memory: bool = True,
                  log: Callable[[str], None] = print, device: str = "cpu", sweep: bool = True,
                  sweep_workers: int | None = None) -> dict:
    """Run (a)–(e) and print a table; returns the medians (seconds) and ratios.

    ``device``: where (a)–(c) run, every side on the same device (cpu, cuda,
    auto); GPU timings wait for the device (``torch.cuda.synchronize``). The
    peak-memory subprocesses measure host memory and run on the CPU only.
    """
    device = resolve_device(device)
    results: dict = {"threads": torch.get_num_threads(), "device": device}
    where = torch.cuda.get_device_name() if device == "cuda" else "CPU"
    log(f"torch {torch.__version__} on {where}, {torch.get_num_threads()} thread(s); "
        f"medians over {rounds} interleaved rounds")
    variants = ("nn.RNN", "AL-RNN plain", "AL-RNN fast")

    log("\n(c) one training step alone (forward, loss, backward, Adam), 100 time steps")
    for units, batch in SIZES:
        steps = {name: _make(name, units, batch, device) for name in variants}
        times: dict[str, list[float]] = {name: [] for name in steps}
        for step in steps.values():
            step()  # warm-up
        for _ in range(rounds):
            for name, step in steps.items():
                times[name] += _time(step, repeats, device)
        medians = {name: statistics.median(t) for name, t in times.items()}
        base = medians["nn.RNN"]
        log(f"  M={units}, batch {batch}:")
        for name, value in medians.items():
            log(f"    {name:<17} {1e3 * value:8.2f} ms  ({value / base:.2f}x nn.RNN, {batch / value:8.0f} trials/s)")
        results[f"step_M{units}_B{batch}"] = {**medians, "fast_over_rnn": medians["AL-RNN fast"] / base,
                                              "plain_over_rnn": medians["AL-RNN plain"] / base}

    units, batch = SIZES[0]
    log(f"\n(a) status quo vs (b) our training loop, stimulus selection, M={units}, batch {batch}, ~100 steps/trial")
    log("  (time per step = a round's total time / its steps, so data-generation bursts count; median of rounds)")
    status_quo = _status_quo_loop(units, batch, device)
    status_quo()
    quo_times: list[float] = []
    our_times: list[float] = []
    for _ in range(rounds):
        quo_times.append(sum(_time(status_quo, loop_steps, device)) / loop_steps)
        our_times.append(_our_loop_seconds_per_step(units, batch, loop_steps, device))
    quo, ours = statistics.median(quo_times), statistics.median(our_times)
    log(f"  (a) ngym.Dataset + nn.RNN   {1e3 * quo:8.2f} ms/step  {batch / quo:8.0f} trials/s")
    log(f"  (b) neuroalrnn Trainer      {1e3 * ours:8.2f} ms/step  {batch / ours:8.0f} trials/s")
    log(f"  speed-up (b)/(a): {quo / ours:.2f}x trials per second")
    results["loop"] = {"status_quo": quo, "ours": ours, "speedup": quo / ours}

    log(f"\n(d) producing one training batch ({batch} trials × ~{N_STEPS} steps), stimulus selection")
    data = _batch_production(units, batch, rounds)
    log(f"  ngym.Dataset (cache refills included)  {1e3 * data['ngym']:8.3f} ms/batch")
    log(f"  trial bank: batch_of_step (.take)      {1e3 * data['take']:8.3f} ms/batch   "
        f"({data['ngym'] / data['take']:.0f}x faster; {100 * data['take'] / ours:.1f} % of our training step)")
    log(f"    + sampling the bank of {data['bank_size']} trials  {1e3 * data['bank']:8.1f} ms, once per "
        f"{data['steps_per_bank']} batches (in a data worker): {1e3 * data['ours']:.3f} ms/batch in all, "
        f"{data['ngym'] / data['ours']:.1f}x faster than ngym.Dataset")
    results["batch"] = {**data, "speedup_take": data["ngym"] / data["take"], "speedup": data["ngym"] / data["ours"]}

    if sweep:
        results.update(sweep_benchmark(log=log, device=device, workers=sweep_workers))

    if memory and device == "cpu":
        log("\npeak memory of 3 training steps above the set-up (VmHWM − VmRSS, fresh process each)")
        for units, batch in SIZES:
            row = {name: _peak_memory_mb(name, units, batch) for name in ("nn.RNN", "AL-RNN plain", "AL-RNN fast")}
            log(f"  M={units}, batch {batch}: " + ", ".join(f"{k} {v:.0f} MB" for k, v in row.items()))
            results[f"memory_M{units}_B{batch}"] = row
        row = {name: _peak_memory_mb(name, *SIZES[0]) for name in ("status quo loop",)}
        log(f"  status quo loop (M={SIZES[0][0]}): {row['status quo loop']:.0f} MB")
    return results
