"""``ntm sweep`` and ``ntm tune`` on a real Ray (ntm.training.ray_sweep, ntm.training.tune).

The Ray tests skip when Ray (or, for ``ntm tune``, Optuna) is not installed; the tests of a
machine without them run everywhere. Every Ray instance stays on 127.0.0.1: the tests set
``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` and start the head of their cluster with
``--node-ip-address=127.0.0.1``. Ray's files go to a temporary directory of the test's own
(``RAY_TMPDIR``, ``--temp-dir``) and its token comes from ``RAY_AUTH_TOKEN``, so that nothing
is written to ``/tmp/ray`` or ``~/.ray``; the cluster's processes are one process group of the
test's own, killed at the end (``ray stop`` would stop every Ray of the machine).

Models are tiny and runs a few steps: on a 2-core machine Ray's own start takes most of the
time. The cluster is shared by the two tests that join it (module scope), to start it once.
"""

import contextlib
import csv
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from helpers import untimed_metrics

from ntm.cli import main
from ntm.training import STATE_FILE, ray_sweep, read_metrics
from ntm.training import tune as ntm_tune

SIZES = ["--set", "model.memory_slots=12", "--set", "model.memory_width=6",
         "--set", "model.controller_size=12", "--set", "task.max_length=3"]
SMALL = [*SIZES, "--set", "train.log_every=1", "--set", "train.val_every=2",
         "--set", "train.val_batches=1", "--set", "train.val_batch_size=2",
         "--set", "train.device=cpu", "--batch-size", "2"]
LOOPBACK_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_USAGE_STATS_ENABLED": "0"}
RAY = str(Path(sys.executable).parent / "ray")
# The token of the local instances: one for the module, since Ray keeps the first it reads in
# the process (a Ray started later with another would refuse its own driver).
TOKEN = secrets.token_hex(16)
START_SECONDS = 120  # for the head of the test's cluster to start, on a busy machine


def _one_line_error(capsys, argv):
    """Run ``argv``: exit status 2 and one line on stderr, ``ntm: error: ...``."""
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("ntm: error: "), err
    return err[0]


# -- processes, read from /proc ------------------------------------------------------------


