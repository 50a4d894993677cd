"""The CPU kernel: the fused path's sequence node compiled from C++ (``csrc/``, three files).

:mod:`ntm.fused` already runs a whole sequence as one autograd node, but in Python it still
issues about 216 small tensor operations per time step, and on a CPU their overhead is most of
the time. The kernel runs the same equations as loops over one sequence at a time (the batch
split over torch's intra-op threads) with matrix products from ATen, so a step costs a few
microseconds of overhead instead of hundreds.

It is compiled once per machine, on first use, with ``torch.utils.cpp_extension`` (a C++
compiler is needed; about 30 s; the result is cached by torch under
``~/.cache/torch_extensions``). One process builds at a time (:func:`build_owner`): a build
that was interrupted, at any moment, is detected and redone with one line; a process that
waits for another's build says so, and after ``NTM_KERNEL_BUILD_WAIT`` seconds (300) falls
back to the Python node. Where it cannot be built, :mod:`ntm.fused`'s Python node is used
instead, with one warning. ``NTM_CPU_KERNEL=0`` (or ``false``, ``off``, ``no``) in the
environment, or :func:`set_enabled`, turns the kernel off. The two give the same numbers to
rounding (``tests/test_fused.py`` runs every test on both: 1e-10 in float64, gradients
included).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import platform
import shutil
import sys
import threading
import time
import warnings
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from ..functional.addressing import CARRY_GRAD_BOUND, LOG_FLOOR, NORM_EPS
from ..heads import CLIP

SOURCE_DIR = Path(__file__).parent / "csrc"
SOURCE = SOURCE_DIR / "sequence_cpu.cpp"  # the one translation unit; it includes the headers
# Passed to the kernel, so that each constant has one definition (the Python modules').
_CONSTANTS = [CLIP, NORM_EPS, LOG_FLOOR, CARRY_GRAD_BOUND]
_DTYPES = (torch.float32, torch.float64)
# -fopenmp: at::parallel_for splits the batch over torch's threads only when the extension is
# built with OpenMP, as torch is. -march=native: the machine that builds is the one that runs
# (the build's name carries this machine's CPU flags). The last four let the compiler
# vectorise the sums over memory rows (reassociation changes only the rounding); NaN and inf
# keep their meaning (no -ffinite-math-only).
_FLAGS = ["-O3", "-fopenmp", "-march=native", "-fno-math-errno", "-fno-trapping-math",
          "-fassociative-math", "-fno-signed-zeros"]

_lock = threading.Lock()
_module = None  # the loaded extension, once built
_failure: str | None = None  # why it could not be built, once tried
_enabled = os.environ.get("NTM_CPU_KERNEL", "1").strip().lower() not in ("0", "false", "off", "no")
# A build lock older than this was left by a killed build (a build takes under a minute); used
# only where flock is missing (see build_owner).
STALE_LOCK_SECONDS = 600
# How long a process waits for another one's build before it falls back to the Python node.
BUILD_WAIT_SECONDS = float(os.environ.get("NTM_KERNEL_BUILD_WAIT", "300"))


def set_enabled(enabled: bool) -> None:
    """Use the kernel for CPU sequences (the default) or the Python fused node."""
    global _enabled
    _enabled = bool(enabled)


def is_enabled() -> bool:
    """Whether CPU sequences may use the kernel (it may still fail to build)."""
    return _enabled


def load():
    """The compiled extension, building it on first call; ``None`` where it cannot be built."""
    global _module, _failure
    if _module is not None or _failure is not None:
        return _module
    with _lock:
        if _module is None and _failure is None:
            try:
                _module = _build()
            except Exception as error:  # no compiler, no headers, a failed compile: fall back
                _failure = _reason(error)
                warnings.warn(
                    f"ntm: the C++ CPU kernel could not be built ({_failure}); using the slower "
                    "Python fused path. Set NTM_CPU_KERNEL=0 to skip the attempt.",
                    RuntimeWarning,
                    stacklevel=3,
                )
    return _module


def _reason(error: Exception) -> str:
    """One line: the compiler's first error where there is one, else the exception's last line."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()] or [""]
    compiler = [line for line in lines if "error:" in line]
    return f"{type(error).__name__}: {compiler[0] if compiler else lines[-1]}"


