"""Checkpoints with a digest record beside them, so that a damaged file is found before it is used.

``torch.load`` reads a truncated file as an error, but a bit flip inside a tensor's bytes loads
without a word (its zip reader does not check the records' CRCs), and a resumed run would carry
the damaged weight on. :func:`save_verified` therefore writes ``NAME.digest.json`` beside the
checkpoint: the SHA-256 of its bytes and its epoch; :func:`load_verified` recomputes the digest
before it loads (about 1.8 GB/s on one core, a second for the paper's largest checkpoint).

The record is written before the checkpoint is renamed into place and lists the new digest and
the one it replaces: a writer killed between the two renames leaves a pair that still verifies.
The digest then settles to the new file alone. A checkpoint without a record (written by an
older icsa) is loaded unverified, and the log says so.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import torch

from icsa.errors import InputError
from icsa.io import atomic_path, file_digest, write_json
from icsa.train.checkpoint import load_checkpoint, write_checkpoint

log = logging.getLogger(__name__)


class CorruptStateError(InputError):
    """A file of a run's resumable state failed verification (named in the message)."""


def digest_record(path: str | os.PathLike) -> Path:
    """The digest record beside checkpoint ``path``."""
    path = Path(path)
    return path.with_name(path.name + ".digest.json")


def read_digest_record(path: str | os.PathLike) -> dict[str, Any] | None:
    """The record of ``path`` ({"sha256": [digests], "epoch": n}); None when there is none;
    CorruptStateError when it cannot be read."""
    record_path = digest_record(path)
    if not record_path.is_file():
        return None
    try:
        record = json.loads(record_path.read_text())
        digests = [str(d) for d in record["sha256"]]
        return {"sha256": digests, "epoch": int(record["epoch"])}
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise CorruptStateError(f"{record_path}: unreadable digest record ({err})") from err


def save_verified(path: str | os.PathLike, checkpoint: dict[str, Any]) -> None:
    """Write ``checkpoint`` to ``path`` (atomically) and its digest record."""
    path = Path(path)
    try:
        previous = read_digest_record(path)
    except CorruptStateError:
        previous = None
    epoch = int(checkpoint.get("epoch", -1))
    with atomic_path(path) as tmp:
        write_checkpoint(tmp, checkpoint, path)
        digest = file_digest(tmp)
        # Both digests until the rename is done: a kill between the renames stays verifiable.
        kept = previous["sha256"][:1] if previous else []
        write_json(digest_record(path), {"sha256": [digest, *kept], "epoch": epoch})
    write_json(digest_record(path), {"sha256": [digest], "epoch": epoch})


def verify(path: str | os.PathLike) -> bool:
    """True when ``path`` matches its digest record; False when it has none (older icsa);
    CorruptStateError when the file is missing, unreadable or differs from the record."""
    path = Path(path)
    record = read_digest_record(path)
    if record is None:
        return False
    if not path.is_file():
        raise CorruptStateError(f"{path}: missing, but {digest_record(path).name} records it")
    actual = file_digest(path)
    if actual not in record["sha256"]:
        raise CorruptStateError(
            f"{path}: its bytes changed since they were written (sha256 {actual[:12]}…, "
            f"recorded {record['sha256'][0][:12]}… in {digest_record(path).name})"
        )
    return True


def load_verified(
    path: str | os.PathLike, map_location: str | torch.device = "cpu"
) -> dict[str, Any]:
    """:func:`verify`, then :func:`icsa.train.checkpoint.load_checkpoint`; any failure is a
    CorruptStateError naming the file."""
    if not verify(path):
        log.info("%s: no digest record (written by an older icsa); loaded unverified", path)
    try:
        return load_checkpoint(path, map_location)
    except CorruptStateError:
        raise
    except InputError as err:
        raise CorruptStateError(str(err)) from err


def remove_verified(path: str | os.PathLike) -> None:
    """Delete a checkpoint and its digest record."""
    Path(path).unlink(missing_ok=True)
    digest_record(path).unlink(missing_ok=True)
