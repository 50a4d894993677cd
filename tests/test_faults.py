"""Faults injected into whole runs: damaged files, writes that fail, permissions, two
trainers of one run, SIGTERM, kill -9 at random points.

Each test copies one tiny trained run (trained once, never changed) and damages its copy.
A full disk cannot be made here without mounting a file system, so a write fails midway the
way a full one does at the system call: a file-size limit (``RLIMIT_FSIZE``) makes the kernel
refuse the rest of the real write (``EFBIG``); ``ENOSPC`` itself is raised where the library
would meet it (``fsync``, and the safetensors writer's own error).
"""

import contextlib
import errno
import json
import os
import resource
import shutil
import signal
import stat
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from helpers import untimed_metrics
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

import ntm
from ntm.cli import main
from ntm.errors import RunDirError, WriteError
from ntm.rundir import checkpoint, directory, files, read_metrics
from ntm.rundir.checkpoint import BEST_FILE, CHECKSUM_KEY, METRICS_FILE, MODEL_FILE, STATE_FILE

SIZES = ["--set", "model.memory_slots=12", "--set", "model.memory_width=6",
         "--set", "model.controller_size=12", "--set", "task.max_length=3"]
SMALL = ["--set", "train.log_every=1", "--set", "train.val_every=2",
         "--set", "train.val_batches=1", "--set", "train.val_batch_size=2", "--batch-size", "2",
         "--no-progress", *SIZES]
RESUME = ["--steps", "4", "--no-progress"]
SHAPE = ["--batches", "1", "--batch-size", "2"]
RUN_FILES = sorted([BEST_FILE, "config.json", METRICS_FILE, MODEL_FILE, STATE_FILE,
                    files.LOCK_FILE])
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A 2-step run of copy with validation at step 2 (so a best.safetensors). Read only:
    every test works on a copy (:func:`_copy`)."""
    out = tmp_path_factory.mktemp("trained") / "run"
    assert main(["train", "copy", "--steps", "2", "--out", str(out), *SMALL]) == 0
    assert sorted(p.name for p in out.iterdir()) == RUN_FILES
    return out


def _copy(run, tmp_path, name="run"):
    return Path(shutil.copytree(run, tmp_path / name))


def _snapshot(run):
    """The run's files by name, but the lock file: each trainer writes who holds it."""
    return {path.name: path.read_bytes() for path in sorted(run.iterdir())
            if path.name != files.LOCK_FILE}


def _error(capsys, argv):
    """Run ``argv``: exit status 2 and an ``ntm: error:`` line last, no traceback."""
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err and err[-1].startswith("ntm: error: ") and "Traceback" not in "\n".join(err)
    return err[-1]


