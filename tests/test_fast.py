"""The fast AL-RNN path against ALRNN.forward: outputs, latents, noise draws, gradients and an Adam step.

Both ways of taking A ⊙ z on the nonlinear units (inside the step's product, or element-wise) are
tested through the ``product`` fixture; results are tested never to share memory with each other or
with the buffers the backward pass keeps between calls.
"""

from __future__ import annotations

import concurrent.futures
import copy

import pytest
import torch

from neuroalrnn.models import fast
from neuroalrnn.models.fast import ALRNNFunction, alrnn_forward_fast
from neuroalrnn.models import ALRNN
from neuroalrnn.training import weighted_cross_entropy

N_INPUTS, N_OUTPUTS, N_UNITS = 3, 2, 10
NONLINEAR = [0, 3, N_UNITS]  # linear RNN, AL-RNN, PLRNN
SLOPES = [0.0, 0.3]


def make_model(n_nonlinear: int, slope: float, dtype=torch.float64, noise_std: float = 0.0, seed: int = 0) -> ALRNN:
    generator = torch.Generator().manual_seed(seed)
    model = ALRNN(N_INPUTS, N_OUTPUTS, N_UNITS, n_nonlinear, slope=slope, noise_std=noise_std, generator=generator)
    with torch.no_grad():  # a non-zero h, so that every parameter matters
        model.h.copy_(0.3 * torch.randn(N_UNITS, generator=generator))
    return model.to(dtype)


def random(*shape, seed: int, dtype=torch.float64) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


@pytest.fixture(params=["folded", "separate"])
def product(request, monkeypatch):
    """A_nl ⊙ z_nl inside the step's product at every size ("folded"), or element-wise at every size."""
    monkeypatch.setattr(fast, "FOLD_LIMIT", 10**18 if request.param == "folded" else -1)
    return request.param


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("with_z0", [False, True])
@pytest.mark.parametrize("slope", SLOPES)
@pytest.mark.parametrize("n_nonlinear", NONLINEAR)
def test_forward_matches_plain(n_nonlinear, slope, with_z0, dtype, product):
    model = make_model(n_nonlinear, slope, dtype).eval()
    inputs = random(4, 9, N_INPUTS, seed=1, dtype=dtype)
    z0 = random(4, N_UNITS, seed=2, dtype=dtype) if with_z0 else None
    expected = model(inputs, z0)
    got = alrnn_forward_fast(model, inputs, z0)
    tolerance = 1e-5 if dtype == torch.float32 else 1e-6
    for name, a, b in zip(("outputs", "latents"), got, expected):
        assert a.shape == b.shape and a.dtype == b.dtype, name
        torch.testing.assert_close(a, b, rtol=tolerance, atol=tolerance, msg=name)