def status() -> str:
    """One line for reports: whether the fused path's CPU sequences run on the kernel."""
    if not _enabled:
        return "off (the Python fused node)"
    if _module is not None:
        return "C++ kernel (ntm.kernel)"
    if _failure is not None:
        return f"not built, the Python fused node: {_failure}"
    return "not loaded yet"


def failure() -> str | None:
    """Why the kernel could not be built, or ``None``."""
    return _failure


def _build():
    from torch.utils import cpp_extension

    _find_ninja()
    source = b"".join(path.read_bytes() for path in sorted(SOURCE_DIR.glob("*.[ch]*")))
    # The name carries the sources' hash, so that an edited kernel is never mixed up with an
    # older build in torch's cache.
    identity = [torch.__version__, platform.machine(), _cpu_flags(), *_FLAGS]
    digest = hashlib.sha256(source + "\n".join(identity).encode()).hexdigest()[:12]
    name = f"ntm_sequence_cpu_{digest}"
    build_dir = Path(cpp_extension._get_build_directory(name, verbose=False))
    with build_owner(build_dir, BUILD_WAIT_SECONDS):
        if not any(build_dir.glob(f"{name}*.so")):
            print("ntm: compiling the C++ CPU kernel (once; about 30 s)", file=sys.stderr,
                  flush=True)
        return cpp_extension.load(
            name=name, sources=[str(SOURCE)], extra_cflags=_FLAGS, extra_ldflags=["-fopenmp"],
            verbose=False,
        )


@contextlib.contextmanager
def build_owner(build_dir: Path, wait_seconds: float):
    """Hold the right to build (or load) the kernel in ``build_dir`` against other processes.

    torch's own build lock is a plain file that a killed build leaves behind, and torch waits
    for it to go away forever. This one is an OS lock (``flock``) on ``owner.lock`` that the
    kernel releases when its process ends, however it ends: whoever holds it knows that no
    other process is building, so a torch lock found then was left by an interrupted build
    and is removed (with one line). A process that finds the owner lock taken says so and
    waits up to ``wait_seconds``; then it gives up (:class:`BuildWaitTimeout`, which
    :func:`load` turns into the Python fallback with a warning).
    """
    build_dir.mkdir(parents=True, exist_ok=True)
    if fcntl is None:  # no flock (Windows): torch's lock alone, cleared when it is old
        _clear_stale_lock(build_dir / "lock")
        yield
        return
    with open(build_dir / "owner.lock", "a+") as owner:
        _acquire(owner, wait_seconds)
        try:
            owner.seek(0)
            owner.truncate()
            owner.write(f"{os.getpid()}\n")
            owner.flush()
            torch_lock = build_dir / "lock"
            if torch_lock.exists():
                print(f"ntm: removing the build lock of an interrupted kernel build ({torch_lock})",
                      file=sys.stderr, flush=True)
                torch_lock.unlink(missing_ok=True)
            yield
        finally:
            fcntl.flock(owner, fcntl.LOCK_UN)


class BuildWaitTimeout(RuntimeError):
    """Another process held the kernel's build for longer than the bound."""


