"""The compiled time loops of the fast AL-RNN step: built on first use, optional.

:mod:`neuroalrnn.fast` runs its forward and backward time loops either as
torch operations called from Python or, when this module can provide them, as
the C loops in ``_loops.c``: the same arithmetic on the same buffers, with the
matrix product from the BLAS inside torch (its ``sgemm_``/``dgemm_``) and the
element-wise work inline; in the training step's case the whole forward and
backward passes are one call each (see :mod:`neuroalrnn.fast`). At M = 128,
batch 32, 100 steps that removes ~450 torch calls of 2–3 µs dispatch each
from a training step (``neuroalrnn bench`` measures it).

Why hand-written C rather than a library: the cost being removed is torch's
per-call overhead itself, which no torch-level API (TorchScript, ``torch.compile``
on CPU, ``torch.utils.cpp_extension`` calling ATen ops) avoids; BLAS is still
the library doing the arithmetic.

Build: the first call compiles ``_loops.c`` with the C compiler (``$CC`` or
``cc``; about a second) into a per-user cache, ``$NEUROALRNN_CACHE`` or
``~/.cache/neuroalrnn``, under a name that hashes the source, the compiler and
the platform; later processes load it from there. The file is written to a
temporary name and renamed, so processes building at once never load half a
file. If there is no compiler, the build fails, or torch's library exports no
``sgemm_``, the torch loops are used and :func:`status` says why.
``NEUROALRNN_NATIVE=0`` turns the compiled loops off.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import torch

__all__ = ["Loops", "loops", "status"]

SOURCE = Path(__file__).with_name("_loops.c")
FLAGS = ("-O2", "-shared", "-fPIC", "-std=c99")

_lock = threading.Lock()
_loaded: Loops | None = None
_reason: str | None = None  # why there are no compiled loops, once tried


class Loops:
    """The compiled loops and torch's BLAS, ready to call with a dtype."""

    def __init__(self, library: ctypes.CDLL, gemm: dict[torch.dtype, int], path: Path) -> None:
        self.library, self.gemm, self.path = library, gemm, path
        long, ptr, integer = ctypes.c_long, ctypes.c_void_p, ctypes.c_int
        signatures = {
            "backward": [ptr, ptr, long, long, long, ptr, long, long, long, integer, long, long, integer, ptr, ptr,
                         long, long, "scalar", ptr, long, long, long, long, long],
            "step_matrix": [ptr, long, long, long, long, long, long, long, long, ptr, ptr, ptr, ptr],
            "back_matrix": [ptr, long, long, long, long, ptr, ptr, ptr],
            "forward_full": [ptr, ptr, long, long, long, long, ptr, ptr, ptr, ptr, ptr, ptr, long, long, long, ptr,
                             long, long, long, long, long, long, long, integer, integer, "scalar", ptr, ptr, long,
                             ptr],
            "backward_full": [ptr, ptr, long, long, long, ptr, ptr, ptr, ptr, long, ptr, long, long, long, long,
                              long, long, long, long, long, "scalar", ptr, long, long, long, integer, ptr, ptr, ptr,
                              ptr, ptr, ptr, ptr],
            "backward_full_separate": [ptr, ptr, long, long, long, ptr, ptr, ptr, ptr, long, ptr, long, long, long,
                                       long, long, long, long, long, long, "scalar", ptr, long, long, long, integer,
                                       ptr, ptr, ptr, ptr, ptr, ptr, ptr, ptr],
        }
        self.backward, self.step_matrix, self.back_matrix = {}, {}, {}
        self.forward_full, self.backward_full, self.backward_full_separate = {}, {}, {}
        for dtype, suffix, scalar in ((torch.float32, "f32", ctypes.c_float), (torch.float64, "f64", ctypes.c_double)):
            for name, argtypes in signatures.items():
                function = getattr(library, f"alrnn_{name}_{suffix}")
                function.restype = None
                function.argtypes = [scalar if kind == "scalar" else kind for kind in argtypes]
                getattr(self, name)[dtype] = function

    def supports(self, dtype: torch.dtype) -> bool:
        return dtype in self.gemm


def status() -> str:
    """One line: whether the compiled loops are in use, and where from or why not."""
    found = loops()
    if found is not None:
        return f"compiled time loops ({found.path.name}, BLAS from torch)"
    return f"torch time loops ({_reason})"


def loops() -> Loops | None:
    """The compiled loops, building them on first use; ``None`` if they cannot be had (see :func:`status`)."""
    global _loaded, _reason
    if _loaded is not None or _reason is not None:
        return _loaded
    with _lock:
        if _loaded is None and _reason is None:
            try:
                _loaded = _load()
            except _Unavailable as error:
                _reason = str(error)
    return _loaded


def reset() -> None:
    """Forget what :func:`loops` found, so that the next call looks again (tests)."""
    global _loaded, _reason
    with _lock:
        _loaded, _reason = None, None


class _Unavailable(Exception):
    pass