def _flip(path, key):
    """Flip one bit in the middle of tensor ``key``'s data in a safetensors file."""
    data = bytearray(path.read_bytes())
    size = struct.unpack("<Q", data[:8])[0]
    begin, end = json.loads(data[8:8 + size])[key]["data_offsets"]
    data[8 + size + (begin + end) // 2] ^= 0x10
    path.write_bytes(bytes(data))


# -- flipped bytes --------------------------------------------------------------------------

ENTRY_POINTS = {
    "train --resume": lambda run, tmp: ["train", "--resume", str(run), *RESUME],
    "eval": lambda run, tmp: ["eval", str(run), *SHAPE],
    "eval --best": lambda run, tmp: ["eval", str(run), "--best", *SHAPE],
    "plot": lambda run, tmp: ["plot", str(run), "--out", str(tmp / "figures"), *SHAPE],
    "plot --best": lambda run, tmp: ["plot", str(run), "--best", "--out", str(tmp / "f"),
                                     *SHAPE],
    "train --init": lambda run, tmp: ["train", "copy", "--init", str(run), "--steps", "1",
                                      "--out", str(tmp / "tuned"), "--no-progress"],
}


@pytest.mark.parametrize("name, key, entry", [
    (STATE_FILE, "model.cell.output.weight", "train --resume"),
    (STATE_FILE, "optimizer.0.square_avg", "train --resume"),  # gave a NaN loss, unchecked
    (STATE_FILE, "rng.data", "train --resume"),  # would silently draw other data
    (MODEL_FILE, "cell.output.weight", "eval"),  # printed NaN costs with exit 0, unchecked
    (MODEL_FILE, "cell.output.weight", "plot"),
    (MODEL_FILE, "cell.output.weight", "train --init"),
    (BEST_FILE, "cell.output.weight", "eval --best"),
    (BEST_FILE, "cell.output.weight", "plot --best"),
])
def test_a_flipped_bit_is_one_line_naming_the_file_and_tensor(trained, tmp_path, capsys, name,
                                                              key, entry):
    run = _copy(trained, tmp_path)
    _flip(run / name, key)
    before = _snapshot(run)
    line = _error(capsys, ENTRY_POINTS[entry](run, tmp_path))
    assert f"{run / name} is corrupt: tensor {key} does not match the checksum" in line
    assert _snapshot(run) == before  # nothing was written over the evidence
    assert not (tmp_path / "tuned").exists()


def test_flipped_counters_in_the_state_file_are_caught_on_resume(trained, tmp_path, capsys):
    run = _copy(trained, tmp_path)
    data = (run / STATE_FILE).read_bytes()
    damaged = data.replace(b'\\"step\\": 2,', b'\\"step\\": 3,')  # one byte, in the metadata
    assert damaged != data and len(damaged) == len(data)
    (run / STATE_FILE).write_bytes(damaged)
    line = _error(capsys, ["train", "--resume", str(run), *RESUME])
    assert f"{run / STATE_FILE} is corrupt: its metadata does not match" in line


def test_pretrained_load_checks_a_copied_run(trained, tmp_path, monkeypatch, capsys):
    shipped = tmp_path / "shipped"
    run = _copy(trained, shipped, "copy-ntm-lstm")
    monkeypatch.setattr(directory, "SHIPPED_DIR", shipped)
    assert ntm.pretrained.list() == ["copy-ntm-lstm"]
    ntm.pretrained.load("copy")  # whole, it loads
    _flip(run / MODEL_FILE, "cell.output.weight")
    for name in ("copy", "copy-ntm-lstm"):
        with pytest.raises(RunDirError, match="model.safetensors is corrupt: tensor cell.output"):
            ntm.pretrained.load(name)
    line = _error(capsys, ["eval", "pretrained:copy", *SHAPE])
    assert f"{run / MODEL_FILE} is corrupt" in line


# The models shipped before checksums existed (tests/test_pretrained.py checks that the later
# ones, the DNC's and SAM's, keep the checksums their runs wrote).
BEFORE_CHECKSUMS = ("associative_recall-ntm-ff", "associative_recall-ntm-lstm", "copy-ntm-ff",
                    "copy-ntm-lstm", "ngrams-ntm-lstm", "priority_sort-ntm-lstm",
                    "repeat_copy-ntm-ff", "repeat_copy-ntm-lstm")


def test_runs_written_before_checksums_still_load():
    shipped = ROOT / "src" / "ntm" / "pretrained"
    weights = sorted([*(ROOT / "results").rglob("*.safetensors"),
                      *(path for name in BEFORE_CHECKSUMS
                        for path in (shipped / name).rglob("*.safetensors"))])
    assert len(weights) >= 8  # the shipped models at least
    for path in weights:  # written before checksums: nothing to verify...
        with safe_open(path, framework="pt") as file:
            assert CHECKSUM_KEY not in (file.metadata() or {}), path
    for run in sorted({path.parent for path in weights if (path.parent / "config.json").is_file()}):
        for best in (False, True):  # ...and they load as they did
            if (run / (BEST_FILE if best else MODEL_FILE)).is_file():
                directory.load_run(run, best=best, device="cpu")
        if (run / STATE_FILE).is_file():
            assert checkpoint.read_counters(run / STATE_FILE)["step"] > 0


# -- writes that fail -----------------------------------------------------------------------


@contextlib.contextmanager
def _file_size_limit(limit):
    """Files of this process may grow to ``limit`` bytes: the kernel refuses the rest of a
    write (EFBIG, as it refuses it with ENOSPC on a full disk)."""
    previous = resource.getrlimit(resource.RLIMIT_FSIZE)
    handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of a kill
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, previous[1]))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, previous)
        signal.signal(signal.SIGXFSZ, handler)