def _acquire(owner, wait_seconds: float) -> None:
    """Take the flock on ``owner``, saying once that another process holds it, up to a bound."""
    deadline, said = time.monotonic() + wait_seconds, False
    while True:
        try:
            fcntl.flock(owner, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if not said:
                owner.seek(0)
                holder = owner.read().strip() or "unknown"
                print(f"ntm: waiting for another process (pid {holder}) to finish building the "
                      f"C++ kernel (at most {wait_seconds:.0f} s)", file=sys.stderr, flush=True)
                said = True
            if time.monotonic() >= deadline:
                raise BuildWaitTimeout(
                    f"another process held the kernel's build for more than {wait_seconds:.0f} s"
                ) from None
            time.sleep(0.2)


def _find_ninja() -> None:
    """torch builds and loads extensions with ninja, found on PATH. The ``ninja`` package
    (a dependency) installs it next to the interpreter, which is not on PATH when a virtual
    environment's ``ntm`` is run without activating it."""
    if shutil.which("ninja") is None:
        try:
            import ninja
        except ImportError:
            return
        os.environ["PATH"] = ninja.BIN_DIR + os.pathsep + os.environ.get("PATH", "")


def _clear_stale_lock(lock: Path) -> None:
    """Remove a build lock left by a process killed while compiling.

    torch waits for the lock to go away, forever: one killed first build would hang every
    later run. A build takes under a minute, so a lock older than STALE_LOCK_SECONDS is stale.
    """
    try:
        age = time.time() - lock.stat().st_mtime
    except OSError:
        return  # no lock
    if age > STALE_LOCK_SECONDS:
        warnings.warn(f"ntm: removing a stale build lock ({lock}, {age:.0f} s old)",
                      RuntimeWarning, stacklevel=2)
        lock.unlink(missing_ok=True)


def _cpu_flags() -> str:
    """This CPU's feature flags (Linux: ``flags`` on x86, ``Features`` on ARM), so that a build
    for one CPU is not run on another."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                return line
    except OSError:
        pass
    return platform.processor()


def applies(projected: Tensor) -> bool:
    """Whether a sequence with these inputs runs on the kernel."""
    return unavailable(projected) is None


def unavailable(projected: Tensor) -> str | None:
    """Why a sequence with these inputs cannot run on the kernel, or ``None`` if it can."""
    if not _enabled:
        return "the kernel is switched off (NTM_CPU_KERNEL=0 or ntm.kernel.set_enabled(False))"
    if projected.device.type != "cpu" or projected.dtype not in _DTYPES:
        return (f"it runs on the CPU in float32 and float64, not on {projected.device.type} "
                f"in {projected.dtype}")
    if load() is None:
        return f"it could not be built ({_failure})"
    return None


class KernelSequence(torch.autograd.Function):
    """:class:`ntm.fused._FusedSequence` with its forward and backward in C++.

    Same inputs and outputs: ``(spec, n_state, projected [T,B,G], memory, weights, reads,
    *state, *layer_weights, bias, head_weight, head_bias)`` to ``(outputs [T,B,C], reads
    [T,B,R*M], focus [T,B,H,N], memory, weights, reads, *state)``.
    """

    @staticmethod
    def forward(ctx, spec, n_state, projected, memory, focus, reads, *rest):
        state = list(rest[:n_state])
        layer_weights = [w.contiguous() for w in rest[n_state : n_state + spec.layers]]
        bias, head_weight, head_bias = rest[n_state + spec.layers :]
        sizes = (spec.hidden, spec.read_heads, spec.write_heads, spec.layout.shifts, spec.lstm)
        results = _module.forward(
            projected.contiguous(), memory, focus, reads, state, layer_weights, bias,
            head_weight.contiguous(), head_bias, *sizes, _CONSTANTS,
        )  # fmt: skip
        outputs, all_reads, all_focus, memory, focus, reads = results[:6]
        state = results[6 : 6 + n_state]
        saved = results[6 + n_state :]
        ctx.spec, ctx.n_state, ctx.sizes = spec, n_state, sizes
        ctx.save_for_backward(outputs, all_focus, head_weight, *layer_weights, *saved)
        ctx.mark_non_differentiable(all_focus)
        return (outputs, all_reads, all_focus, memory, focus, reads, *state)

    @staticmethod
    @once_differentiable  # no double backward: a second derivative raises instead of being wrong
    def backward(ctx, grad_outputs, grad_all_reads, _grad_all_focus, grad_memory, grad_focus,
                 grad_reads, *grad_state):  # fmt: skip
        spec = ctx.spec
        outputs, all_focus, head_weight, *rest = ctx.saved_tensors
        layer_weights, saved = rest[: spec.layers], rest[spec.layers :]
        steps, batch = outputs.shape[:2]
        factory = {"dtype": outputs.dtype, "device": outputs.device}
        memory_shape = (batch, *saved[0].shape[:1:-1])  # saved: [T, B, M, N], transposed

        def given_or_zeros(grad, *shape):
            return torch.zeros(shape, **factory) if grad is None else grad.contiguous()

        grads = _module.backward(
            list(saved), all_focus, outputs, list(layer_weights), head_weight,
            given_or_zeros(grad_outputs, steps, batch, spec.hidden),
            given_or_zeros(grad_all_reads, steps, batch, spec.read_heads * spec.width),
            given_or_zeros(grad_memory, *memory_shape),
            given_or_zeros(grad_focus, *all_focus.shape[1:]),
            given_or_zeros(grad_reads, batch, spec.read_heads * spec.width),
            [given_or_zeros(grad, batch, spec.hidden) for grad in grad_state],
            *ctx.sizes, _CONSTANTS,
        )  # fmt: skip
        return (None, None, *grads)
