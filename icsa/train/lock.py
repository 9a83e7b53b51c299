"""One training process per run folder: an advisory lock on ``RUN/state/lock``.

Two ``icsa train`` on one folder would resume, restart and overwrite each other's state (one
run's reported result silently replaced by the other's). :func:`run_folder_lock` takes an
exclusive ``fcntl.flock`` on the folder's lock file for the whole run, as ``icsa gpu run`` does
for devices; the kernel drops it when its holder dies, so a killed run never leaves the folder
locked. The file records who holds it (pid, host, start time, command) for the message a second
process gets. It lives under ``state/`` (the run's undeclared scratch) and is never deleted:
a lock on a deleted file would not exclude a process that opens a new one.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from icsa.errors import InputError

LOCK_FILE = "lock"


def _holder(fd: int) -> str:
    """What the lock file says about its holder, as one phrase."""
    try:
        info = json.loads(os.pread(fd, 4096, 0).decode() or "{}")
    except (OSError, ValueError):
        info = {}
    if not info:
        return "another process"
    return (
        f"pid {info.get('pid')} on {info.get('host')} since {info.get('started')} "
        f"({info.get('command', '?')})"
    )


@contextlib.contextmanager
def run_folder_lock(run_dir: str | os.PathLike, wait: bool = False) -> Iterator[Path]:
    """Hold ``run_dir``'s lock for the block; another holder is an InputError naming it, or,
    with ``wait``, is waited for."""
    path = Path(run_dir) / "state" / LOCK_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if not wait:
                raise InputError(
                    f"{run_dir}: being trained by {_holder(fd)}; wait for it to finish, stop "
                    "it, or pass --wait to start when it ends"
                ) from None
            fcntl.flock(fd, fcntl.LOCK_EX)
        info = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "command": " ".join(
                os.path.basename(a) if i == 0 else a for i, a in enumerate(sys.argv)
            )[:300],  # fmt: skip
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(info).encode(), 0)
        yield path
    finally:
        os.close(fd)  # releases the lock