def _limit_file_size(real, name, limit):
    """``atomic_write_bytes`` under a file-size limit of ``limit`` bytes for file ``name``: the
    kernel writes the first ``limit`` bytes of the temporary file and refuses the rest."""

    def write(path, data):
        if Path(path).name != name:
            return real(path, data)
        assert len(data) > 2 * limit  # the write fails midway, not at its start
        with _file_size_limit(limit):
            return real(path, data)

    return write


def test_a_write_failing_midway_keeps_the_last_checkpoint(trained, tmp_path, monkeypatch,
                                                          capsys):
    run = _copy(trained, tmp_path)
    before = _snapshot(run)
    monkeypatch.setattr(checkpoint, "atomic_write_bytes",
                        _limit_file_size(files.atomic_write_bytes, STATE_FILE, 4096))
    line = _error(capsys, ["train", "--resume", str(run), *RESUME])
    assert line == (f"ntm: error: cannot write {run / STATE_FILE}: File too large (free some "
                    "space or raise the file size limit); the previous "
                    "training_state.safetensors, the last good checkpoint, is intact and no "
                    "partial file was left behind")
    assert sorted(p.name for p in run.iterdir()) == RUN_FILES  # no temporary file
    for name in (STATE_FILE, MODEL_FILE):  # the state is written first, the weights after
        assert (run / name).read_bytes() == before[name]
    monkeypatch.undo()
    # Nothing was lost: resumed again, the run logs each step once, as an unbroken run would.
    assert main(["train", "--resume", str(run), *RESUME]) == 0
    records = [json.loads(line) for line in (run / METRICS_FILE).read_text().splitlines()]
    assert [record["step"] for record in records] == [1, 2, 3, 4]
    assert checkpoint.read_counters(run / STATE_FILE)["step"] == 4


def test_no_space_left_at_the_first_checkpoint(tmp_path, monkeypatch, capsys):
    real = files._fsync

    def fsync(path, flags):  # delayed allocation: a full disk can first show at fsync
        if Path(path).name.startswith(f".{STATE_FILE}."):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(path, flags)

    monkeypatch.setattr(files, "_fsync", fsync)
    run = tmp_path / "run"
    line = _error(capsys, ["train", "copy", "--steps", "2", "--out", str(run), *SMALL])
    assert line == (f"ntm: error: cannot write {run / STATE_FILE}: No space left on device "
                    "(free some space); no training_state.safetensors was written and no "
                    "partial file was left behind")
    assert sorted(p.name for p in run.iterdir()) == sorted([BEST_FILE, "config.json",
                                                            METRICS_FILE, files.LOCK_FILE])


def test_the_safetensors_writers_disk_full_error_is_a_write_error(tmp_path):
    path = tmp_path / "w.safetensors"
    save_file({"x": torch.zeros(2)}, path)
    before = path.read_bytes()

    def full(temporary):  # what safetensors.torch.save_file raises on a full disk
        Path(temporary).write_bytes(b"half a fi")
        raise SafetensorError("Error while serializing: I/O error: No space left on device "
                              "(os error 28)")

    with pytest.raises(WriteError) as raised:
        files.atomic_write(path, full)
    assert str(raised.value) == (f"cannot write {path}: No space left on device (os error 28) "
                                 "(free some space); the previous w.safetensors, the last good "
                                 "checkpoint, is intact and no partial file was left behind")
    assert isinstance(raised.value.__cause__, SafetensorError)
    assert path.read_bytes() == before and os.listdir(tmp_path) == ["w.safetensors"]


@contextlib.contextmanager
def _read_only(folder):
    """``folder`` read-only: mode 0500, or, for root (whom modes do not stop), the immutable
    attribute (``chattr +i``), which binds root too; skipped where neither can be set."""
    if os.geteuid() != 0:
        os.chmod(folder, 0o500)
        try:
            yield
        finally:
            os.chmod(folder, 0o755)
        return
    chattr = shutil.which("chattr")
    if chattr is None or subprocess.run([chattr, "+i", str(folder)],
                                        capture_output=True).returncode != 0:
        pytest.skip("running as root, and the immutable attribute cannot be set here")
    try:
        yield
    finally:
        subprocess.run([chattr, "-i", str(folder)], check=True)


