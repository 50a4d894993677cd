"""Building the C++ kernels: compiled once per machine on first use, one process at a time.

The NTM's kernel (:mod:`ntm.backends.kernel`) and the DNC's (:mod:`ntm.backends.dnc_kernel`)
are each an :class:`Extension`: built with ``torch.utils.cpp_extension`` the first time a
sequence asks for it (a C++ compiler is needed; about 30 s; the result is cached by torch under
``~/.cache/torch_extensions``), or, where it cannot be built, ``None`` with one warning and the
reason kept for :meth:`Extension.failure`. One process builds at a time (:func:`build_owner`): a
build that was interrupted, at any moment, is detected and redone with one line; a process that
waits for another's build says so, and after ``NTM_KERNEL_BUILD_WAIT`` seconds (300) gives up.
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
from collections.abc import Sequence
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None

import torch

__all__ = ["BUILD_WAIT_SECONDS", "FLAGS", "STALE_LOCK_SECONDS", "BuildWaitTimeout", "Extension",
           "build_owner"]

# -fopenmp: at::parallel_for splits the batch over torch's threads only when the extension is
# built with OpenMP, as torch is. -march=native: the machine that builds is the one that runs
# (the build's name carries this machine's CPU flags). The last four let the compiler
# vectorise the sums over memory rows (reassociation changes only the rounding); NaN and inf
# keep their meaning (no -ffinite-math-only).
FLAGS = ["-O3", "-fopenmp", "-march=native", "-fno-math-errno", "-fno-trapping-math",
         "-fassociative-math", "-fno-signed-zeros"]
# A build lock older than this was left by a killed build (a build takes under a minute); used
# only where flock is missing (see build_owner).
STALE_LOCK_SECONDS = 600
# How long a process waits for another one's build before it falls back.
BUILD_WAIT_SECONDS = float(os.environ.get("NTM_KERNEL_BUILD_WAIT", "300"))


class Extension:
    """One C++ extension, built on the first :meth:`load`.

    Args:
        label: what the messages call it, e.g. ``"the C++ CPU kernel"``.
        prefix: the start of the extension's name; the rest is a hash of its sources, the
            compiler flags, torch's version and this CPU, so that an edited kernel is never
            mixed up with an older build in torch's cache.
        translation_unit: the one ``.cpp`` file compiled.
        headers: the files it includes, hashed with it.
        fallback: what runs instead where it cannot be built, for the warning.
    """

    def __init__(self, label: str, prefix: str, translation_unit: Path,
                 headers: Sequence[Path], fallback: str):
        self.label, self.prefix, self.fallback = label, prefix, fallback
        self.translation_unit, self.headers = translation_unit, tuple(headers)
        self.module = None  # the loaded extension, once built
        self.reason: str | None = None  # why it could not be built, once tried
        self._lock = threading.Lock()

    def load(self):
        """The compiled extension, building it on the first call; ``None`` where it cannot be
        built (warned once)."""
        if self.module is not None or self.reason is not None:
            return self.module
        with self._lock:
            if self.module is None and self.reason is None:
                try:
                    self.module = self.build()
                except Exception as error:  # no compiler, no headers, a failed compile
                    self.reason = reason(error)
                    warnings.warn(f"ntm: {self.label} could not be built ({self.reason}); using "
                                  f"{self.fallback}. Set NTM_CPU_KERNEL=0 to skip the attempt.",
                                  RuntimeWarning, stacklevel=4)
        return self.module

    def failure(self) -> str | None:
        """Why it could not be built, or ``None``."""
        return self.reason

    def build(self):
        """Compile (or load torch's cached build of) the extension."""
        from torch.utils import cpp_extension

        find_ninja()
        sources = [self.translation_unit, *self.headers]
        source = b"".join(path.read_bytes() for path in sources)
        identity = [torch.__version__, platform.machine(), cpu_flags(), *FLAGS]
        digest = hashlib.sha256(source + "\n".join(identity).encode()).hexdigest()[:12]
        name = f"{self.prefix}_{digest}"
        build_dir = Path(cpp_extension._get_build_directory(name, verbose=False))
        with build_owner(build_dir, BUILD_WAIT_SECONDS):
            if not any(build_dir.glob(f"{name}*.so")):
                print(f"ntm: compiling {self.label} (once; about 30 s)", file=sys.stderr,
                      flush=True)
            return cpp_extension.load(name=name, sources=[str(self.translation_unit)],
                                      extra_cflags=FLAGS, extra_ldflags=["-fopenmp"],
                                      verbose=False)


def reason(error: Exception) -> str:
    """One line: the compiler's first error where there is one, else the exception's last line."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()] or [""]
    compiler = [line for line in lines if "error:" in line]
    return f"{type(error).__name__}: {compiler[0] if compiler else lines[-1]}"


@contextlib.contextmanager
def build_owner(build_dir: Path, wait_seconds: float):
    """Hold the right to build (or load) the extension in ``build_dir`` against other processes.

    torch's own build lock is a plain file that a killed build leaves behind, and torch waits
    for it to go away forever. This one is an OS lock (``flock``) on ``owner.lock`` that the
    kernel releases when its process ends, however it ends: whoever holds it knows that no
    other process is building, so a torch lock found then was left by an interrupted build
    and is removed (with one line). A process that finds the owner lock taken says so and
    waits up to ``wait_seconds``; then it gives up (:class:`BuildWaitTimeout`, which
    :meth:`Extension.load` turns into the fallback with a warning).
    """
    build_dir.mkdir(parents=True, exist_ok=True)
    if fcntl is None:  # no flock (Windows): torch's lock alone, cleared when it is old
        clear_stale_lock(build_dir / "lock")
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


def find_ninja() -> None:
    """torch builds and loads extensions with ninja, found on PATH. The ``ninja`` package
    (a dependency) installs it next to the interpreter, which is not on PATH when a virtual
    environment's ``ntm`` is run without activating it."""
    if shutil.which("ninja") is None:
        try:
            import ninja
        except ImportError:
            return
        os.environ["PATH"] = ninja.BIN_DIR + os.pathsep + os.environ.get("PATH", "")


def clear_stale_lock(lock: Path) -> None:
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


def cpu_flags() -> str:
    """This CPU's feature flags (Linux: ``flags`` on x86, ``Features`` on ARM), so that a build
    for one CPU is not run on another."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                return line
    except OSError:
        pass
    return platform.processor()