@pytest.mark.parametrize("n_nonlinear", NONLINEAR)
def test_training_noise_is_the_same_draw_as_plain_forward(n_nonlinear, product):
    model = make_model(n_nonlinear, 0.0, torch.float32, noise_std=0.2).train()
    inputs = random(5, 7, N_INPUTS, seed=3, dtype=torch.float32)
    torch.manual_seed(11)
    expected = model(inputs)
    after_plain = torch.rand(3)
    torch.manual_seed(11)
    got = alrnn_forward_fast(model, inputs)
    torch.testing.assert_close(got[1], expected[1], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(got[0], expected[0], rtol=1e-5, atol=1e-5)
    # Same numbers drawn from the global generator: the streams stay in step afterwards.
    torch.testing.assert_close(torch.rand(3), after_plain, rtol=0, atol=0)
    # ...and the noise matters: without it the result differs.
    assert not torch.allclose(alrnn_forward_fast(model.eval(), inputs)[1], expected[1], atol=1e-3)


@pytest.mark.parametrize("n_nonlinear", NONLINEAR)
def test_explicit_noise_matches_the_plain_draw(n_nonlinear, product):
    model = make_model(n_nonlinear, 0.3, noise_std=0.5).train()
    inputs = random(4, 6, N_INPUTS, seed=4)
    torch.manual_seed(5)
    noise = model.noise_std * torch.randn(4, 6, N_UNITS, dtype=torch.float64)
    torch.manual_seed(5)
    expected = model(inputs)
    got = alrnn_forward_fast(model.eval(), inputs, noise=noise)  # eval: only the given noise
    torch.testing.assert_close(got[1], expected[1], rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(got[0], expected[0], rtol=1e-6, atol=1e-6)


def _weighted_loss(outputs, latents, loss_on: str, seed: int) -> torch.Tensor:
    batch, n_steps, _ = outputs.shape
    mask = (torch.rand(batch, n_steps, generator=torch.Generator().manual_seed(seed)) > 0.3).to(outputs.dtype)
    loss = outputs.new_zeros(())
    if loss_on in ("both", "outputs"):
        loss = loss + (random(*outputs.shape, seed=seed + 1) * mask[..., None] * outputs).sum()
    if loss_on in ("both", "latents"):
        loss = loss + (random(*latents.shape, seed=seed + 2) * mask[..., None] * latents).sum()
    return loss


@pytest.mark.parametrize("loss_on", ["both", "outputs", "latents"])
@pytest.mark.parametrize("slope", SLOPES)
@pytest.mark.parametrize("n_nonlinear", NONLINEAR)
def test_gradients_match_plain_autograd(n_nonlinear, slope, loss_on, product):
    model = make_model(n_nonlinear, slope, noise_std=0.3).train()
    inputs = random(4, 7, N_INPUTS, seed=6).requires_grad_()
    z0 = random(4, N_UNITS, seed=7).requires_grad_()
    leaves = {"inputs": inputs, "z0": z0, **dict(model.named_parameters())}

    torch.manual_seed(8)
    noise = model.noise_std * torch.randn(4, 7, N_UNITS, dtype=torch.float64)
    torch.manual_seed(8)
    plain_loss = _weighted_loss(*model(inputs, z0), loss_on, seed=9)  # draws the same noise
    expected = torch.autograd.grad(plain_loss, list(leaves.values()), allow_unused=True)
    fast_loss = _weighted_loss(*alrnn_forward_fast(model, inputs, z0, noise=noise), loss_on, seed=9)
    got = torch.autograd.grad(fast_loss, list(leaves.values()), allow_unused=True)

    torch.testing.assert_close(fast_loss, plain_loss, rtol=1e-10, atol=1e-10)
    for name, a, b in zip(leaves, got, expected):
        if b is None:  # B and b do not reach a loss on the latents alone
            assert a is None or torch.count_nonzero(a) == 0, name
            continue
        assert a is not None, name
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6, msg=name)


@pytest.mark.parametrize("slope", SLOPES)
def test_gradient_at_a_zero_state_uses_the_slope(slope, product):
    """At z = 0 a nonlinear unit takes the z <= 0 branch of ALRNN.phi, derivative = slope."""
    model = make_model(3, slope)
    inputs = random(2, 3, N_INPUTS, seed=10)
    z0 = random(2, N_UNITS, seed=11)
    z0[:, -3:] = 0.0
    z0.requires_grad_()
    grads = []
    for forward in (model, lambda x, z: alrnn_forward_fast(model, x, z)):
        outputs, latents = forward(inputs, z0)
        grads.append(torch.autograd.grad(outputs.sum() + latents.sum(), [z0, model.W]))
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("noise_scale", [1.0, 0.5])
@pytest.mark.parametrize(("n_nonlinear", "slope"), [(0, 0.0), (2, 0.0), (2, 0.3), (5, 0.0), (5, 0.3)])
def test_gradcheck_of_the_autograd_function(n_nonlinear, slope, noise_scale, product):
    n_units, n_inputs, n_outputs, batch, n_steps = 5, 2, 2, 4, 5
    # States well away from 0 (|z| >> gradcheck's eps), so no finite difference crosses a kink.
    generator = torch.Generator().manual_seed(12)

    def tensor(*shape, scale=1.0):
        return (scale * torch.randn(*shape, generator=generator, dtype=torch.float64)).requires_grad_()

    arguments = (
        tensor(batch, n_steps, n_inputs), tensor(batch, n_units), tensor(batch, n_steps, n_units, scale=0.1),
        tensor(n_units, scale=0.5), tensor(n_units, n_units, scale=0.4), tensor(n_units), tensor(n_units, n_inputs),
        tensor(n_outputs, n_units), tensor(n_outputs),
    )
    with torch.no_grad():
        _, latents = ALRNNFunction.apply(*arguments, n_nonlinear, slope, noise_scale)
    assert latents.abs().min() > 1e-3

    def function(*tensors):
        return ALRNNFunction.apply(*tensors, n_nonlinear, slope, noise_scale)

    assert torch.autograd.gradcheck(function, arguments, eps=1e-6, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize(("n_nonlinear", "slope"), [(0, 0.0), (3, 0.0), (3, 0.3), (N_UNITS, 0.0)])
def test_adam_steps_match_plain(n_nonlinear, slope, product):
    plain = make_model(n_nonlinear, slope, noise_std=0.1).train()
    quick, initial = copy.deepcopy(plain), copy.deepcopy(plain)
    forwards = {"plain": plain, "fast": lambda inputs: alrnn_forward_fast(quick, inputs)}
    optimisers = {"plain": torch.optim.Adam(plain.parameters(), lr=1e-2),
                  "fast": torch.optim.Adam(quick.parameters(), lr=1e-2)}
    generator = torch.Generator().manual_seed(13)
    for step in range(3):
        inputs = torch.randn(6, 8, N_INPUTS, generator=generator, dtype=torch.float64)
        targets = torch.randint(0, N_OUTPUTS, (6, 8), generator=generator)
        weight = (torch.rand(6, 8, generator=generator, dtype=torch.float64) > 0.2).to(torch.float64)
        for path in ("plain", "fast"):
            torch.manual_seed(100 + step)  # the same recurrent noise for both
            outputs, _ = forwards[path](inputs)
            loss = weighted_cross_entropy(outputs, targets, weight)
            optimisers[path].zero_grad(set_to_none=True)
            loss.backward()
            optimisers[path].step()
    for (name, a), b, before in zip(quick.named_parameters(), plain.parameters(), initial.parameters()):
        assert not torch.allclose(a, before), f"{name} did not move"
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10, msg=name)


def test_no_grad_inference_and_single_step():
    model = make_model(3, 0.0).eval()
    inputs = random(3, 1, N_INPUTS, seed=14)
    with torch.no_grad():
        outputs, latents = alrnn_forward_fast(model, inputs)
        expected_outputs, expected_latents = model(inputs)
    assert not outputs.requires_grad
    torch.testing.assert_close(outputs, expected_outputs)
    torch.testing.assert_close(latents, expected_latents)


def _gradients(model, inputs, z0, fast_path: bool, seed: int):
    """Gradients of a weighted loss on outputs and latents w.r.t. the inputs, z0 and every parameter."""
    leaves = [inputs, z0, *model.parameters()]
    outputs, latents = alrnn_forward_fast(model, inputs, z0) if fast_path else model(inputs, z0)
    return torch.autograd.grad(_weighted_loss(outputs, latents, "both", seed), leaves)


@pytest.mark.parametrize("n_nonlinear", [3, N_UNITS])
def test_latents_kept_from_an_earlier_call_are_never_overwritten(n_nonlinear, product):
    """A buffer is reused only once nothing holds it: kept latents (or their views) stay as they were."""
    model = make_model(n_nonlinear, 0.0).eval()
    first_inputs, second_inputs = random(4, 9, N_INPUTS, seed=20), random(4, 9, N_INPUTS, seed=21)
    outputs, latents = alrnn_forward_fast(model, first_inputs)
    kept_view = latents[:, 2:5].detach()
    expected = latents.clone()
    for _ in range(3):
        alrnn_forward_fast(model, second_inputs)
    torch.testing.assert_close(latents, expected, rtol=0, atol=0)
    torch.testing.assert_close(kept_view, expected[:, 2:5], rtol=0, atol=0)
    torch.testing.assert_close(outputs, model(first_inputs)[0], rtol=1e-10, atol=1e-10)


def test_two_graphs_alive_at_once_get_their_own_gradients(product):
    """Two forward passes before one backward pass: each keeps its own buffers."""
    model = make_model(3, 0.3, noise_std=0.0).train()
    inputs = [random(4, 7, N_INPUTS, seed=22), random(4, 5, N_INPUTS, seed=23)]

    def loss(forward):
        return sum(_weighted_loss(*forward(x), "both", seed=24 + i) for i, x in enumerate(inputs))

    expected = torch.autograd.grad(loss(model), list(model.parameters()))
    got = torch.autograd.grad(loss(lambda x: alrnn_forward_fast(model, x)), list(model.parameters()))
    for a, b in zip(got, expected):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)