def test_a_read_only_run_directory(trained, tmp_path, capsys):
    run = _copy(trained, tmp_path)
    before = _snapshot(run)
    with _read_only(run):
        line = _error(capsys, ["train", "--resume", str(run), *RESUME])
        # Reading needs no writing.
        assert main(["eval", str(run), *SHAPE]) == 0
    assert line.startswith(f"ntm: error: cannot write {run / METRICS_FILE}: ")
    assert line.endswith("(check the directory's permissions); the previous metrics.jsonl is "
                         "intact and no partial file was left behind")
    assert _snapshot(run) == before


def test_a_record_torn_by_a_crash_is_left_out_and_a_broken_one_named(trained, tmp_path,
                                                                     capsys):
    run = _copy(trained, tmp_path)
    with open(run / METRICS_FILE, "a", encoding="utf-8") as metrics:
        metrics.write('{"step": 3, "sequ')  # a crash or a full disk mid-append
    assert [record["step"] for record in read_metrics(run)] == [1, 2]
    assert main(["plot", "--curves-only", str(run), "--out", str(tmp_path / "f")]) == 0
    (run / METRICS_FILE).write_text('{"step": 1}\n{"step": 2, "se\n{"step": 3}\n')
    with pytest.raises(RunDirError, match=f"{run / METRICS_FILE}, line 2, is not valid JSON"):
        read_metrics(run)


def test_an_append_failing_midway_names_the_file_and_leaves_a_readable_log(trained, tmp_path):
    run = _copy(trained, tmp_path)
    path = run / METRICS_FILE
    size = path.stat().st_size
    with open(path, "ab", buffering=0) as metrics:
        with _file_size_limit(size + 10), pytest.raises(WriteError) as raised:
            files.append_text(metrics, json.dumps({"step": 3, "sequences": 6}) + "\n")
    assert str(raised.value) == (f"cannot append to {path}: File too large (free some space "
                                 "or raise the file size limit); the records before are intact "
                                 "(a part of one written at the end is dropped on reading and "
                                 "on resuming)")
    assert path.stat().st_size == size + 10  # the kernel took the first 10 bytes
    assert [record["step"] for record in read_metrics(run)] == [1, 2]


def test_resuming_drops_a_record_torn_by_a_crash_with_one_warning(trained, tmp_path, capsys):
    run = _copy(trained, tmp_path)
    with open(run / METRICS_FILE, "a", encoding="utf-8") as metrics:
        metrics.write('{"step": 3, "sequ')
    assert main(["train", "--resume", str(run), *RESUME]) == 0
    warnings = [line for line in capsys.readouterr().err.splitlines() if "warning" in line]
    assert warnings == [f"ntm: warning: dropped the last line of {run / METRICS_FILE}, cut short "
                        "by the crash or failed write that ended the run (17 bytes, not a whole "
                        "record); the run resumes from its checkpoint"]
    assert [record["step"] for record in read_metrics(run)] == [1, 2, 3, 4]


@pytest.mark.parametrize("text, problem", [
    ('{"step": 1}\n{"step": 2, "se\n{"step": 3}\n', "line 2, is not valid JSON"),
    ('{"step": 1}\n[2]\n', "line 2, is not a metrics record"),
    ('{"step": 1}\n{"sequences": 4}\n', "line 2, is not a metrics record"),
    ('{"step": "1"}\n', "line 1, is not a metrics record"),
    (b"\xff\xfe{", "cannot be read"),
])
def test_malformed_metrics_are_one_line_on_resume(trained, tmp_path, capsys, text, problem):
    run = _copy(trained, tmp_path)
    path = run / METRICS_FILE
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    before = _snapshot(run)
    line = _error(capsys, ["train", "--resume", str(run), *RESUME])
    assert line.startswith(f"ntm: error: {path}") and problem in line
    assert _snapshot(run) == before


