"""A cheap fingerprint of a dataset folder: every file's path, size and modification time.

The workflow passes it to the dataset check of user-provided data as a parameter, so that an
image overwritten in place (same name, new content: the folder's own time does not change)
reruns the check and, through the rewritten index, everything that depends on the dataset.
Stat only, no reading: a Pitts250k folder (250k files) takes about a second. The synthetic city
is written by the workflow itself and needs none.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path


def folder_fingerprint(root: str | os.PathLike) -> str:
    """SHA-256 over (relative path, size, mtime in ns) of every file under ``root``; '' if
    absent."""
    root = Path(root)
    if not root.is_dir():
        return ""
    digest = hashlib.sha256()
    for folder, dirs, files in os.walk(root):
        dirs.sort()  # a fixed walk order
        for name in sorted(files):
            path = Path(folder, name)
            stat = path.stat()
            digest.update(
                f"{path.relative_to(root)}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode()
            )
    return digest.hexdigest()
