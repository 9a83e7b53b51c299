"""Lazy re-exports for package ``__init__`` files (PEP 562 module ``__getattr__``).

``import icsa`` (and so every ``icsa`` command, ``--help`` included) must not pay for torch,
torchvision, faiss or matplotlib: on a loaded 2-core machine that import alone took 40–55 s.
A package lists what it re-exports and from where; the submodule is imported on first access.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(
    package: str, exports: Mapping[str, str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``__getattr__`` and ``__dir__`` for ``package`` that import ``exports[name]`` on demand.

    Args:
        package: the package's ``__name__`` (used in the AttributeError message).
        exports: public name → absolute module that defines it.
    """

    def __getattr__(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(module), name)

    def __dir__() -> list[str]:
        return sorted(set(exports) | {"__all__", "__doc__", "__name__", "__path__"})

    return __getattr__, __dir__