# -- permissions ----------------------------------------------------------------------------


@contextlib.contextmanager
def _umask(mask):
    previous = os.umask(mask)
    try:
        yield
    finally:
        os.umask(previous)


@pytest.mark.parametrize("mask", [0o022, 0o077, 0o002])
def test_every_file_of_a_run_gets_an_ordinary_files_mode(tmp_path, mask):
    with _umask(mask):
        assert main(["train", "copy", "--steps", "2", "--out", str(tmp_path / "run"),
                     *SMALL]) == 0
        assert main(["train", "--resume", str(tmp_path / "run"), *RESUME]) == 0
        files.atomic_write(tmp_path / "own.safetensors",  # a writer whose file is 0600
                           lambda temporary: save_file({}, temporary))
    modes = {path.name: stat.S_IMODE(path.stat().st_mode)
             for path in [*(tmp_path / "run").iterdir(), tmp_path / "own.safetensors"]}
    assert modes == dict.fromkeys([*RUN_FILES, "own.safetensors"], 0o666 & ~mask)


def test_a_umask_without_owner_write_still_writes_and_replaces(tmp_path):
    path = tmp_path / "w.safetensors"
    with _umask(0o277):  # files 0400, as an ordinary open() would create them
        checkpoint.save_weights(torch.nn.Linear(2, 2), path)
        checkpoint.save_weights(torch.nn.Linear(2, 2), path)  # replaced, not written into
        files.atomic_write_text(tmp_path / "notes.txt", "text")
    assert {p.name: stat.S_IMODE(p.stat().st_mode) for p in tmp_path.iterdir()} == {
        "w.safetensors": 0o400, "notes.txt": 0o400}


# -- two trainers, SIGTERM, kill -9 -----------------------------------------------------------


def _start_training(argv, tmp_path, name="trainer"):
    """``ntm train ARGV`` in a child process of its own, output to ``tmp_path/NAME.log``."""
    log = open(tmp_path / f"{name}.log", "wb")  # noqa: SIM115 (closed with the test's tmp_path)
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "ntm", "train", *argv], stdout=log,
                            stderr=subprocess.STDOUT, env=environment, cwd=ROOT)


def _wait_for(condition, process, seconds=60.0):
    deadline = time.monotonic() + seconds
    while not condition():
        assert process.poll() is None, f"the trainer ended early ({process.returncode})"
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def _steps(run):
    return [record["step"] for record in read_metrics(run)]


def _holds_lock(run, process):
    lock = run / files.LOCK_FILE
    return lock.is_file() and f"pid {process.pid} " in lock.read_text()


def test_a_second_trainer_is_refused_and_sigterm_saves_a_checkpoint(trained, tmp_path, capsys):
    run = _copy(trained, tmp_path)
    trainer = _start_training(["--resume", str(run), "--steps", "100000", "--no-progress"],
                              tmp_path)
    try:
        _wait_for(lambda: _holds_lock(run, trainer) and len(_steps(run)) > 3, trainer)
        before = {name: (run / name).read_bytes() for name in ("config.json", STATE_FILE)}
        line = _error(capsys, ["train", "--resume", str(run), "--steps", "100001",
                               "--set", "optim.lr=0.5", "--no-progress"])
        assert line.startswith(f"ntm: error: {run} is being trained by another process (pid "
                               f"{trainer.pid} on ")
        assert line.endswith("train --resume " + str(run) + " --steps 100000 --no-progress); "
                             "wait for it to end or stop it (it saves a checkpoint on Ctrl-C or "
                             "SIGTERM), then --resume")
        assert (run / "config.json").read_bytes() == before["config.json"]  # not taken over
        trainer.send_signal(signal.SIGTERM)  # what schedulers and docker stop send
        assert trainer.wait(timeout=60) == 130
    finally:
        trainer.kill()
    log = (tmp_path / "trainer.log").read_text()
    assert f"Interrupted; checkpoint saved. Continue with: ntm train --resume {run}" in log
    step = checkpoint.read_counters(run / STATE_FILE)["step"]
    assert step > 2 and _steps(run)[-1] == step  # the checkpoint is of the last step logged
    assert json.loads((run / "config.json").read_text())["optim"]["lr"] != 0.5