def _stat(pid):
    """``(state, parent, process group)`` of a process, or None if it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2:].split()  # after "pid (command) "
    return fields[0], int(fields[1]), int(fields[2])


def _cmdline(pid):
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return []


def _live_pids():
    """The processes that run (zombies, which hold nothing, left out)."""
    pids = [int(name) for name in os.listdir("/proc") if name.isdigit()]
    return [pid for pid in pids if (_stat(pid) or ("Z",))[0] not in ("Z", "X")]


def _ray_processes(temp_dir):
    """Processes of the Ray instance whose files are under ``temp_dir``."""
    return [pid for pid in _live_pids() if any(str(temp_dir) in arg for arg in _cmdline(pid))]


def _wait_until(condition, seconds, what):
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"waited {seconds} s for {what}"
        time.sleep(0.05)


@pytest.fixture
def ray_env(monkeypatch):
    """Ray importable, loopback only, its files in a temporary directory of this test (yielded)
    and the module's token; no ``RAY_ADDRESS`` of the user's. At the end no process of a Ray
    instance this test started is left (those still there after 30 s are killed, and fail it)."""
    pytest.importorskip("ray")
    if not sys.platform.startswith("linux"):
        pytest.skip("the tests read processes from /proc")
    temp = Path(tempfile.mkdtemp(prefix="ntmray", dir="/tmp"))  # Ray's sockets: a short path
    for key, value in {**LOOPBACK_ENV, "RAY_TMPDIR": str(temp),
                       "RAY_AUTH_TOKEN": TOKEN}.items():
        monkeypatch.setenv(key, value)
    for key in ("RAY_ADDRESS", "RAY_AUTH_MODE"):  # the local default sets RAY_AUTH_MODE
        monkeypatch.delenv(key, raising=False)
    try:
        yield temp
        with contextlib.suppress(AssertionError):
            _wait_until(lambda: not _ray_processes(temp), 30, "the local Ray to end")
        left = _ray_processes(temp)
    finally:
        for pid in _ray_processes(temp):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        shutil.rmtree(temp, ignore_errors=True)
    assert not left, f"the local Ray left processes running: {left}"


# -- the local default --------------------------------------------------------------------


def test_a_sweep_without_an_address_starts_a_local_ray_on_loopback_and_stops_it(
        ray_env, tmp_path, capsys, monkeypatch):
    import ray

    seen = {}
    init = ray.init

    def recording_init(*args, **kwargs):
        context = init(*args, **kwargs)
        seen.update(address=kwargs.get("address"), gcs=ray.get_runtime_context().gcs_address,
                    nodes={node["NodeManagerAddress"] for node in ray.nodes()},
                    processes=_ray_processes(ray_env))
        return context

    monkeypatch.setattr(ray, "init", recording_init)
    out, plain = tmp_path / "ray", tmp_path / "plain"
    argv = ["sweep", "copy", "--seeds", "1-2", "--steps", "4", "--target", "1000", *SMALL]
    assert main([*argv, "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert re.search(r"as Ray tasks of 1 CPU\(s\) on a local Ray instance \(\d+ CPUs\)",
                     captured.err), captured.err
    assert seen["address"] == "local"  # its own instance, never a cluster that happens to run
    assert seen["gcs"].startswith("127.0.0.1:") and seen["nodes"] == {"127.0.0.1"}
    assert seen["processes"]  # it ran under the test's directory ...
    assert not ray.is_initialized()  # ... and is stopped (ray_env waits for its processes)

    # The summary and the table are those of a sweep of local processes.
    assert main([*argv, "--out", str(plain), "--no-ray"]) == 0
    table = capsys.readouterr().out
    assert _untimed_table(captured.out.replace(str(out), str(plain))) == _untimed_table(table)
    summaries = [json.loads((folder / "summary.json").read_text()) for folder in (out, plain)]
    for summary in summaries:
        for run in summary["runs"]:
            run["out_dir"] = Path(run["out_dir"]).name
            assert run.pop("seconds_to_target") > 0  # timing: the only field that may differ
    assert summaries[0] == summaries[1] and summaries[0]["finished"] == 2
    assert sorted(path.name for path in out.iterdir()) == ["seed1", "seed2", "summary.json"]

    # A seed's metrics are those of the same seed trained by ntm train.
    alone = tmp_path / "alone"
    assert main(["train", "copy", "--steps", "4", *SMALL, "--seed", "2", "--out", str(alone),
                 "--no-progress"]) == 0
    assert untimed_metrics(out / "seed2") == untimed_metrics(alone)
    assert len(untimed_metrics(alone)) == 4


# -- a cluster started by the test ----------------------------------------------------------


@dataclass
class _Cluster:
    address: str
    token: str
    head: subprocess.Popen


def _free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _descendants(pid):
    """The processes under ``pid``: its children, theirs, and so on."""
    children = {}
    for child in _live_pids():
        children.setdefault((_stat(child) or ("", 0, 0))[1], []).append(child)
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def _stop_tree(process):
    """End ``process`` and every process under it (the head's servers, its workers, each in
    a process group of its own, and their ntm train): SIGTERM to its group, then SIGKILL to
    each that is left."""
    tree = _descendants(process.pid) | {process.pid}
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)

    def alive():
        return tree & set(_live_pids())

    with contextlib.suppress(AssertionError):
        _wait_until(lambda: not alive(), 3, "the cluster to stop")
    for pid in alive():
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    process.wait(timeout=30)
    _wait_until(lambda: not alive(), 30, "the cluster's processes to be killed")


@pytest.fixture(scope="module")
def cluster():
    """A Ray cluster on 127.0.0.1 of 2 CPUs, started with ``ray start --head --block`` in a
    process group of its own, with token authentication (its token in the environment)."""
    pytest.importorskip("ray")
    if not sys.platform.startswith("linux"):
        pytest.skip("the tests read processes from /proc")
    temp = Path(tempfile.mkdtemp(prefix="ntmhead", dir="/tmp"))
    port, token = _free_port(), secrets.token_hex(16)
    environment = {**os.environ, **LOOPBACK_ENV, "RAY_AUTH_MODE": "token",
                   "RAY_AUTH_TOKEN": token}
    environment.pop("RAY_ADDRESS", None)
    log = open(temp.with_suffix(".log"), "w+")  # noqa: SIM115 (read while the head runs)
    head = subprocess.Popen(
        [RAY, "start", "--head", "--node-ip-address=127.0.0.1", f"--port={port}",
         "--num-cpus=2", "--include-dashboard=false", f"--temp-dir={temp}",
         "--disable-usage-stats", "--block"],
        env=environment, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        start_new_session=True)
    try:
        def started():
            assert head.poll() is None, temp.with_suffix(".log").read_text()
            return "Ray runtime started" in temp.with_suffix(".log").read_text()

        _wait_until(started, START_SECONDS, "ray start --head")
        yield _Cluster(f"127.0.0.1:{port}", token, head)
    finally:
        _stop_tree(head)
        log.close()
        shutil.rmtree(temp, ignore_errors=True)
        temp.with_suffix(".log").unlink(missing_ok=True)


def _joining(cluster):
    """The environment of a process that joins ``cluster``: its token (Ray sends one to an
    address given only where ``RAY_AUTH_MODE=token``; it reads both when it is imported)."""
    return {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": cluster.token}


def test_a_sweep_joins_the_cluster_at_its_address(cluster, ray_env, tmp_path):
    out = tmp_path / "sweep"
    sweep = subprocess.run([sys.executable, "-m", "ntm", "sweep", "copy", "--seeds", "1-2",
                            "--steps", "4", "--target", "1000", "--address", cluster.address,
                            "--out", str(out), *SMALL],
                           env=_joining(cluster), capture_output=True, text=True, timeout=300)
    assert sweep.returncode == 0, sweep.stderr
    assert f"on the Ray cluster at {cluster.address} (2 CPUs)" in sweep.stderr
    assert not list(ray_env.iterdir())  # no Ray of its own was started
    assert cluster.head.poll() is None  # the cluster was left running
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["seeds"], summary["finished"], summary["converged"]) == (2, 2, 2)
    assert [(run["seed"], run["steps"], run["sequences"]) for run in summary["runs"]] == \
        [(1, 4, 8), (2, 4, 8)]
    assert re.search(r"^\s*2\s+finished\s+4\s+8\s+\d+\.\d{3}\s+yes\s+4\s+\d+\.\d\s+0\s+yes$",
                     sweep.stdout, re.MULTILINE), sweep.stdout


def _untimed_table(text):
    """A sweep's printed table without its seconds column (cells are 2 or more spaces apart)."""
    rows = []
    for line in text.splitlines():
        cells = re.split(r"\s{2,}", line.strip())
        rows.append(cells[:7] + cells[8:] if len(cells) == 10 else cells)
    return rows


