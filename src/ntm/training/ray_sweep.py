"""The seeds of a sweep as Ray tasks: on a Ray instance started for the sweep, or on a cluster.

Each seed is one Ray task that asks for ``train.threads`` CPUs (and a GPU when
``train.device`` is ``cuda``) and runs the seed's ``ntm train`` in a child process, as
:func:`ntm.training.sweep.run_sweep` does here; run directories, summary and table are the
same. The child dies with the task's worker (Linux: ``PR_SET_PDEATHSIG``), so that a lost worker
leaves no trainer behind; Ray then runs the task again (up to :data:`WORKER_RETRIES` times),
and the new attempt resumes the seed from its last checkpoint with ``ntm train --resume``,
whose metrics equal those of an unbroken run. On Ctrl-C the sweep tells every task to stop: each
sends its child a SIGINT, so that every seed ends with a checkpoint, and seeds not yet started
are not started.

:func:`connect` starts a Ray instance of its own on 127.0.0.1 (``address=None``) or joins the
cluster at an address; it needs the optional extra (``pip install
'neural-turing-machines[cluster]'``). Several machines must see the sweep's directory at the
same path (a shared file system): each seed writes its run there, and a retried seed may
resume on another machine. A cluster whose head uses token authentication (Ray's default since
2.59 where a token exists) is joined with ``RAY_AUTH_MODE=token`` and its token in
``RAY_AUTH_TOKEN`` or ``~/.ray/auth_token``: Ray sends no token to an address it is given
otherwise.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib.util
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .checkpoint import METRICS_FILE, STATE_FILE, read_counters
from .errors import ConfigError
from .sweep import LAUNCHER_VARIABLES, LOG_FILE, SeedRun, cpu_cores, seed_command, seed_result

__all__ = ["INSTALL", "LOOPBACK", "WORKER_RETRIES", "RayCluster", "available", "cluster_address",
           "connect"]

INSTALL = "pip install 'neural-turing-machines[cluster]'"
LOOPBACK = "127.0.0.1"  # the address of a Ray instance started here: it never leaves the machine
WORKER_RETRIES = 3  # attempts after a lost worker, each resuming from the seed's checkpoint
POLL_SECONDS = 0.5  # how often a task looks at its child and at the stop flag
CONNECT_SECONDS = 5.0  # to wait for a cluster's address to answer
OBJECT_STORE_BYTES = 100 * 1024**2  # tasks pass only small results; Ray's default takes 30% of RAM
# A local instance: loopback only (Ray would otherwise pick the machine's outward address) and
# no usage statistics sent anywhere.
_LOCAL_ENVIRONMENT = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_USAGE_STATS_ENABLED": "0"}
_AUTH_MODE = "RAY_AUTH_MODE"  # "token": send the token of RAY_AUTH_TOKEN or ~/.ray/auth_token
_PR_SET_PDEATHSIG = 1


def available() -> bool:
    """Whether Ray is installed (the ``cluster`` extra)."""
    return importlib.util.find_spec("ray") is not None


def cluster_address(address: str | None) -> str | None:
    """The cluster to join: ``address`` (``--address``), else the ``RAY_ADDRESS`` the user set,
    else None (a Ray instance of the sweep's own)."""
    return address or os.environ.get("RAY_ADDRESS") or None


@dataclass
class RayCluster:
    """Where :func:`~ntm.training.sweep.run_sweep` trains its seeds (its ``cluster``), within
    :func:`connect`.

    Attributes:
        threads: CPUs each seed's task asks for (its ``train.threads``).
        gpus: GPUs each seed's task asks for (1 for ``train.device=cuda``, else 0).
    """

    threads: int = 1
    gpus: int = 0

    def train_seeds(self, folders: dict[int, Path], train_args: Sequence[str], target: float,
                    *, jobs: int | None = None,
                    report: Callable[[SeedRun], None] | None = None) -> dict[int, SeedRun]:
        """Train each seed of ``folders`` in a Ray task, at most ``jobs`` at a time (None: as
        many as the cluster's CPUs and GPUs hold); see :class:`~ntm.training.sweep.SeedRunner`.
        """
        import ray

        _check_fits(self.threads, self.gpus)
        task = ray.remote(_seed_task).options(num_cpus=self.threads, num_gpus=self.gpus,
                                              max_retries=WORKER_RETRIES, retry_exceptions=False)
        # Restarted, unset, where Ray loses it (its memory monitor kills workers when the
        # machine runs short): a lost flag read as set stopped every seed as if by Ctrl-C.
        stop = ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=-1)(_StopFlag).remote()
        start = {seed: (lambda seed=seed, folder=folder: task.remote(
            seed, str(folder), list(train_args), target, os.getcwd(), stop))
            for seed, folder in folders.items()}
        try:
            runs, interrupted = _gather(start, folders, stop, self._limit(jobs), report)
        finally:
            ray.kill(stop)
        if interrupted:
            raise KeyboardInterrupt
        return runs

    def _limit(self, jobs: int | None) -> Callable[[], int]:
        """Tasks in flight at a time: ``jobs``, or what the cluster holds now (it may grow)."""
        if jobs is not None:
            return lambda: jobs

        def held() -> int:
            import ray

            resources = ray.cluster_resources()
            room = int(resources.get("CPU", 0) // self.threads)
            if self.gpus:
                room = min(room, int(resources.get("GPU", 0) // self.gpus))
            return max(room, 1)

        return held


def _gather(start: dict[int, Callable[[], Any]], folders: dict[int, Path], stop: Any,
            limit: Callable[[], int],
            report: Callable[[SeedRun], None] | None) -> tuple[dict[int, SeedRun], bool]:
    """Start the tasks of ``start`` (seed -> a call that submits it) up to ``limit()`` at a
    time and collect their results; a first Ctrl-C tells every task to stop and starts no
    more, a second one is raised. Returns the results and whether the sweep was interrupted."""
    import ray

    waiting, running, runs, interrupted = list(start), {}, {}, False
    while running or (waiting and not interrupted):
        try:
            while waiting and not interrupted and len(running) < limit():
                seed = waiting.pop(0)
                running[start[seed]()] = seed
            done, _ = ray.wait(list(running), num_returns=1, timeout=1.0)
        except KeyboardInterrupt:
            if interrupted:
                raise
            interrupted = True
            ray.get(stop.set.remote())
            continue
        for ref in done:
            seed = running.pop(ref)
            run = runs[seed] = _task_result(ref, seed, folders[seed])
            if report is not None:
                report(run)
    for seed in waiting:  # interrupted before they started
        runs[seed] = SeedRun(seed, str(folders[seed]), None, error="interrupted before it started")
    return runs, interrupted


def _task_result(ref: Any, seed: int, folder: Path) -> SeedRun:
    """The SeedRun a task returned, or a failed one saying why the task did not return."""
    import ray

    try:
        return ray.get(ref)
    except ray.exceptions.RayError as error:  # retries spent, or a node lost with no retry left
        text = " ".join(str(error).split())
        return SeedRun(seed, str(folder), None,
                       error=f"its Ray task failed: {type(error).__name__}: {text[:300]}")


def _check_fits(threads: int, gpus: int) -> None:
    """Refuse a seed that no node of the cluster has the CPUs (or GPUs) for: it would wait
    forever."""
    import ray

    nodes = [node.get("Resources", {}) for node in ray.nodes() if node.get("Alive")]
    if any(node.get("CPU", 0) >= threads and node.get("GPU", 0) >= gpus for node in nodes):
        return
    most = max((int(node.get("CPU", 0)) for node in nodes), default=0)
    raise ConfigError(f"no node of the Ray cluster has {threads} CPU(s)"
                      + (f" and {gpus} GPU(s)" if gpus else "")
                      + f" for one seed (the largest has {most} CPUs); lower train.threads, "
                      "or add a node that has them")


class _StopFlag:
    """A Ray actor that the tasks of a sweep ask whether Ctrl-C was pressed."""

    def __init__(self) -> None:
        self.stopped = False

    def set(self) -> None:
        self.stopped = True

    def is_set(self) -> bool:
        return self.stopped


# -- the task, on a worker ---------------------------------------------------------------------


def _seed_task(seed: int, folder: str, train_args: list[str], target: float, cwd: str,
               stop: Any) -> SeedRun:
    """Train one seed (the Ray task): start its ``ntm train`` (``--resume`` when an earlier
    attempt left a checkpoint), watch it and the stop flag, and read back how it went.

    ``folder`` is as the sweep names it, relative to ``cwd`` (the sweep's directory, where the
    child runs, as a sweep's children do, when this machine has it)."""
    base = Path(cwd) if os.path.isdir(cwd) else Path.cwd()
    path = Path(folder) if Path(folder).is_absolute() else base / folder
    if _stopped(stop):
        return SeedRun(seed, folder, None, error="interrupted before it started")
    command, note = _attempt(seed, Path(folder), path, train_args)
    environment = {key: value for key, value in os.environ.items()
                   if key not in LAUNCHER_VARIABLES}
    environment["OMP_NUM_THREADS"] = "1"  # the threads torch starts before train() sets its own
    try:
        path.mkdir(parents=True, exist_ok=True)
        with open(path / LOG_FILE, "a" if note else "w", encoding="utf-8") as log:
            if note:
                log.write(f"ntm sweep: {note}\n")
                log.flush()
            process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                                       stdin=subprocess.DEVNULL, env=environment, cwd=base,
                                       preexec_fn=_die_with_parent, start_new_session=True)
    except OSError as error:  # no log or no process: this seed fails, the others go on
        return SeedRun(seed, folder, None, error=f"could not start ntm train: {error}")
    return seed_result(seed, Path(folder), _supervise(process, stop), target, where=path)


def _attempt(seed: int, folder: Path, path: Path,
             train_args: Sequence[str]) -> tuple[list[str], str | None]:
    """The command of this attempt at a seed, and a note for its log if an earlier attempt (a
    lost worker) left something: a checkpoint is resumed; a run that died before its first
    checkpoint starts again (the sweep checked that the folder held no run before)."""
    if (path / STATE_FILE).is_file():
        step = read_counters(path / STATE_FILE)["step"]
        return ([sys.executable, "-m", "ntm", "train", "--resume", str(folder), "--no-progress"],
                f"an earlier attempt was lost; resuming from its checkpoint of step {step}")
    if (path / METRICS_FILE).is_file():
        (path / METRICS_FILE).unlink()
        return (seed_command(seed, folder, train_args),
                "an earlier attempt was lost before its first checkpoint; starting again")
    return seed_command(seed, folder, train_args), None


def _supervise(process: subprocess.Popen, stop: Any) -> int:
    """Wait for the child; when the sweep is stopped, send it SIGINT (it saves a checkpoint
    after its current step) and wait for it to end. Returns its exit status."""
    while True:
        try:
            return process.wait(timeout=POLL_SECONDS)
        except subprocess.TimeoutExpired:
            pass
        if _stopped(stop):
            process.send_signal(signal.SIGINT)
            return process.wait()


def _stopped(stop: Any) -> bool:
    """Whether the sweep asked its tasks to stop (or cannot be asked any more: its driver is
    gone)."""
    import ray

    try:
        return bool(ray.get(stop.is_set.remote(), timeout=30))
    except ray.exceptions.RayError:
        return True


# Looked up here, not in the child between fork and exec, where loading a library can
# deadlock in a multithreaded parent (a Ray worker).
_PRCTL = ctypes.CDLL(None, use_errno=True).prctl if sys.platform.startswith("linux") else None


def _die_with_parent() -> None:
    """In the child, before ``exec``: take signals again, and be killed when the task's worker
    dies (Linux), so that a retried seed never has two trainers. Elsewhere a lost worker can
    leave its child running. The child is also started in a session of its own
    (``start_new_session``): a Ctrl-C at the terminal then reaches the sweep, which stops each
    seed with one SIGINT, and never the trainer directly, where the sweep's own SIGINT would be
    a second one, which stops at once without the checkpoint.

    A Ray worker blocks SIGINT, and a child inherits the mask through ``exec``: the sweep's
    SIGINT (Ctrl-C: stop with a checkpoint) would wait for ever while the seed trained on."""
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_SETMASK, set())
    if _PRCTL is None:
        return
    _PRCTL(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() == 1:  # the worker died before prctl: do not train at all
        os._exit(1)


# -- connecting ---------------------------------------------------------------------------------


@contextlib.contextmanager
def connect(address: str | None = None, *, cpus: int | None = None) -> Iterator[str]:
    """Within: Ray started on 127.0.0.1 for this process (``address=None``: ``cpus`` CPUs,
    default the cores this process may use; stopped at the end) or joined at ``address``
    (``HOST:PORT``, ``ray://HOST:PORT`` or ``auto``; left at the end). Yields a description of
    where the tasks run, e.g. ``"a local Ray instance (2 CPUs)"``.

    A Ray of its own, or a cluster at a loopback address, is kept on 127.0.0.1 (Ray would
    otherwise put this machine's outward address in its place, and listen on it), even when
    Ray was imported before.

    Raises:
        ConfigError: Ray is not installed, nothing answers at ``address``, the cluster there
            refuses to be joined, or Ray's own instance did not start, or not on 127.0.0.1.
    """
    if not available():
        raise ConfigError(f"Ray is not installed; {INSTALL}")
    if address is not None:
        _check_answers(address)
    import ray

    with _on_loopback(address is None or _is_loopback(address)):
        where = _start_local(cpus or cpu_cores()) if address is None else _join(address)
        try:
            yield where
        finally:
            ray.shutdown()


def _start_local(cpus: int) -> str:
    """Start a Ray instance of this process's own on 127.0.0.1 (``address="local"``: never a
    cluster that happens to run on the machine)."""
    import ray

    try:
        ray.init(address="local", num_cpus=cpus, _node_ip_address=LOOPBACK,
                 include_dashboard=False, log_to_driver=False, logging_level="error",
                 object_store_memory=OBJECT_STORE_BYTES)
    except (RuntimeError, ConnectionError, ValueError, ray.exceptions.RayError) as error:
        ray.shutdown()  # what it started
        reason = next((line.strip() for line in str(error).splitlines() if line.strip()), "")
        raise ConfigError(f"could not start a local Ray instance: {type(error).__name__}: "
                          f"{reason[:300]}") from None
    host = ray.get_runtime_context().gcs_address.rpartition(":")[0]
    if host != LOOPBACK:
        ray.shutdown()
        raise ConfigError(f"Ray started its instance on {host}, not on {LOOPBACK}; set "
                          "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 before Ray is imported")
    return f"a local Ray instance ({cpus} CPUs)"


def _join(address: str) -> str:
    """Join the cluster at ``address``; a description of it."""
    import ray

    try:
        ray.init(address=address, log_to_driver=False, logging_level="error")
    except (ConnectionError, ValueError, RuntimeError) as error:
        hint = ("" if os.environ.get(_AUTH_MODE, "").lower() == "token" else
                f"; if its head started with token authentication (Ray's default where a token "
                f"exists), set {_AUTH_MODE}=token and its token (RAY_AUTH_TOKEN or "
                "~/.ray/auth_token)")
        raise ConfigError(f"cannot join the Ray cluster at {address}: {error}{hint}") from None
    return f"the Ray cluster at {address} ({int(ray.cluster_resources().get('CPU', 0))} CPUs)"


def _is_loopback(address: str) -> bool:
    host = address.removeprefix("ray://").rpartition(":")[0].strip("[]")
    return host == "localhost" or host.startswith("127.") or host == "::1"


@contextlib.contextmanager
def _on_loopback(active: bool) -> Iterator[None]:
    """Within (if ``active``): Ray's variables for an instance on 127.0.0.1 set (those the
    user set kept), restored at the end. Ray reads ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER`` once,
    when it is imported; where that came first, its reading is set too."""
    if not active:
        yield
        return
    from ray._private import ray_constants

    saved = {key: os.environ.get(key) for key in _LOCAL_ENVIRONMENT}
    for key, value in _LOCAL_ENVIRONMENT.items():
        os.environ.setdefault(key, value)
    enabled = getattr(ray_constants, "ENABLE_RAY_CLUSTER", None)
    if os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] == "0" and enabled:
        ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        yield
    finally:
        if enabled is not None:
            ray_constants.ENABLE_RAY_CLUSTER = enabled
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _check_answers(address: str) -> None:
    """Refuse, in one line and in seconds, an address where nothing listens (Ray itself would
    retry for a minute and more)."""
    if address == "auto":
        return
    host, colon, port = address.removeprefix("ray://").rpartition(":")
    if not colon or not host or not port.isdigit():
        raise ConfigError(f"--address {address}: expected HOST:PORT (the head's address, "
                          "printed by ray start --head), ray://HOST:PORT or auto")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=CONNECT_SECONDS):
            pass
    except OSError as error:
        reason = error.strerror or type(error).__name__
        raise ConfigError(f"no Ray cluster answers at {address} ({reason}); start one with "
                          "ray start --head, or leave out --address for a local one") from None