def _load() -> Loops:
    if os.environ.get("NEUROALRNN_NATIVE", "1").strip().lower() in ("0", "false", "no", "off"):
        raise _Unavailable("NEUROALRNN_NATIVE=0")
    gemm = _torch_gemm()
    path = _build()
    try:
        library = ctypes.CDLL(str(path))
    except OSError as error:
        raise _Unavailable(f"cannot load {path}: {error}") from None
    return Loops(library, gemm, path)


def _torch_gemm() -> dict[torch.dtype, int]:
    """Addresses of ``sgemm_``/``dgemm_`` in torch's own CPU library (its MKL or OpenBLAS)."""
    folder = Path(torch.__file__).parent / "lib"
    candidates = sorted(folder.glob("libtorch_cpu.*")) if folder.is_dir() else []
    if not candidates:
        raise _Unavailable(f"no libtorch_cpu library in {folder}")
    try:
        library = ctypes.CDLL(str(candidates[0]))
    except OSError as error:
        raise _Unavailable(f"cannot open {candidates[0].name}: {error}") from None
    found = {}
    for dtype, name in ((torch.float32, "sgemm_"), (torch.float64, "dgemm_")):
        try:
            found[dtype] = ctypes.cast(getattr(library, name), ctypes.c_void_p).value
        except AttributeError:
            pass
    if torch.float32 not in found:
        raise _Unavailable(f"{candidates[0].name} exports no sgemm_")
    for dtype, address in list(found.items()):
        if not _gemm_works(address, dtype):
            if dtype == torch.float32:
                raise _Unavailable(
                    f"{candidates[0].name}'s sgemm_ does not take 32-bit sizes (a 2 × 3 product failed)")
            del found[dtype]
    return found


def _gemm_works(address: int, dtype: torch.dtype) -> bool:
    """Whether the ``?gemm_`` at ``address`` computes a small product right with 32-bit (LP64) sizes.

    The C loops assume LP64; a BLAS built for 64-bit sizes would misread them, so it is tried once.
    """
    scalar = ctypes.c_float if dtype == torch.float32 else ctypes.c_double
    pointer, integer = ctypes.POINTER(scalar), ctypes.POINTER(ctypes.c_int)
    gemm = ctypes.CFUNCTYPE(None, ctypes.c_char_p, ctypes.c_char_p, integer, integer, integer, pointer, pointer,
                            integer, pointer, integer, pointer, pointer, integer)(address)
    left = torch.arange(1.0, 7.0, dtype=dtype).reshape(2, 3)  # row-major X (2 × 3), Y (3 × 2): X Y = (Yᵀ Xᵀ)ᵀ
    right = torch.arange(-3.0, 3.0, dtype=dtype).reshape(3, 2)
    product = torch.full((2, 2), float("nan"), dtype=dtype)
    size = {n: ctypes.byref(ctypes.c_int(n)) for n in (2, 3)}
    one, zero = scalar(1.0), scalar(0.0)
    gemm(b"N", b"N", size[2], size[2], size[3], ctypes.byref(one), ctypes.cast(right.data_ptr(), pointer), size[2],
         ctypes.cast(left.data_ptr(), pointer), size[3], ctypes.byref(zero), ctypes.cast(product.data_ptr(), pointer),
         size[2])
    return bool(torch.equal(product, left @ right))


def cache_dir() -> Path:
    configured = os.environ.get("NEUROALRNN_CACHE")
    return Path(configured) if configured else Path.home() / ".cache" / "neuroalrnn"


def _build() -> Path:
    """The compiled library's path, compiling it unless the cache has it."""
    compiler = os.environ.get("CC", "cc")
    if shutil.which(compiler) is None:
        raise _Unavailable(f"no C compiler ({compiler!r} not found; set CC)")
    try:
        source = SOURCE.read_bytes()
    except OSError as error:
        raise _Unavailable(f"cannot read {SOURCE}: {error}") from None
    version = subprocess.run([compiler, "--version"], capture_output=True, text=True).stdout.splitlines()[:1]
    key = hashlib.sha256(
        repr((source, compiler, version, FLAGS, sys.platform, platform.machine())).encode()
    ).hexdigest()[:16]
    folder = cache_dir()
    path = folder / f"alrnn_loops-{key}.so"
    if path.exists():
        return path
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=folder) as scratch:
            built = Path(scratch) / path.name
            result = subprocess.run([compiler, *FLAGS, str(SOURCE), "-o", str(built)],
                                    capture_output=True, text=True, timeout=300)
            if result.returncode != 0:
                message = (result.stderr.strip().splitlines() or ["(no output)"])[-1]
                raise _Unavailable(f"compiling {SOURCE.name} failed: {message}")
            os.replace(built, path)  # atomic: another process sees no file or the whole file
    except OSError as error:
        raise _Unavailable(f"cannot build in {folder}: {error}") from None
    except subprocess.TimeoutExpired:
        raise _Unavailable(f"compiling {SOURCE.name} took over 300 s") from None
    return path