def test_buffers_are_reused_across_steps_of_changing_length_and_batch(product):
    """Kept buffers serve shorter calls, grow for longer ones, and never mix up batches or lengths."""
    model = make_model(3, 0.0).train()
    for index, (batch, n_steps) in enumerate([(4, 9), (4, 4), (4, 12), (3, 12), (4, 1), (4, 6)]):
        inputs = random(batch, n_steps, N_INPUTS, seed=30 + index).requires_grad_()
        z0 = random(batch, N_UNITS, seed=40 + index).requires_grad_()
        got = _gradients(model, inputs, z0, fast_path=True, seed=50 + index)
        expected = _gradients(model, inputs, z0, fast_path=False, seed=50 + index)
        for a, b in zip(got, expected):
            torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("n_nonlinear", [3, N_UNITS])
def test_results_of_a_training_step_survive_later_training_steps(n_nonlinear, product):
    """After backward nothing holds the forward buffer but the caller: kept latents, their views and
    the gradients of one step stay as they were through later steps of the same sizes."""
    model = make_model(n_nonlinear, 0.3, noise_std=0.0).train()
    first_inputs = random(4, 9, N_INPUTS, seed=61).requires_grad_()
    outputs, latents = alrnn_forward_fast(model, first_inputs)
    gradients = torch.autograd.grad(_weighted_loss(outputs, latents, "both", seed=62), [first_inputs, model.W])
    kept_view = latents[:, 2:5].detach()
    kept = [tensor.detach().clone() for tensor in (outputs, latents, *gradients)]
    for index in range(3):
        later_inputs = random(4, 9, N_INPUTS, seed=63 + index).requires_grad_()
        later_outputs, later_latents = alrnn_forward_fast(model, later_inputs)
        torch.autograd.grad(_weighted_loss(later_outputs, later_latents, "both", seed=66), [later_inputs, model.W])
    for got, expected in zip((outputs, latents, *gradients), kept):
        assert torch.equal(got, expected)
    assert torch.equal(kept_view, kept[1][:, 2:5])