def _trainer_of(folder):
    """The pid of the ntm train that trains into ``folder``, or None."""
    for pid in _live_pids():
        argv = _cmdline(pid)
        if "train" in argv and "--out" in argv and argv[argv.index("--out") + 1] == folder:
            return pid
    return None


def test_a_seed_whose_worker_is_killed_resumes_from_its_checkpoint(cluster, ray_env, tmp_path):
    steps, every = 600, 20
    argv = ["copy", "--steps", str(steps), *SMALL, "--set", f"train.checkpoint_every={every}",
            "--set", "train.log_every=10", "--set", "train.val_every=50"]
    out = tmp_path / "sweep"
    sweep = subprocess.Popen([sys.executable, "-m", "ntm", "sweep", *argv, "--seeds", "3",
                              "--address", cluster.address, "--out", str(out)],
                             env=_joining(cluster), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)
    try:
        folder = out / "seed3"
        def checkpointed():
            assert sweep.poll() is None, sweep.communicate()
            return (folder / STATE_FILE).exists()

        _wait_until(checkpointed, 120, "the seed's first checkpoint")
        trainer = _trainer_of(str(folder))
        command, worker = _cmdline(trainer), _stat(trainer)[1]
        assert _cmdline(worker)[0].startswith("ray::"), _cmdline(worker)  # its Ray worker
        os.kill(worker, signal.SIGKILL)
        _wait_until(lambda: trainer not in _live_pids() or _cmdline(trainer) != command, 10,
                    "the trainer to die with its worker")
        stdout, stderr = sweep.communicate(timeout=300)
    finally:
        if sweep.poll() is None:
            sweep.kill()
            sweep.wait()
    assert sweep.returncode == 0, stderr
    log = (folder / "train.log").read_text()
    resumed = re.search(r"an earlier attempt was lost; resuming from its checkpoint of step "
                        r"(\d+)", log)
    assert resumed and 0 < int(resumed.group(1)) < steps and \
        int(resumed.group(1)) % every == 0, log
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["finished"], summary["runs"][0]["steps"]) == (1, steps)

    alone = tmp_path / "alone"
    assert main(["train", *argv, "--seed", "3", "--out", str(alone), "--no-progress"]) == 0
    assert untimed_metrics(folder) == untimed_metrics(alone)
    assert len(untimed_metrics(alone)) == steps // 10


