"""Atomic file output: a failed step leaves nothing half-written behind."""

from __future__ import annotations

import contextlib
import errno
import glob
import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from icsa.errors import InputError


def _current_umask() -> int:
    """The process umask (os.umask can only be read by setting it, so set it back at once)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


# Every temporary an icsa step writes is named ".{target name}.{pid}-{8 random}.icsa-tmp{suffix}":
# .gitignore and .dvcignore ignore the pattern, and the next write of the same target sweeps
# what a killed writer left (a kill -9 runs no cleanup). The writer's pid in the name keeps a
# live writer's temporary from being swept by another process writing the same target.
TEMP_MARK = ".icsa-tmp"
_WRITER_PID = re.compile(r"^(\d+)-")


def process_alive(pid: int) -> bool:
    """Whether a process ``pid`` exists on this host (signal 0 checks without sending)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        return True
    return True


def stale_temporaries(target: str | os.PathLike) -> list[Path]:
    """Temporaries of ``target`` left behind by writers that were killed: those whose writer
    (the pid in the name) no longer runs, and those of older icsa versions (no pid)."""
    target = Path(target)
    prefix = f".{target.name}."
    stale = []
    for path in sorted(target.parent.glob(f".{glob.escape(target.name)}.*{TEMP_MARK}*")):
        writer = _WRITER_PID.match(path.name[len(prefix) :])
        if writer is None or not process_alive(int(writer.group(1))):
            stale.append(path)
    return stale


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it over ``path`` when the block succeeds.

    The temporary keeps ``path``'s suffix (or ``suffix``) so that writers which dispatch on the
    extension (numpy, matplotlib) behave the same. On an exception the temporary is removed and
    ``path`` is left as it was; temporaries of ``path`` that a killed writer left are removed
    first (those of live writers are left alone).
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    for stale in stale_temporaries(target):
        stale.unlink(missing_ok=True)
    fd, tmp_name = tempfile.mkstemp(
        prefix=f".{target.name}.{os.getpid()}-",
        suffix=TEMP_MARK + (suffix if suffix is not None else target.suffix),
        dir=target.parent,
    )
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        # mkstemp creates the file 0600; the output must get what a plain open() would give.
        os.chmod(tmp, 0o666 & ~_current_umask())
        yield tmp
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def require_free_space(path: str | os.PathLike, nbytes: int) -> None:
    """Fail with a message before a memory-mapped write of ``nbytes`` into ``path``: a mapped
    write into a full disk ends in SIGBUS (no message, no cleanup)."""
    folder = Path(path).parent
    free = shutil.disk_usage(folder).free
    if nbytes > free:
        raise InputError(
            f"{path}: needs {nbytes:,} bytes, {folder} has {free:,} free; free space or "
            "write the results elsewhere"
        )


def reserve_space(path: str | os.PathLike, nbytes: int) -> None:
    """Allocate the blocks of the existing file ``path`` up to ``nbytes`` before it is written
    through a memory map.

    Callers run :func:`require_free_space` before they create the file (its header write
    must not fail obscurely either); that check alone is a race (another process may fill the
    disk in between, and a sparse file from ``open_memmap`` takes its blocks only as pages are
    written). Allocating them makes the disk refuse up front, with ENOSPC, which becomes the
    same message."""
    if not hasattr(os, "posix_fallocate"):  # macOS: the caller's check is what there is
        return
    fd = os.open(path, os.O_RDWR)
    try:
        os.posix_fallocate(fd, 0, nbytes)
    except OSError as err:
        if err.errno not in (errno.ENOSPC, errno.EDQUOT):
            if err.errno in (errno.EOPNOTSUPP, errno.EINVAL):  # a file system without it
                return
            raise
        free = shutil.disk_usage(Path(path).parent).free
        raise InputError(
            f"{path}: needs {nbytes:,} bytes, {Path(path).parent} has {free:,} free (the disk "
            "refused to allocate them); free space or write the results elsewhere"
        ) from err
    finally:
        os.close(fd)


def write_json(path: str | os.PathLike, data: Any) -> None:
    """Write ``data`` as indented JSON, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")


def read_json(path: str | os.PathLike) -> Any:
    return json.loads(Path(path).read_text())


def parse_json_object(text: str, flag: str) -> dict[str, Any]:
    """Parse a CLI value that is a JSON object, or ``@path`` naming a JSON file.

    An empty string is an empty object. Errors name ``flag`` (or the file) and what was expected.
    """
    source = flag
    if text.startswith("@"):
        path = Path(text[1:])
        if not path.is_file():
            raise InputError(f"{flag} {text}: file {path} not found, expected a JSON file")
        source, text = str(path), path.read_text()
    try:
        value = json.loads(text) if text.strip() else {}
    except json.JSONDecodeError as err:
        raise InputError(f"{source}: not valid JSON ({err})") from err
    if not isinstance(value, dict):
        raise InputError(f"{source}: got a JSON {type(value).__name__}, expected an object")
    return value


def file_digest(path: str | os.PathLike) -> str:
    """SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