def test_the_backward_buffer_is_kept_for_the_next_step():
    """The optimisation itself: the backward pass's buffer (and its per-step views) serves the next step."""
    model = make_model(3, 0.0).train()
    inputs = random(4, 9, N_INPUTS, seed=60)
    pointers = []
    for _ in range(2):
        outputs, _ = alrnn_forward_fast(model, inputs)
        outputs.sum().backward()
        pointers.append(fast._WORKSPACE.H.tensor.data_ptr())
    assert pointers[0] == pointers[1]
    outputs, _ = alrnn_forward_fast(model, random(5, 9, N_INPUTS, seed=60))  # another batch: another buffer
    outputs.sum().backward()
    assert fast._WORKSPACE.H.tensor.shape[1] == 5


@pytest.mark.parametrize("slope", [0.0, 0.3, 1.0])
def test_phi_into_a_buffer_is_the_models_phi(slope):
    """φ written into a buffer (public torch operations) equals ALRNN.phi and F.leaky_relu exactly."""
    values = torch.cat([torch.tensor([-2.5, -1e-30, -0.0, 0.0, 1e-30, 3.25, float("nan")]),
                        random(1000, seed=64, dtype=torch.float32)])
    out = torch.empty_like(values)
    fast._phi(values, slope, out=out)
    model = ALRNN(1, 1, len(values), len(values), slope=slope)
    for expected in (torch.nn.functional.leaky_relu(values, slope), model.phi(values)):
        torch.testing.assert_close(out, expected, rtol=0, atol=0, equal_nan=True)


