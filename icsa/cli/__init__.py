"""The `icsa` command line: one subcommand per pipeline step, each runnable by hand.

Every area registers its own subcommands (``register(subparsers)`` in ``icsa/cli/<area>.py``);
a subcommand parses its flags and calls library functions with explicit arguments. The
registering modules import torch, torchvision, faiss and matplotlib only inside their handlers,
so that `icsa --help` and `icsa <cmd> --help` answer at once (tests/test_cli_lazy.py).
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

from icsa.errors import InputError, worker_message


def build_parser() -> argparse.ArgumentParser:
    from icsa import __version__

    parser = argparse.ArgumentParser(prog="icsa", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"icsa {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True)
    # Every module in this package that defines `register(subparsers)` adds its subcommands.
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{__name__}.{info.name}")
        if hasattr(module, "register"):
            module.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        # Modules that register extra backbones/attention modules (the config's `plugins:`,
        # exported by the workflow), before a subcommand looks a name up.
        from icsa.registry import load_plugins_from_env

        load_plugins_from_env()
        result = args.func(args)
    except (InputError, FileNotFoundError) as err:
        # One line naming the file, also when a DataLoader worker process raised it.
        print(f"icsa {args.command}: error: {worker_message(err)}", file=sys.stderr)
        return 2
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
