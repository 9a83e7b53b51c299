"""Damaging a file the way disks and kills do: cut short, bytes flipped, bytes zeroed."""

from __future__ import annotations

from pathlib import Path


def truncate(path: Path) -> None:
    """Keep the first half of the file."""
    size = path.stat().st_size
    with path.open("r+b") as fh:
        fh.truncate(max(size // 2, 1) if size > 1 else 0)


def flip(path: Path) -> None:
    """Invert 64 bytes in the last third: past any header, inside the data."""
    data = bytearray(path.read_bytes())
    start = max(len(data) * 2 // 3, 0)
    for i in range(start, min(start + 64, len(data))):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))


def zero(path: Path) -> None:
    """Zero everything after the first 128 bytes (a .npy file's header stays intact)."""
    data = bytearray(path.read_bytes())
    data[128:] = bytes(len(data) - 128)
    path.write_bytes(bytes(data))