def test_ctrl_c_stops_every_seed_with_a_resumable_checkpoint(ray_env, tmp_path):
    steps = 5000
    argv = ["copy", "--steps", str(steps), *SMALL, "--set", "train.checkpoint_every=20",
            "--set", "train.log_every=10", "--set", "train.val_every=1000"]
    out = tmp_path / "sweep"
    # In a process group of its own, which Ctrl-C signals whole: the sweep and its local Ray.
    # SIGINT back to its default in the child: a shell starts background jobs with it ignored,
    # and Python then installs no Ctrl-C handler (the suite run as `make test &`).
    sweep = subprocess.Popen([sys.executable, "-m", "ntm", "sweep", *argv, "--seeds", "1-2",
                              "--out", str(out)], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, start_new_session=True,
                             preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        def checkpointed():
            assert sweep.poll() is None, sweep.communicate()
            return all((out / f"seed{seed}" / STATE_FILE).exists() for seed in (1, 2))

        _wait_until(checkpointed, 120, "both seeds' first checkpoints")
        os.killpg(sweep.pid, signal.SIGINT)
        stdout, stderr = sweep.communicate(timeout=120)
    finally:
        if sweep.poll() is None:
            os.killpg(sweep.pid, signal.SIGKILL)
            sweep.wait()
    assert sweep.returncode == 130 and stderr.endswith("ntm: interrupted\n"), stderr
    for seed in (1, 2):
        folder = out / f"seed{seed}"
        assert "Interrupted; checkpoint saved" in (folder / "train.log").read_text()
        step = read_metrics(folder)[-1]["step"]
        assert 0 < step < steps
        assert main(["train", "--resume", str(folder), "--steps", str(step + 2),
                     "--no-progress"]) == 0
        assert read_metrics(folder)[-1]["step"] == step + 2


def test_a_lost_stop_flag_is_restarted_and_no_seed_reads_it_as_ctrl_c(ray_env, tmp_path):
    """Ray's memory monitor kills workers, the stop flag's actor among them, when the machine
    runs short of memory (another job's, say): every seed then read the lost flag as Ctrl-C and
    ended "interrupted before it started". The flag is restarted instead, unset."""
    steps = 400
    argv = ["copy", "--steps", str(steps), *SMALL, "--set", "train.checkpoint_every=20",
            "--set", "train.log_every=10", "--set", "train.val_every=1000"]
    out = tmp_path / "sweep"
    sweep = subprocess.Popen([sys.executable, "-m", "ntm", "sweep", *argv, "--seeds", "1-2",
                              "--jobs", "1", "--out", str(out)], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        found = []

        def flag():
            assert sweep.poll() is None, sweep.communicate()
            if (out / "seed1" / STATE_FILE).exists():
                ours = _ray_processes(ray_env)  # not another Ray's flag on a shared machine
                found.extend(pid for pid in _live_pids()
                             if _cmdline(pid)[:1] and _cmdline(pid)[0].startswith("ray::_Stop")
                             and (_stat(pid) or (None, None))[1] in ours)
            return found

        _wait_until(flag, 120, "the first seed's checkpoint and the stop flag's actor")
        os.kill(found[0], signal.SIGKILL)
        stdout, stderr = sweep.communicate(timeout=300)
    finally:
        if sweep.poll() is None:
            os.killpg(sweep.pid, signal.SIGKILL)
            sweep.wait()
    assert sweep.returncode == 0, stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["finished"] == 2, summary
    assert [run["steps"] for run in summary["runs"]] == [steps, steps]


# -- ntm tune -----------------------------------------------------------------------------

TRIAL_COLUMNS = ["trial", "optim.lr", "seeds", "seeds_solved", "median_sequences_to_target",
                 "best_cost", "median_best_cost", "stopped_early", "score", "run_dirs", "error"]


def test_tune_runs_four_trials_and_writes_trials_best_config_and_figure(ray_env, tmp_path,
                                                                         capsys):
    pytest.importorskip("optuna")
    out = tmp_path / "tune"
    # A target of 1000 bits: every seed solves at its first validation.
    assert main(["tune", "copy", "--space", "optim.lr=loguniform:1e-4:1e-2", "--trials", "4",
                 "--seeds", "1", "--steps", "6", "--target", "1000", "--out", str(out),
                 *SMALL]) == 0
    captured = capsys.readouterr()
    with open(out / "trials.csv", newline="") as file:
        rows = list(csv.DictReader(file))
    assert list(rows[0]) == TRIAL_COLUMNS and len(rows) == 4
    assert sorted(int(row["trial"]) for row in rows) == [1, 2, 3, 4]
    for row in rows:
        assert 1e-4 <= float(row["optim.lr"]) <= 1e-2 and row["error"] == ""
        assert (row["seeds"], row["seeds_solved"], row["median_sequences_to_target"]) == \
            ("1", "1", "4")
        run_dir = Path(row["run_dirs"])
        assert run_dir.parent.parent == out and read_metrics(run_dir)
    # Trials are numbered in the order the sampler proposed them: trial 1 is the preset's
    # learning rate (not whichever trial happened to start first).
    assert float(rows[0]["optim.lr"]) == 0.002
    assert sorted(path.name[:9] for path in (out / "ray").iterdir() if path.is_dir()) == \
        ["trial001_", "trial002_", "trial003_", "trial004_"]  # Ray Tune's names agree
    assert len(re.findall(r"^trial \d \(optim\.lr=", captured.err, re.MULTILINE)) == 4

    best = json.loads((out / "best.json").read_text())
    assert list(best)[0] == "optim.lr" and "train.seed" not in best
    assert (best["task.name"], best["model.kind"], best["model.memory_slots"]) == \
        ("copy", "ntm-lstm", 12)
    assert best["optim.lr"] in [float(row["optim.lr"]) for row in rows]
    trained = tmp_path / "best"
    assert main(["train", "--config", str(out / "best.json"), "--steps", "2", "--out",
                 str(trained), "--no-progress"]) == 0
    config = json.loads((trained / "config.json").read_text())
    assert (config["optim"]["lr"], config["model"]["memory_slots"]) == (best["optim.lr"], 12)
    assert (out / "trials.png").stat().st_size > 1000
    assert f"Figure: {out / 'trials.png'}" in capsys.readouterr().out + captured.out


@pytest.mark.parametrize("space, message", [
    ("optim.lr", "must look like KEY=DIST"),
    ("optim.lr=normal:0:1", "must look like KEY=DIST"),
    ("optim.lr=loguniform:0:1", "loguniform takes two numbers above 0"),
    ("optim.lr=uniform:0.2:0.1", "LO below HI"),
    ("optim.lr=uniform:0.1", "uniform takes two numbers"),
    ("train.steps=int:1.5:3", "int takes two integers"),
    ("optim.name=choice:adam,,sgd", "choices must be distinct and not empty"),
    ("train.seed=int:1:9", "train.seed is not a key to search"),
    ("optim.nope=uniform:0:1", "--space optim.nope:"),
    ("optim.name=choice:adam,nope", "--space optim.name:"),
])
def test_a_bad_space_is_a_one_line_error_before_ray_starts(space, message, capsys,
                                                            monkeypatch):
    pytest.importorskip("ray")
    pytest.importorskip("optuna")
    monkeypatch.setattr(ray_sweep, "connect", None)  # it must not be reached
    line = _one_line_error(capsys, ["tune", "copy", "--space", space, "--trials", "2"])
    assert message in line


def test_a_key_searched_twice_and_a_used_directory_are_errors_before_ray_starts(
        tmp_path, capsys, monkeypatch):
    pytest.importorskip("ray")
    pytest.importorskip("optuna")
    monkeypatch.setattr(ray_sweep, "connect", None)  # it must not be reached
    line = _one_line_error(capsys, ["tune", "copy", "--trials", "2", "--space",
                                    "optim.lr=uniform:0:1", "--space", "optim.lr=uniform:0:2"])
    assert "optim.lr is searched twice" in line
    (tmp_path / "trial001").mkdir()
    line = _one_line_error(capsys, ["tune", "copy", "--trials", "2", "--space",
                                    "optim.lr=uniform:0.001:0.01", "--out", str(tmp_path)])
    assert line == f"ntm: error: {tmp_path} already holds a search; choose another --out"


def test_an_address_where_no_cluster_answers_is_a_one_line_error_in_seconds(tmp_path, capsys,
                                                                           monkeypatch):
    pytest.importorskip("ray")
    monkeypatch.delenv("RAY_AUTH_MODE", raising=False)
    for address, message in [("nonsense", "--address nonsense: expected HOST:PORT"),
                              (f"127.0.0.1:{_free_port()}", "no Ray cluster answers at")]:
        started = time.monotonic()
        line = _one_line_error(capsys, ["sweep", "copy", "--seeds", "1", "--address", address,
                                        "--out", str(tmp_path)])
        assert message in line and time.monotonic() - started < 10
    import ray

    def refused(**kwargs):
        raise ConnectionError("Failed to connect to Ray cluster at 127.0.0.1:1")

    monkeypatch.setattr(ray, "init", refused)
    monkeypatch.setattr(ray_sweep, "_check_answers", lambda address: None)
    line = _one_line_error(capsys, ["sweep", "copy", "--seeds", "1", "--address", "10.0.0.1:1",
                                    "--out", str(tmp_path)])
    assert line.startswith("ntm: error: cannot join the Ray cluster at 10.0.0.1:1: Failed to ")
    assert "set RAY_AUTH_MODE=token and its token" in line  # what a token cluster needs


def test_a_sweep_refuses_a_used_directory_before_ray_starts(tmp_path, capsys, monkeypatch):
    pytest.importorskip("ray")
    monkeypatch.setattr(ray_sweep, "connect", None)  # it must not be reached
    (tmp_path / "seed2").mkdir()
    (tmp_path / "seed2" / "metrics.jsonl").write_text("")
    line = _one_line_error(capsys, ["sweep", "copy", "--seeds", "1-2", "--out", str(tmp_path)])
    assert line == (f"ntm: error: {tmp_path / 'seed2'} already holds a run; choose another "
                    "output directory")


# -- without Ray --------------------------------------------------------------------------


def test_without_ray_a_sweep_trains_local_processes(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray fails, as when not installed
    monkeypatch.setitem(sys.modules, "optuna", None)
    assert not ray_sweep.available()
    out = tmp_path / "sweep"
    assert main(["sweep", "copy", "--seeds", "1", "--steps", "2", "--jobs", "1",
                 "--out", str(out), *SMALL]) == 0
    err = capsys.readouterr().err
    assert "Training 1 seeds of copy with ntm-lstm, at most 1 at a time" in err
    assert "Ray" not in err
    assert json.loads((out / "summary.json").read_text())["finished"] == 1

    line = _one_line_error(capsys, ["sweep", "copy", "--seeds", "1", "--address",
                                    "127.0.0.1:6379"])
    assert line == f"ntm: error: --address needs Ray; {ray_sweep.INSTALL}"


def test_without_ray_tune_says_what_to_install(capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)
    monkeypatch.setitem(sys.modules, "optuna", None)
    line = _one_line_error(capsys, ["tune", "copy", "--space", "optim.lr=uniform:0:1",
                                    "--trials", "2"])
    assert line.startswith("ntm: error: ntm tune needs Ray Tune and Optuna")
    assert line.endswith(ray_sweep.INSTALL) and ntm_tune.available() is not None
