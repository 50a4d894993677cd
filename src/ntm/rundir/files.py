"""Writing a run's files so that a crash or a failed write never leaves a broken one.

Every file is written to a temporary file beside it, flushed to disk and moved into place with
:func:`os.replace`, which is atomic: a reader sees the old file or the new one, never half of
one. If anything fails (no space left, a read-only directory, the writer's own error), the
temporary file is removed, the old file is untouched, and a failure of the file system is
raised as one :class:`~ntm.errors.WriteError` naming the file.

Each file gets the permissions of an ordinary new file (``0o666`` less the umask): the
temporary is created here with those, and a writer that replaces it by a file of its own
(``safetensors.torch.save_file`` writes through a ``0600`` temporary) has them put back.

:func:`lock_run_dir` makes a training process the one writer of its run directory.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import secrets
import socket
import stat
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

from safetensors import SafetensorError

from ..errors import NTMError, RunDirError, WriteError

try:
    import fcntl
except ImportError:  # Windows: no flock
    fcntl = None

__all__ = ["LOCK_FILE", "append_text", "atomic_write", "atomic_write_bytes", "atomic_write_text",
           "lock_run_dir", "write_error"]

LOCK_FILE = ".lock"  # in a run directory: who trains it (see lock_run_dir)
_LOCK_TRIES = 5  # takes of the lock whose file was removed under it, before giving up

# What a failing file system raises: OSError from Python's own I/O, SafetensorError from the
# safetensors writer (a Rust io::Error, e.g. "I/O error: No space left on device (os error 28)").
_FILE_SYSTEM_ERRORS = (OSError, SafetensorError)
_HINTS = {errno.ENOSPC: "free some space", errno.EDQUOT: "free some space",
          errno.EFBIG: "free some space or raise the file size limit",
          errno.EACCES: "check the directory's permissions",
          errno.EPERM: "check the directory's permissions"}


def atomic_write(path: str | os.PathLike[str], write: Callable[[str], None]) -> None:
    """Call ``write(temporary_path)``, flush it to disk, then move it to ``path`` atomically.

    ``write`` may write into the (empty) temporary file or replace it. If ``write``, the flush
    or the move fails, the temporary file is removed and ``path`` is untouched.

    Raises:
        WriteError: the file system refused (``OSError``, or a ``SafetensorError`` of the
            writer); its message names ``path`` and says the previous file is intact. Any
            other exception of ``write`` is raised as it came.
    """
    path = Path(path)
    # Beside the target: os.replace is atomic only within a file system.
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    existed, created = path.exists(), False
    try:
        mode, created = _create(temporary), True
        if not mode & stat.S_IWUSR:  # a umask such as 0o277: writable until it is written
            os.chmod(temporary, mode | stat.S_IWUSR)
        write(str(temporary))
        if stat.S_IMODE(os.stat(temporary).st_mode) != mode:  # or the writer made its own
            os.chmod(temporary, mode)
        _fsync(temporary, os.O_RDONLY)
        os.replace(temporary, path)
    except BaseException as error:
        if created:  # not a file of the same name that was there (O_EXCL refused it)
            with contextlib.suppress(OSError):
                os.unlink(temporary)
        if isinstance(error, _FILE_SYSTEM_ERRORS) and not isinstance(error, NTMError):
            raise write_error(path, error, existed=existed) from error
        raise
    # The rename itself is on disk only once the directory is; a file system that cannot sync
    # a directory still has the whole new file or the whole old one.
    with contextlib.suppress(OSError):
        _fsync(path.parent, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` with :func:`atomic_write`."""
    atomic_write(path, lambda temporary: Path(temporary).write_bytes(data))


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` with :func:`atomic_write`."""
    atomic_write_bytes(path, text.encode("utf-8"))


def append_text(file: BinaryIO, text: str) -> None:
    """Append ``text`` (UTF-8) to ``file``, opened unbuffered (``open(path, "ab",
    buffering=0)``): all of it, or a :class:`WriteError` naming the file. Unbuffered, so that
    nothing is left in a buffer to fail again when the file is closed.

    A failure can leave part of a line at the end (there is no atomic append); readers of
    ``metrics.jsonl`` (:func:`~ntm.rundir.read_metrics`) leave out such a last line.
    """
    data = memoryview(text.encode("utf-8"))
    try:
        while data:
            written = file.write(data)  # a raw write may take only a part
            if not written:  # never loop on a file that takes nothing
                raise OSError(errno.EIO, "the file took no data")
            data = data[written:]
    except OSError as error:
        raise write_error(Path(file.name), error, existed=True, appending=True) from error


def write_error(path: Path, error: BaseException, *, existed: bool,
                appending: bool = False) -> WriteError:
    """The one-line :class:`WriteError` for ``error`` while writing ``path`` (``existed``: it
    was there before; ``appending``: to its end, as ``metrics.jsonl`` is, not atomically)."""
    code = getattr(error, "errno", None) or _os_error_code(str(error))
    reason = getattr(error, "strerror", None) or _safetensors_reason(str(error))
    hint = f" ({_HINTS[code]})" if code in _HINTS else ""
    if appending:
        return WriteError(f"cannot append to {path}: {reason}{hint}; the records before are "
                          "intact (a part of one written at the end is dropped on reading "
                          "and on resuming)")
    if not existed:
        kept = f"no {path.name} was written"
    elif path.suffix == ".safetensors":
        kept = f"the previous {path.name}, the last good checkpoint, is intact"
    else:
        kept = f"the previous {path.name} is intact"
    return WriteError(f"cannot write {path}: {reason}{hint}; {kept} and no partial file was "
                      "left behind")


def _create(temporary: Path) -> int:
    """Create ``temporary`` empty, as an ordinary new file; return the mode it got."""
    # O_EXCL: never write into a file that is there already (a stale temporary, a link).
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        return stat.S_IMODE(os.fstat(descriptor).st_mode)  # 0o666 less the umask
    finally:
        os.close(descriptor)


def _fsync(path: Path, flags: int) -> None:
    descriptor = os.open(path, flags)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _os_error_code(message: str) -> int | None:
    """The errno in a Rust io::Error's text, ``"... (os error 28)"``."""
    found = re.search(r"\(os error (\d+)\)", message)
    return int(found.group(1)) if found else None


def _safetensors_reason(message: str) -> str:
    """``"Error while serializing: I/O error: X (os error N) at path "..."`` -> ``X (os error
    N)``: the temporary file's path would only confuse."""
    message = re.sub(r'\s+at path ".*"$', "", message.strip())
    for prefix in ("Error while serializing: ", "I/O error: "):
        message = message.removeprefix(prefix)
    return message or "an error of the file system"


@contextlib.contextmanager
def lock_run_dir(run_dir: str | os.PathLike[str]) -> Iterator[Path]:
    """Within: this process is the only one that trains the run in ``run_dir`` (created if
    missing). Yields the lock file's path.

    The lock is an OS lock (``flock``) on ``run_dir/.lock``, which also records who holds it
    (process id, machine, command, start time) for the message of whoever is refused. The
    operating system releases it when the process ends, however it ends (``kill -9`` too), so a
    lock left by a dead process never blocks; the file itself stays, harmless. Where there
    is no ``flock`` (Windows) nothing is locked. On a network file system the lock is as good
    as that system's ``flock`` (NFS emulates it with its own locks). A folder that this call
    created and that holds nothing but the lock file at the end (a new run refused before it
    wrote anything) is removed.

    Raises:
        RunDirError: another process holds the lock; the message names it.
        WriteError: the directory or its lock file cannot be created.
    """
    path = Path(run_dir) / LOCK_FILE
    created = not path.parent.exists()
    file = _open_locked(path, run_dir)
    with file:
        try:
            _say_who(file)
            yield path
        finally:
            if created:  # a new run that stopped before writing anything leaves no folder
                with contextlib.suppress(OSError):
                    if os.listdir(path.parent) == [LOCK_FILE]:
                        path.unlink()
                        path.parent.rmdir()
            if fcntl is not None:
                fcntl.flock(file, fcntl.LOCK_UN)


def _open_locked(path: Path, run_dir) -> Any:
    """``path`` opened and flocked; the lock is taken again if the file it holds was removed
    meanwhile (by a holder that created the folder and removes it, see :func:`lock_run_dir`):
    a lock on a removed file would lock nothing."""
    for _ in range(_LOCK_TRIES):
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            file = open(path, "a+", encoding="utf-8")  # noqa: SIM115 (returned: the lock is on it)
        except OSError as error:
            raise write_error(path, error, existed=path.exists()) from error
        if fcntl is None:
            return file
        try:
            fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            file.seek(0)
            holder = " ".join(file.read().split()) or "a process that did not say who it is"
            file.close()
            raise RunDirError(f"{run_dir} is being trained by another process ({holder}); "
                              "wait for it to end or stop it (it saves a checkpoint on "
                              "Ctrl-C or SIGTERM), then --resume") from None
        except OSError as error:  # no locks on this file system (ENOLCK), say
            file.close()
            raise RunDirError(f"cannot lock {path}: {error.strerror or error}") from None
        with contextlib.suppress(OSError):
            if os.fstat(file.fileno()).st_ino == os.stat(path).st_ino:
                return file
        file.close()  # removed or replaced while we waited for it: lock the file there now
    raise RunDirError(f"cannot lock {path}: it was removed {_LOCK_TRIES} times as it was taken")


def _say_who(file) -> None:
    """Write who holds the lock into its file (best effort: the lock holds without it)."""
    command = " ".join(sys.argv[1:8])  # e.g. "train --resume runs/copy"
    started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime())
    with contextlib.suppress(OSError):
        file.seek(0)
        file.truncate()
        file.write(f"pid {os.getpid()} on {socket.gethostname()}, since {started}: {command}\n")
        file.flush()