def test_threads_use_their_own_buffers():
    model = make_model(3, 0.3).eval()
    inputs = [random(4, 5 + i % 3, N_INPUTS, seed=70 + i) for i in range(12)]
    expected = [model(x)[1] for x in inputs]

    def run(x):
        return alrnn_forward_fast(model, x)[1].clone()

    with concurrent.futures.ThreadPoolExecutor(max_workers=3) as pool:
        got = list(pool.map(run, inputs))
    for a, b in zip(got, expected):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda m, x: alrnn_forward_fast(m, x, noise=torch.zeros(2, 5, 4, dtype=torch.float64)), ValueError, "noise"),
        (lambda m, x: alrnn_forward_fast(m, x, torch.zeros(2, 3, dtype=torch.float64)), ValueError, "z0"),
        (lambda m, x: alrnn_forward_fast(m, x.float()), TypeError, "dtype"),
        (lambda m, x: alrnn_forward_fast(m, x[:, :, :2]), ValueError, "n_inputs"),
        (lambda m, x: alrnn_forward_fast(m, x[:, :0]), ValueError, "time step"),
        (lambda m, x: alrnn_forward_fast(torch.nn.RNN(N_INPUTS, 4), x), TypeError, "ALRNN"),
    ],
    ids=["noise-shape", "z0-shape", "dtype", "inputs-shape", "no-steps", "not-an-alrnn"],
)
def test_bad_arguments_are_named(call, error, message):
    model = make_model(3, 0.0)
    with pytest.raises(error, match=message):
        call(model, random(2, 5, N_INPUTS, seed=15))


# "sum": ∂L/∂y is an expanded tensor (strides 0); one time step: the loop body never runs
@pytest.mark.parametrize(("loss", "n_steps"), [("cross_entropy", 6), ("sum", 6), ("cross_entropy", 1)])
@pytest.mark.parametrize("frozen", [(), ("B", "b"), ("A", "W", "h", "C")])
@pytest.mark.parametrize("with_noise", [False, True])
@pytest.mark.parametrize("slope", SLOPES)
@pytest.mark.parametrize("n_nonlinear", NONLINEAR)
def test_the_training_steps_case_matches_plain_autograd(n_nonlinear, slope, with_noise, frozen, loss, n_steps, product):
    """A loss on the outputs only and no z0 gradient, some parameters frozen (folded or not)."""
    model = make_model(n_nonlinear, slope, noise_std=0.3 if with_noise else 0.0).train()
    for name in frozen:
        getattr(model, name).requires_grad_(False)
    inputs = random(5, n_steps, N_INPUTS, seed=16).requires_grad_()
    z0 = random(5, N_UNITS, seed=17)  # a given initial state, not trained
    weight = random(5, n_steps, seed=18).abs()
    targets = torch.randint(0, N_OUTPUTS, (5, n_steps), generator=torch.Generator().manual_seed(19))
    leaves = [inputs, *(p for p in model.parameters() if p.requires_grad)]

    torch.manual_seed(20)
    noise = model.noise_std * torch.randn(5, n_steps, N_UNITS, dtype=torch.float64)
    torch.manual_seed(20)
    def loss_of(outputs):
        return outputs.sum() if loss == "sum" else weighted_cross_entropy(outputs, targets, weight)

    expected = torch.autograd.grad(loss_of(model(inputs, z0)[0]), leaves)
    outputs, _ = alrnn_forward_fast(model, inputs, z0, noise=noise if with_noise else None)
    got = torch.autograd.grad(loss_of(outputs), leaves)

    for a, b in zip(got, expected):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("name", ["z0", "noise"])
def test_an_initial_state_or_noise_of_another_dtype_is_refused_by_name(name):
    """A float64 z0 or noise for a float32 model is refused with the names, not mixed into the buffer."""
    model = make_model(3, 0.0, dtype=torch.float32)
    inputs = random(2, 5, N_INPUTS, seed=21, dtype=torch.float32)
    given = {"z0": random(2, N_UNITS, seed=22), "noise": random(2, 5, N_UNITS, seed=23)}  # float64
    with pytest.raises(TypeError, match=f"{name} must have the model's dtype torch.float32, got torch.float64"):
        alrnn_forward_fast(model, inputs, **{name: given[name]})
