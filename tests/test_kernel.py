"""The C++ CPU kernel (ntm/backends/kernel.py): how it is built, chosen and replaced.

Its numbers are checked in tests/test_fused.py, which runs every fused-path test on the kernel
and on the Python node, and in tests/test_gradient_overflow.py.
"""

import math
import os
import shutil
import subprocess
import sys
import time
import warnings

import numpy as np
import pytest
import torch

import ntm
from ntm import kernel
from ntm.backends import extension
from ntm.metrics import sequence_loss
from ntm.tasks import make


def _copy_model_gradients(batch_size, *, cpu_kernel, dtype=torch.float32, threads=1, **options):
    """Logits and parameter gradients of the paper's copy model on one batch of length 20."""
    task = make("copy", min_length=20, max_length=20)
    batch = task.sample(batch_size, generator=torch.Generator().manual_seed(4))
    torch.manual_seed(0)
    model = ntm.NTM(task.input_size, task.output_size, dtype=dtype, **options)
    enabled, before = kernel.is_enabled(), torch.get_num_threads()
    kernel.set_enabled(cpu_kernel)
    torch.set_num_threads(threads)
    try:
        logits, _ = model(batch.inputs.to(dtype))
    finally:
        kernel.set_enabled(enabled)
        torch.set_num_threads(before)
    sequence_loss(logits, batch.targets.to(dtype), batch.mask).backward()
    return logits.detach(), [p.grad for p in model.parameters()]


def test_the_kernel_builds_where_there_is_a_compiler():
    if shutil.which("c++") is None and shutil.which("g++") is None:
        pytest.skip("no C++ compiler on this machine")
    assert kernel.load() is not None, kernel.failure()
    assert kernel.failure() is None


@pytest.mark.parametrize("batch_size", [1, 8], ids=["scalar", "vectorised"])
def test_float32_kernel_matches_the_python_node(batch_size):
    """At the paper's sizes, float32: the two implementations round differently, no more."""
    logits, gradients = _copy_model_gradients(batch_size, cpu_kernel=True)
    expected_logits, expected = _copy_model_gradients(batch_size, cpu_kernel=False)
    torch.testing.assert_close(logits, expected_logits, atol=1e-5, rtol=1e-5)
    for gradient, reference in zip(gradients, expected, strict=True):
        torch.testing.assert_close(gradient, reference, atol=1e-5, rtol=1e-4)


def test_two_threads_give_the_numbers_of_one():
    """The batch is split over threads by sequence, so no sum changes order."""
    one = _copy_model_gradients(6, cpu_kernel=True, dtype=torch.float64)
    two = _copy_model_gradients(6, cpu_kernel=True, dtype=torch.float64, threads=2)
    torch.testing.assert_close(one[0], two[0], atol=1e-13, rtol=0)
    for a, b in zip(one[1], two[1], strict=True):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=1e-12)


def test_a_batch_first_model_gives_the_numbers_of_the_python_node():
    """Non-contiguous inputs (batch_first) reach the kernel as contiguous copies."""
    options = {"batch_first": True, "memory_slots": 16, "memory_width": 5, "controller_size": 8}
    inputs = torch.randn(3, 7, 9, dtype=torch.float64)
    results = []
    for cpu_kernel in (True, False):
        torch.manual_seed(0)
        model = ntm.NTM(9, 8, dtype=torch.float64, **options)
        kernel.set_enabled(cpu_kernel)
        try:
            logits, _ = model(inputs)
        finally:
            kernel.set_enabled(True)
        logits.sum().backward()
        results.append((logits, [p.grad for p in model.parameters()]))
    torch.testing.assert_close(results[0][0], results[1][0], atol=1e-12, rtol=0)
    for a, b in zip(results[0][1], results[1][1], strict=True):
        torch.testing.assert_close(a, b, atol=1e-10, rtol=1e-9)


def test_the_kernel_is_chosen_only_for_cpu_float_inputs():
    if kernel.load() is None:
        pytest.skip(f"the kernel cannot be built here: {kernel.failure()}")
    assert kernel.applies(torch.zeros(2, 1, 4))
    assert kernel.applies(torch.zeros(2, 1, 4, dtype=torch.float64))
    assert not kernel.applies(torch.zeros(2, 1, 4, dtype=torch.bfloat16))
    kernel.set_enabled(False)
    try:
        assert not kernel.applies(torch.zeros(2, 1, 4))
    finally:
        kernel.set_enabled(True)


def test_a_bfloat16_model_trains_on_the_python_node():
    model = ntm.NTM(3, 2, memory_slots=8, memory_width=4, controller_size=8,
                    dtype=torch.bfloat16)
    logits, _ = model(torch.randn(4, 2, 3, dtype=torch.bfloat16))
    assert type(logits.grad_fn).__name__ != "_KernelSequenceBackward"
    logits.float().sum().backward()
    assert all(torch.isfinite(p.grad.float()).all() for p in model.parameters())


