"""Settings records from config mappings: the one "from dict" check every settings class uses.

A typo in a config key (``epoch: 3``) must fail with the key's name and the valid keys, before
any work starts; lists become tuples so that the frozen records stay hashable.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Hashable, Sequence
from typing import Any, TypeVar

from icsa.errors import InputError

T = TypeVar("T")


def record_from_dict(cls: type[T], data: Any, source: str) -> T:
    """``cls(**data)`` after checking that ``data`` is a mapping of ``cls``'s field names.

    ``source`` names the place in error messages (``train``, ``figures``, a file path).
    Lists become tuples. A field's own checks (``__post_init__``) raise as they are.
    """
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise InputError(f"{source}: expected a mapping of settings, got {type(data).__name__}")
    valid = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(data) - set(valid))
    if unknown:
        raise InputError(f"{source}: unknown keys {unknown}; valid keys are {valid}")
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
    try:
        return cls(**values)
    except TypeError as err:  # e.g. a missing required field
        raise InputError(f"{source}: {err}; valid keys are {valid}") from err


def first_repeat(values: Sequence[Hashable]) -> tuple[int, int] | None:
    """Indices ``(i, j)``, ``i < j``, of the first value listed again, or None. A list of table
    rows, modules or blocks with a repeat would build, train and count one row twice."""
    seen: dict[Hashable, int] = {}
    for j, value in enumerate(values):
        if value in seen:
            return seen[value], j
        seen[value] = j
    return None


def require_once(values: Sequence[Hashable], source: str) -> None:
    """InputError naming ``source`` and the first value listed twice, if any."""
    repeat = first_repeat(values)
    if repeat is not None:
        i, j = repeat
        raise InputError(
            f"{source}: entries {i + 1} and {j + 1} are both {values[j]!r}; expected each once"
        )
