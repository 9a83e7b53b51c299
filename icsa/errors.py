"""Errors for bad user input.

Library code raises :class:`InputError` when a file, key or value supplied by the user is wrong;
the message names the file or key, the value found and what was expected. The CLI prints it as
one line (exit status 2) instead of a traceback. It subclasses ValueError so callers that
already catch ValueError keep working.
"""


class InputError(ValueError):
    """Bad user input: names the file or key, the value, and what was expected."""