def test_a_failed_build_warns_once_and_falls_back(monkeypatch):
    def no_compiler():
        raise RuntimeError("Error building extension\nc++: not found")

    monkeypatch.setattr(kernel.EXTENSION, "build", no_compiler)
    monkeypatch.setattr(kernel.EXTENSION, "module", None)
    monkeypatch.setattr(kernel.EXTENSION, "reason", None)
    with pytest.warns(RuntimeWarning, match="could not be built.*c\\+\\+: not found"):
        assert kernel.load() is None
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no second warning
        assert not kernel.applies(torch.zeros(2, 1, 4))
    model = ntm.NTM(3, 2, memory_slots=8, memory_width=4, controller_size=8)
    logits, _ = model(torch.randn(4, 2, 3))
    assert type(logits.grad_fn).__name__ != "_KernelSequenceBackward"
    logits.sum().backward()
    assert "c++: not found" in kernel.failure()


def test_the_environment_variable_turns_the_kernel_off():
    code = ("import torch, ntm, ntm.kernel as k; m = ntm.NTM(3, 2, memory_slots=8, "
            "memory_width=4, controller_size=8); y, _ = m(torch.zeros(2, 1, 3)); "
            "print(k.is_enabled(), type(y.grad_fn.next_functions[0][0]).__name__)")
    for value in ("0", "false", "OFF", "no"):
        result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                env={"NTM_CPU_KERNEL": value, "PATH": ""}, check=True)
        assert result.stdout.split()[0] == "False"
    result = subprocess.run([sys.executable, "-c", "import ntm.kernel as k; print(k.is_enabled())"],
                            capture_output=True, text=True, env={"NTM_CPU_KERNEL": "1"},
                            check=True)
    assert result.stdout.strip() == "True"


def test_the_python_node_runs_when_the_kernel_is_off(monkeypatch):
    monkeypatch.setattr(kernel, "_enabled", False)
    model = ntm.NTM(3, 2, memory_slots=8, memory_width=4, controller_size=8)
    _, state = model(torch.zeros(2, 1, 3))
    assert type(state.memory.grad_fn).__name__ == "_FusedSequenceBackward"
    assert kernel.status().startswith("off")


def test_a_stale_build_lock_is_removed_and_a_fresh_one_kept(tmp_path):
    lock = tmp_path / "lock"
    lock.touch()
    extension.clear_stale_lock(lock)  # a build in progress: left alone
    assert lock.exists()
    old = time.time() - extension.STALE_LOCK_SECONDS - 60
    os.utime(lock, (old, old))
    with pytest.warns(RuntimeWarning, match="stale build lock"):
        extension.clear_stale_lock(lock)
    assert not lock.exists()
    extension.clear_stale_lock(lock)  # no lock: nothing to do


# A process that holds the kernel's build (the owner lock) until it is killed, as a build does.
_HOLDER = """
import sys, time
from pathlib import Path
from ntm.backends import extension
with extension.build_owner(Path(sys.argv[1]), 5):
    print("holding", flush=True)
    time.sleep(120)
"""