def test_a_lock_left_by_a_killed_process_never_blocks(trained, tmp_path):
    run = _copy(trained, tmp_path)
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from ntm.rundir.files import lock_run_dir\n"
         "with lock_run_dir(sys.argv[1]):\n print('held', flush=True); time.sleep(600)",
         str(run)], stdout=subprocess.PIPE, cwd=ROOT)
    try:
        assert holder.stdout.readline() == b"held\n"
        with pytest.raises(RunDirError, match=f"pid {holder.pid} "):
            with files.lock_run_dir(run):
                pass
    finally:
        holder.kill()  # kill -9: no finally, no unlock; the OS releases the lock
        holder.wait()
    assert main(["train", "--resume", str(run), *RESUME]) == 0


def test_kill_9_at_random_points_then_resume_equals_an_unbroken_run(tmp_path):
    argv = ["copy", "--steps", "24", *SMALL, "--set", "train.checkpoint_every=3"]
    unbroken = tmp_path / "unbroken"
    assert main(["train", *argv, "--out", str(unbroken)]) == 0
    run, delays = tmp_path / "run", [1.0, 0.2, 0.7, 0.05, 0.4]
    for attempt, delay in enumerate(delays):  # each kill lands wherever it lands
        resumed = (run / STATE_FILE).is_file()
        command = ["--resume", str(run), "--no-progress"] if resumed else [
            *argv, "--out", str(run)]
        if not resumed and run.exists():  # killed before its first checkpoint: start again
            shutil.rmtree(run)
        trainer = _start_training(command, tmp_path, f"attempt{attempt}")
        _wait_for(lambda: (run / files.LOCK_FILE).is_file(), trainer)
        time.sleep(delay)
        trainer.kill()
        trainer.wait()
    if (run / STATE_FILE).is_file():
        assert main(["train", "--resume", str(run), "--no-progress"]) == 0
    else:
        shutil.rmtree(run, ignore_errors=True)
        assert main(["train", *argv, "--out", str(run)]) == 0

    assert untimed_metrics(run) == untimed_metrics(unbroken)
    for name in (MODEL_FILE, BEST_FILE):
        with safe_open(run / name, "pt") as a, safe_open(unbroken / name, "pt") as b:
            for key in a.keys():  # noqa: SIM118
                assert torch.equal(a.get_tensor(key), b.get_tensor(key)), (name, key)


@pytest.fixture
def small_tmpfs(tmp_path):
    """A real file system of 2 MiB (tmpfs), where a disk can really fill up; skipped where
    mounting is not allowed (it needs root, or CAP_SYS_ADMIN)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)],
                          capture_output=True)
    if made.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {made.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=True)


def _fill(folder):
    """Fill the file system of ``folder`` to the last byte; returns the filler file."""
    filler = folder / "filler"
    with open(filler, "wb", buffering=0) as file:
        for size in (1 << 16, 1 << 10, 1):  # big pieces, then the last bytes
            with contextlib.suppress(OSError):
                while True:
                    file.write(b"\0" * size)
    return filler


def test_a_full_disk_is_one_line_and_the_run_resumes_once_there_is_room(small_tmpfs, capsys):
    run = small_tmpfs / "run"
    assert main(["train", "copy", "--steps", "2", "--out", str(run), *SMALL]) == 0
    before = _snapshot(run)
    filler = _fill(small_tmpfs)
    line = _error(capsys, ["train", "--resume", str(run), *RESUME])
    assert line.startswith(f"ntm: error: cannot write {run}/"), line
    assert "No space left on device (free some space)" in line
    assert "no partial file was left behind" in line or "the records before are intact" in line
    assert sorted(p.name for p in run.iterdir()) == RUN_FILES  # no temporary file
    kept = {name: data for name, data in _snapshot(run).items() if name != METRICS_FILE}
    assert kept == {name: data for name, data in before.items() if name != METRICS_FILE}
    filler.unlink()  # room again: the run goes on as if nothing happened
    assert main(["train", "--resume", str(run), *RESUME]) == 0
    assert _steps(run) == [1, 2, 3, 4]
