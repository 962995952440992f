"""Packed training: N AL-RNNs as one batched model equal N solo runs (forward, training, divergence, resume)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from neuroalrnn.models import ALRNN
from neuroalrnn.models.pack import PackedALRNN
from neuroalrnn.training import (
    PackTrainer,
    Trainer,
    TrainingDiverged,
    check_packable,
    load_run,
    pack_groups,
)
from neuroalrnn.training.config import TrainConfig
from neuroalrnn.training.rundir import load_checkpoint, read_metrics

# Measured against solo runs (plain autograd and fast step): weights agree to ~1e-7 of their largest
# entry after a dozen Adam steps, losses to ~1e-5 (relative), Adam's moments (running means of
# gradients, which cancel in places) to ~1e-5 of their largest entry.
WEIGHT_RTOL = 1e-5
LOSS_RTOL = 5e-5


@pytest.fixture
def pack_configs(tiny_config) -> list[TrainConfig]:
    """Three runs differing in P (incl. 0 and M), seed, lr, schedule, noise, slope, init and clipping."""
    tiny = tiny_config.replace(fast_step=False)
    return [
        tiny,
        tiny.replace(n_nonlinear=0, seed=5, lr=1e-2, schedule="constant"),
        tiny.replace(n_nonlinear=tiny.n_units, seed=7, slope=0.3, init="reference", grad_clip=0.1, noise_std=0.0,
                     schedule="step"),
    ]


def _assert_same_run(packed_dir, solo_dir) -> None:
    """Checkpoint and metrics of a packed run equal a solo run's, to rounding."""
    packed, solo = load_checkpoint(packed_dir), load_checkpoint(solo_dir)
    assert packed["step"] == solo["step"]
    scale = max(value.abs().max().item() for value in solo["model"].values())
    for name, value in solo["model"].items():
        torch.testing.assert_close(packed["model"][name], value, rtol=WEIGHT_RTOL, atol=WEIGHT_RTOL * scale,
                                   msg=lambda text, name=name: f"{name}: {text}")
    assert torch.equal(packed["rng_torch"], solo["rng_torch"])
    assert packed["optimizer"]["param_groups"] == solo["optimizer"]["param_groups"]
    for key, state in solo["optimizer"]["state"].items():
        assert torch.equal(packed["optimizer"]["state"][key]["step"], state["step"])
        for moment in ("exp_avg", "exp_avg_sq"):
            torch.testing.assert_close(packed["optimizer"]["state"][key][moment], state[moment],
                                       rtol=1e-4, atol=1e-4 * state[moment].abs().max().item())
    rows_packed, rows_solo = read_metrics(packed_dir), read_metrics(solo_dir)
    assert [row["step"] for row in rows_packed] == [row["step"] for row in rows_solo]
    for row_packed, row_solo in zip(rows_packed, rows_solo, strict=True):
        assert row_packed["loss"] == pytest.approx(row_solo["loss"], rel=LOSS_RTOL, abs=1e-6)
        assert row_packed["lr"] == row_solo["lr"]
        assert row_packed["accuracy"] == pytest.approx(row_solo["accuracy"])
        assert row_packed["eval_accuracy"] == pytest.approx(row_solo["eval_accuracy"])


# ----------------------------------------------------------------------------- the packed model