def _holder(build_dir):
    process = subprocess.Popen([sys.executable, "-c", _HOLDER, str(build_dir)],
                               stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "holding"
    return process


def test_a_build_lock_left_by_an_interrupted_build_is_removed_at_once(tmp_path, capfd):
    (tmp_path / "lock").touch()  # what torch leaves when its build is killed: it then hangs
    started = time.monotonic()
    with extension.build_owner(tmp_path, wait_seconds=5):
        assert not (tmp_path / "lock").exists()
    assert time.monotonic() - started < 2
    assert "removing the build lock of an interrupted kernel build" in capfd.readouterr().err


def test_a_build_in_progress_is_waited_for_then_given_up_and_a_killed_one_is_taken_over(
        tmp_path, capfd):
    holder = _holder(tmp_path)
    try:
        (tmp_path / "lock").touch()  # the holder's build in progress: not ours to remove
        with pytest.raises(extension.BuildWaitTimeout, match="more than 1 s"):
            with extension.build_owner(tmp_path, wait_seconds=1):
                pass
        err = capfd.readouterr().err
        assert f"waiting for another process (pid {holder.pid}) to finish building" in err
        assert (tmp_path / "lock").exists()
    finally:
        holder.kill()  # killed mid-build: the OS releases its lock
        holder.wait()
    with extension.build_owner(tmp_path, wait_seconds=5):
        assert not (tmp_path / "lock").exists()  # its leftover torch lock is cleared


def test_a_timed_out_wait_falls_back_to_the_python_node_with_a_warning(monkeypatch):
    def waited_too_long():
        raise extension.BuildWaitTimeout("another process held the build for more than 1 s")

    monkeypatch.setattr(kernel.EXTENSION, "module", None)
    monkeypatch.setattr(kernel.EXTENSION, "reason", None)
    monkeypatch.setattr(kernel.EXTENSION, "build", waited_too_long)
    with pytest.warns(RuntimeWarning, match="could not be built .*more than 1 s.*Python fused"):
        assert kernel.load() is None
    model = ntm.NTM(3, 2, memory_slots=8, memory_width=4, controller_size=8)
    _, state = model(torch.zeros(2, 1, 3))
    assert type(state.memory.grad_fn).__name__ == "_FusedSequenceBackward"


def test_ninja_is_found_next_to_the_interpreter_when_not_on_path(monkeypatch):
    ninja = pytest.importorskip("ninja")
    monkeypatch.setenv("PATH", "/nonexistent")
    extension.find_ninja()
    assert os.environ["PATH"].split(os.pathsep)[0] == ninja.BIN_DIR
    assert shutil.which("ninja") is not None


@pytest.mark.parametrize("cpu_kernel", [True, False], ids=["kernel", "python"])
def test_a_state_of_another_dtype_raises(cpu_kernel, monkeypatch):
    """Both nodes refuse a float32 state in a float64 model (neither converts it silently):
    the module checks the state's dtype before either node runs."""
    monkeypatch.setattr(kernel, "_enabled", cpu_kernel)
    model = ntm.NTM(3, 2, memory_slots=8, memory_width=4, controller_size=8, dtype=torch.float64)
    state = model.initial_state(2)
    state = state._replace(memory=state.memory.float())
    with pytest.raises(ValueError, match="state.memory must have the model's dtype "
                       "torch.float64, got torch.float32"):
        model(torch.zeros(3, 2, 3, dtype=torch.float64), state)


def _built():
    module = kernel.load()
    if module is None:
        pytest.skip(f"the kernel cannot be built here: {kernel.failure()}")
    return module


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_the_kernels_exp_is_within_two_ulp_of_numpy(dtype):
    """Over the softmax's range (logits minus their maximum, <= 0), in both precisions."""
    x = torch.linspace(-80.0, 0.0, 100_001, dtype=dtype)
    x = torch.cat([x, torch.tensor([-1e-30, -0.5 * math.log(2), -math.log(2)], dtype=dtype)])
    expected = np.exp(x.numpy().astype(np.float64))
    relative = np.abs(_built().exp(x).numpy().astype(np.float64) - expected) / expected
    assert relative.max() <= 2 * torch.finfo(dtype).eps
    assert _built().exp(torch.tensor([0.0], dtype=dtype)).item() == 1.0
    # Far below: 0 or a number too small to matter (float32 ends its normal range at 1e-38).
    tiny = _built().exp(torch.linspace(-2000.0, -80.0, 1001, dtype=dtype))
    assert (tiny >= 0).all() and (tiny <= math.exp(-80.0) * 1.01).all()
    assert _built().exp(torch.tensor([-1000.0, -float("inf")], dtype=dtype)).tolist() == [0, 0]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_the_kernels_log_is_within_two_ulp_of_numpy(dtype):
    """Over the sharpening's range: weights clamped to [LOG_FLOOR, 1], and a little above 1."""
    x = torch.logspace(-30, 0.01, 100_001, dtype=dtype)
    x = torch.cat([x, torch.tensor([1.0, 2.0, 0.5, math.sqrt(2.0), 1e-30], dtype=dtype)])
    expected = np.log(x.numpy().astype(np.float64))
    error = np.abs(_built().log(x).numpy().astype(np.float64) - expected)
    assert (error <= 2 * torch.finfo(dtype).eps * np.maximum(np.abs(expected), 1.0)).all()
    assert _built().log(torch.tensor([1.0], dtype=dtype)).item() == 0.0


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_the_kernels_exp_and_log_keep_nan(dtype):
    nan = torch.tensor([float("nan")], dtype=dtype)
    assert torch.isnan(_built().exp(nan)).all() and torch.isnan(_built().log(nan)).all()


def test_a_build_failure_is_told_by_the_compilers_first_error():
    error = RuntimeError("Error building extension 'x':\n[1/2] c++ -c a.cpp\n"
                         "a.cpp:3:1: error: expected ';'\na.cpp:9:2: error: later\n"
                         "ninja: build stopped: subcommand failed.")
    assert extension.reason(error) == "RuntimeError: a.cpp:3:1: error: expected ';'"
    assert extension.reason(OSError("no such file\nc++")) == "OSError: c++"
