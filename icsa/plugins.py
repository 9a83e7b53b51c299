"""Plugins: modules outside the package that register backbones, attention modules or
aggregators (:mod:`icsa.registry`). No torch.

The config's ``plugins:`` names them; the workflow imports them before it checks the config (and
before it builds the run-id wildcards, which include the registered aggregators' suffixes), and
every ``icsa`` job imports them through $ICSA_PLUGINS. Re-exported by :mod:`icsa.registry`.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
from collections.abc import Iterable

from icsa.errors import InputError

# The workflow exports the config's `plugins:` here, so that every `icsa` job imports them too.
PLUGINS_ENV = "ICSA_PLUGINS"

REGISTER_FUNCTIONS = ("register_backbone", "register_attention", "register_aggregator")


def load_plugins_from_env() -> None:
    """Import the comma-separated modules of $ICSA_PLUGINS (none when unset)."""
    load_plugins(m for m in os.environ.get(PLUGINS_ENV, "").split(",") if m.strip())


def _plugin_file(module: str) -> str | None:
    """The file ``module`` is imported from, or None (not found, or not a file)."""
    try:
        spec = importlib.util.find_spec(module)
    except Exception:  # noqa: BLE001 — a parent package that fails is reported by the import
        return None
    return spec.origin if spec is not None and spec.has_location else None


def load_plugins(modules: Iterable[str]) -> None:
    """Import modules that register backbones, attention modules or aggregators (config
    ``plugins:``); a module imported already is not imported again.

    Whatever goes wrong inside one is reported naming it (module and file) first: the plugin is
    the user's code, and a traceback through importlib does not say which entry of ``plugins:``
    failed."""
    for module in modules:
        try:
            importlib.import_module(module)
        except Exception as err:  # noqa: BLE001 — anything a plugin raises at import is its fault
            file = _plugin_file(module)
            where = f"plugins: {module!r}" + (f" ({file})" if file else "")
            if isinstance(err, InputError):  # a registration it makes, e.g. a name taken
                raise InputError(f"{where}: {err}") from err
            if isinstance(err, ImportError):
                calls = "/".join(REGISTER_FUNCTIONS)
                raise InputError(
                    f"{where} cannot be imported ({err}); expected an importable module (on "
                    f"PYTHONPATH) that calls icsa.registry.{calls}"
                ) from err
            raise InputError(f"{where} raised {type(err).__name__} at import: {err}") from err
