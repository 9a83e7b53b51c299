"""Errors for bad user input.

Library code raises :class:`InputError` when a file, key or value supplied by the user is wrong;
the message names the file or key, the value found and what was expected. The CLI prints it as
one line (exit status 2) instead of a traceback. It subclasses ValueError so callers that
already catch ValueError keep working.
"""

import re


class InputError(ValueError):
    """Bad user input: names the file or key, the value, and what was expected."""


def config_error(key: str, value: object, expected: str) -> InputError:
    """An error naming the config key, the value found and what was expected."""
    return InputError(f"config error: {key} = {value!r}; expected {expected}")


# How torch re-raises an exception of a DataLoader worker process in the main process: the type
# is kept, the message becomes this line followed by the worker's whole traceback.
_WORKER_WRAPPER = re.compile(r"Caught \w+ in DataLoader worker process \d+\.\nOriginal Traceback")


def worker_message(err: BaseException) -> str:
    """``str(err)``, or for an error re-raised from a DataLoader worker the worker's own message
    (the last line of its traceback): that is what names the file, 30 lines further down."""
    text = str(err)
    if not _WORKER_WRAPPER.match(text):
        return text
    kind = type(err)
    name = kind.__qualname__
    if kind.__module__ != "builtins":
        name = f"{kind.__module__}.{name}"
    at = text.rfind(f"\n{name}: ")
    return text[at + len(name) + 3 :].rstrip("\n") if at >= 0 else text
