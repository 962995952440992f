"""The compiled time loops: built once into the cache, used where they load, and a clean fallback where not.

That the compiled loops compute what the torch loops and ``ALRNN.forward`` compute (outputs,
gradients, Adam steps) is tested in test_fast.py, where every test runs with both.
"""

from __future__ import annotations

import os
import shutil
import stat

import pytest
import torch

from neuroalrnn import fast, native
from neuroalrnn.fast import alrnn_forward_fast
from neuroalrnn.models import ALRNN


@pytest.fixture(autouse=True)
def fresh(monkeypatch, tmp_path):
    """Each test looks for the loops anew, in its own cache; afterwards the next caller looks again too."""
    monkeypatch.setenv("NEUROALRNN_CACHE", str(tmp_path / "cache"))
    native.reset()
    yield tmp_path / "cache"
    native.reset()


def forward_and_gradient() -> tuple[torch.Tensor, torch.Tensor]:
    model = ALRNN(3, 2, 12, 4, generator=torch.Generator().manual_seed(0)).double()
    inputs = torch.randn(5, 7, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    outputs, _ = alrnn_forward_fast(model, inputs)
    outputs.square().sum().backward()
    return outputs.detach(), model.W.grad


@pytest.mark.skipif(shutil.which(os.environ.get("CC", "cc")) is None, reason="no C compiler on this machine")
def test_the_loops_are_compiled_once_into_the_cache_and_loaded_from_there(fresh):
    loops = native.loops()
    assert loops is not None, native.status()
    assert "compiled time loops" in native.status()
    built = list(fresh.glob("alrnn_loops-*.so"))
    assert built == [loops.path]
    assert not [p for p in fresh.iterdir() if p not in built]  # no temporary files left behind
    modified = built[0].stat().st_mtime_ns
    native.reset()
    assert native.loops().path == built[0]
    assert built[0].stat().st_mtime_ns == modified  # loaded, not rebuilt
    assert loops.supports(torch.float32) and loops.supports(torch.float64)


def test_without_a_compiler_the_torch_loops_give_the_same_result(monkeypatch):
    reference = forward_and_gradient()
    monkeypatch.setenv("CC", "no-such-compiler-here")
    native.reset()
    assert native.loops() is None
    assert native.status() == "torch time loops (no C compiler ('no-such-compiler-here' not found; set CC))"
    outputs, grad_W = forward_and_gradient()
    torch.testing.assert_close(outputs, reference[0], rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(grad_W, reference[1], rtol=1e-12, atol=1e-12)


def test_a_failing_compiler_is_reported_and_nothing_is_cached(monkeypatch, tmp_path, fresh):
    compiler = tmp_path / "broken-cc"
    compiler.write_text("#!/bin/sh\nif [ \"$1\" = --version ]; then echo broken 1.0; exit 0; fi\n"
                        "echo 'fatal error: out of luck' >&2\nexit 1\n")
    compiler.chmod(compiler.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("CC", str(compiler))
    assert native.loops() is None
    assert native.status() == "torch time loops (compiling _loops.c failed: fatal error: out of luck)"
    assert not list(fresh.glob("*.so"))
    forward_and_gradient()  # training still works


def test_the_loops_can_be_switched_off(monkeypatch):
    monkeypatch.setenv("NEUROALRNN_NATIVE", "0")
    assert native.loops() is None
    assert native.status() == "torch time loops (NEUROALRNN_NATIVE=0)"


def test_a_cache_that_cannot_be_written_falls_back(monkeypatch, tmp_path):
    occupied = tmp_path / "a-file"
    occupied.write_text("not a folder")
    monkeypatch.setenv("NEUROALRNN_CACHE", str(occupied / "cache"))
    assert native.loops() is None
    assert native.status().startswith(f"torch time loops (cannot build in {occupied / 'cache'}")


def test_the_fast_step_uses_the_compiled_loops_only_on_cpu_and_when_wanted(monkeypatch):
    like = torch.zeros(2, dtype=torch.float32)
    if native.loops() is None:
        pytest.skip(native.status())
    assert fast._compiled_loops(like) is native.loops()
    assert fast._compiled_loops(like.to(torch.float16)) is None
    monkeypatch.setattr(fast, "USE_COMPILED", False)
    assert fast._compiled_loops(like) is None


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize(("n_units", "n_nonlinear", "n_inputs"), [(12, 0, 3), (12, 1, 3), (16, 6, 5), (12, 12, 1)])
def test_compiled_matrices_equal_the_torch_built_ones(n_units, n_nonlinear, n_inputs, dtype):
    loops = native.loops()
    if loops is None:
        pytest.skip(native.status())
    generator = torch.Generator().manual_seed(n_units + n_nonlinear)
    A, h = (torch.randn(n_units, generator=generator, dtype=dtype) for _ in range(2))
    W = torch.randn(n_units, n_units, generator=generator, dtype=dtype)
    C = torch.randn(n_units, n_inputs, generator=generator, dtype=dtype)
    B = torch.randn(2, n_units, generator=generator, dtype=dtype)
    for fold_ratio in (1, 10**9):  # every P folded, every P > 0 separate
        fast.FOLD_RATIO, saved = fold_ratio, fast.FOLD_RATIO
        try:
            layout = fast._Layout(n_units, n_nonlinear, n_inputs)
        finally:
            fast.FOLD_RATIO = saved
        V = torch.empty(layout.rows, n_units, dtype=dtype)
        loops.step_matrix[dtype](V.data_ptr(), layout.rows, n_units, n_inputs, layout.inputs, layout.one, layout.psi,
                                 layout.z, layout.start, A.data_ptr(), W.data_ptr(), h.data_ptr(), C.data_ptr())
        assert torch.equal(V, fast._step_matrix(A, W, h, C, layout))
        assert torch.equal(fast._back_matrix_of(loops, layout, A, W, B), fast._back_matrix(A, W, B, layout))
        # A parameter that is a view (not contiguous) is made contiguous first, not read with the wrong strides.
        W_view = W.t().contiguous().t()
        assert torch.equal(fast._back_matrix_of(loops, layout, A, W_view, B), fast._back_matrix(A, W, B, layout))


def test_buffers_beyond_32_bit_blas_sizes_use_the_torch_loops():
    like = torch.zeros(1)
    if native.loops() is None:
        pytest.skip(native.status())
    assert fast._compiled_loops(like, 2**31 - 1) is native.loops()
    assert fast._compiled_loops(like, 2**31) is None


def test_a_blas_that_misreads_the_call_is_caught_before_use():
    """The loops assume LP64 ?gemm_; a small product is tried first (here: sgemm_ handed doubles must fail)."""
    gemm = native._torch_gemm()
    assert native._gemm_works(gemm[torch.float32], torch.float32)
    assert not native._gemm_works(gemm[torch.float32], torch.float64)