@pytest.mark.parametrize("n_units", [1, 7])
def test_packed_forward_equals_each_alrnn(n_units):
    settings = [(0, 0.0, "stable"), (n_units, 0.0, "reference"), (n_units // 2, 0.25, "stable"), (n_units, 1.0, "stable")]
    models = [ALRNN(3, 2, n_units, P, slope=slope, init=init, generator=torch.Generator().manual_seed(seed))
              for seed, (P, slope, init) in enumerate(settings)]
    with torch.no_grad():
        for model in models:
            model.h.normal_(generator=torch.Generator().manual_seed(9))  # h = 0 at init: make it count
    pack = PackedALRNN.from_models(models).eval()
    inputs = torch.randn(len(models), 5, 9, 3, generator=torch.Generator().manual_seed(1))
    outputs, latents = pack(inputs)
    assert outputs.shape == (len(models), 5, 9, 2) and latents.shape == (len(models), 5, 9, n_units)
    for index, model in enumerate(models):
        expected_outputs, expected_latents = model.eval()(inputs[index])
        torch.testing.assert_close(outputs[index], expected_outputs, rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(latents[index], expected_latents, rtol=1e-6, atol=1e-6)
        assert (latents[index] < 0).any() and (latents[index] > 0).any()  # both sides of the ReLUs visited
    # PackedALRNN.step, the equation as written, rolled out by hand: the rearranged forward's latents.
    z = torch.zeros(len(models), 5, n_units)
    drive = inputs @ pack.C.transpose(1, 2).unsqueeze(1) + pack.h.view(len(models), 1, 1, n_units)
    for t in range(9):
        z = pack.step(z, drive[:, :, t])
        torch.testing.assert_close(latents[:, :, t], z, rtol=1e-6, atol=1e-6)


def test_network_unpacks_a_copy_of_each_model():
    models = [ALRNN(2, 3, 6, P, noise_std=0.1 * P, slope=0.1 * P, generator=torch.Generator().manual_seed(P))
              for P in (0, 3, 6)]
    pack = PackedALRNN.from_models(models)
    for index, model in enumerate(models):
        copy = pack.network(index)
        assert (copy.n_nonlinear, copy.slope, copy.noise_std) == (model.n_nonlinear, model.slope, model.noise_std)
        for name, value in model.state_dict().items():
            assert torch.equal(copy.state_dict()[name], value), name
    with torch.no_grad():
        pack.network(0).W.zero_()
    assert torch.equal(pack.W[0], models[0].W)


def test_packed_noise_is_added_as_given():
    models = [ALRNN(2, 2, 4, P, noise_std=0.5, generator=torch.Generator().manual_seed(P)) for P in (1, 4)]
    pack = PackedALRNN.from_models(models)
    inputs = torch.randn(2, 3, 6, 2)
    noise = 0.5 * torch.randn(2, 3, 6, 4)
    _, latents = pack(inputs, noise=noise)
    for index, model in enumerate(models):
        z = torch.zeros(3, 4)
        drive = inputs[index] @ model.C.T + model.h + noise[index]
        for t in range(6):
            z = model.step(z, drive[:, t])
            torch.testing.assert_close(latents[index, :, t], z, rtol=1e-6, atol=1e-6)


def test_pack_refuses_mismatched_models_and_inputs():
    with pytest.raises(ValueError, match="share their sizes"):
        PackedALRNN.from_models([ALRNN(2, 2, 4, 1), ALRNN(2, 2, 5, 1)])
    pack = PackedALRNN.from_models([ALRNN(2, 2, 4, 1), ALRNN(2, 2, 4, 2)])
    with pytest.raises(ValueError, match=r"inputs must have shape \(network=2"):
        pack(torch.zeros(3, 1, 1, 2))


# ----------------------------------------------------------------------------- packed training


def test_check_packable_names_the_differing_field(tiny_config):
    check_packable([tiny_config, tiny_config.replace(seed=1, n_nonlinear=0, lr=1e-2, fast_step=False)])
    with pytest.raises(ValueError, match=r"configs\[1\]\.batch_size is 7 but configs\[0\]\.batch_size is 6"):
        check_packable([tiny_config, tiny_config.replace(batch_size=7)])
    with pytest.raises(ValueError, match=r"configs\[1\]\.task_kwargs"):
        check_packable([tiny_config, tiny_config.replace(task_kwargs={"dt": 50})])
    with pytest.raises(ValueError, match="only AL-RNNs"):
        check_packable([tiny_config.replace(model="gru", n_nonlinear=None)])
    with pytest.raises(ValueError, match="Adam"):
        check_packable([tiny_config.replace(optimizer="radam")])


def test_pack_trains_each_network_as_the_trainer_does_alone(tmp_path, pack_configs):
    pack = PackTrainer(pack_configs, [tmp_path / f"pack{index}" for index in range(3)]).fit()
    assert pack.errors == [None, None, None]
    for index, config in enumerate(pack_configs):
        Trainer(config, tmp_path / f"solo{index}", progress=False).fit()
        _assert_same_run(tmp_path / f"pack{index}", tmp_path / f"solo{index}")


def test_pack_matches_the_fast_step_to_rounding(tmp_path, pack_configs):
    """The solo default trains with the fast step; the pack with autograd: the same weights to rounding."""
    configs = [config.replace(fast_step=True) for config in pack_configs[:2]]
    PackTrainer(configs, [tmp_path / "pack0", tmp_path / "pack1"]).fit()
    for index, config in enumerate(configs):
        Trainer(config, tmp_path / f"solo{index}", progress=False).fit()
        _assert_same_run(tmp_path / f"pack{index}", tmp_path / f"solo{index}")


def test_diverging_network_is_stopped_without_disturbing_the_others(tmp_path, pack_configs, monkeypatch):
    configs = [*pack_configs, pack_configs[0].replace(seed=11, lr=1e9, grad_clip=0.0)]
    pack = PackTrainer(configs, [tmp_path / f"pack{index}" for index in range(4)])
    original = pack.trainers[1].sample_batch

    def poisoned(step):  # network 1 sees NaN inputs at step 7 (after its checkpoint at step 4)
        batch = original(step)
        if step == 6:
            batch.inputs[:] = np.nan
        return batch

    monkeypatch.setattr(pack.trainers[1], "sample_batch", poisoned)
    pack.fit()
    assert pack.errors[0] is None and pack.errors[2] is None
    assert isinstance(pack.errors[1], TrainingDiverged)
    assert str(pack.errors[1]).startswith("training diverged at step 7: loss is nan; the last good checkpoint (step 4)")
    assert isinstance(pack.errors[3], TrainingDiverged)  # lr 1e9: its weights explode

    # The healthy networks are exactly their solo runs.
    for index in (0, 2):
        Trainer(configs[index], tmp_path / f"solo{index}", progress=False).fit()
        _assert_same_run(tmp_path / f"pack{index}", tmp_path / f"solo{index}")
    # The poisoned one left what the poisoned solo run leaves: its step-4 checkpoint, metrics up to step 6.
    solo = Trainer(configs[1], tmp_path / "solo1", progress=False)
    solo_original = solo.sample_batch

    def solo_poisoned(step):
        batch = solo_original(step)
        if step == 6:
            batch.inputs[:] = np.nan
        return batch

    monkeypatch.setattr(solo, "sample_batch", solo_poisoned)
    with pytest.raises(TrainingDiverged) as solo_error:
        solo.fit()
    assert str(pack.errors[1]) == str(solo_error.value).replace("solo1", "pack1")
    assert [row["step"] for row in read_metrics(tmp_path / "pack1")] == list(range(1, 7))
    _assert_same_run(tmp_path / "pack1", tmp_path / "solo1")
    # The exploding one diverges where it does alone, with the same message.
    with pytest.raises(TrainingDiverged) as exploded:
        Trainer(configs[3], tmp_path / "solo3", progress=False).fit()
    assert str(pack.errors[3]).split(";")[0] == str(exploded.value).split(";")[0]
    assert (tmp_path / "pack3").exists() == (tmp_path / "solo3").exists()


def test_packed_runs_load_and_resume_alone(tmp_path, pack_configs):
    PackTrainer(pack_configs, [tmp_path / f"pack{index}" for index in range(3)]).fit()
    for index, config in enumerate(pack_configs):
        loaded = load_run(tmp_path / f"pack{index}")
        assert loaded.config == config and loaded.step == config.steps
        assert loaded.model.n_nonlinear == config.n_nonlinear
        resumed = Trainer.resume(tmp_path / f"pack{index}", steps=config.steps + 4, progress=False).fit()
        solo = Trainer.resume(_solo_run(tmp_path, index, config), steps=config.steps + 4, progress=False).fit()
        assert resumed.step == solo.step == config.steps + 4
        _assert_same_run(tmp_path / f"pack{index}", tmp_path / f"solo{index}")


def _solo_run(tmp_path, index, config):
    Trainer(config, tmp_path / f"solo{index}", progress=False).fit()
    return tmp_path / f"solo{index}"


def test_interrupted_pack_resumes_as_if_uninterrupted(tmp_path, pack_configs, monkeypatch):
    straight_dirs = [tmp_path / f"straight{index}" for index in range(3)]
    split_dirs = [tmp_path / f"split{index}" for index in range(3)]
    PackTrainer(pack_configs, straight_dirs).fit()

    interrupted = PackTrainer(pack_configs, split_dirs)
    original = interrupted.trainers[2].sample_batch
    half = pack_configs[0].steps // 2 + 1  # not a checkpoint multiple: the interrupt itself saves

    def sample_or_interrupt(step):
        if step == half:
            raise KeyboardInterrupt
        return original(step)

    monkeypatch.setattr(interrupted.trainers[2], "sample_batch", sample_or_interrupt)
    with pytest.raises(KeyboardInterrupt):
        interrupted.fit()
    assert [load_checkpoint(path)["step"] for path in split_dirs] == [half] * 3

    resumed = PackTrainer.resume(split_dirs).fit()
    assert [trainer.step for trainer in resumed.trainers] == [config.steps for config in pack_configs]
    for straight, split in zip(straight_dirs, split_dirs, strict=True):
        _assert_same_run(split, straight)


def test_pack_resumes_runs_at_different_steps(tmp_path, pack_configs):
    """A run behind the others (killed between checkpoints) catches up before the pack moves on together."""
    dirs = [tmp_path / f"run{index}" for index in range(2)]
    Trainer(pack_configs[0].replace(steps=8), dirs[0], progress=False).fit()
    Trainer(pack_configs[1].replace(steps=4), dirs[1], progress=False).fit()
    resumed = PackTrainer.resume(dirs, steps=pack_configs[0].steps).fit()
    assert [trainer.step for trainer in resumed.trainers] == [pack_configs[0].steps] * 2
    for index in range(2):
        Trainer(pack_configs[index].replace(steps=[8, 4][index]), tmp_path / f"solo{index}", progress=False).fit()
        Trainer.resume(tmp_path / f"solo{index}", steps=pack_configs[0].steps, progress=False).fit()
        _assert_same_run(dirs[index], tmp_path / f"solo{index}")


def test_new_pack_refuses_a_run_directory_that_holds_a_run(tmp_path, pack_configs):
    Trainer(pack_configs[1], tmp_path / "taken", progress=False).fit()
    with pytest.raises(Exception, match="already holds a run"):
        PackTrainer(pack_configs[:2], [tmp_path / "new", tmp_path / "taken"]).fit()
    assert not (tmp_path / "new").exists()
    with pytest.raises(ValueError, match="run_dirs must differ"):
        PackTrainer(pack_configs[:2], [tmp_path / "same", tmp_path / "same"])


def test_pack_groups_packs_compatible_runs_up_to_the_cap(tiny_config):
    configs = [tiny_config.replace(n_nonlinear=P, seed=seed) for seed in range(2) for P in (0, 1, 2)]
    configs.insert(2, tiny_config.replace(model="gru", n_nonlinear=None))
    configs.append(tiny_config.replace(batch_size=4))
    # six compatible runs under a cap of 4: two near-equal packs (3 + 3, not 4 + 2), one seed each
    assert pack_groups(configs, 4) == [[0, 1, 3], [4, 5, 6], [2], [7]]
    shuffled = [configs[index] for index in (4, 0, 5, 1, 6, 3)]  # seeds 1, 0, 1, 0, 1, 0
    assert pack_groups(shuffled, 4) == [[1, 3, 5], [0, 2, 4]]  # grouped by seed, whatever the order given
    assert pack_groups(configs, 1) == [[index] for index in (0, 1, 3, 4, 5, 6, 2, 7)]
    for group in pack_groups(configs, 100):
        if configs[group[0]].model == "alrnn":
            check_packable([configs[index] for index in group])
