"""Tests that need a service of the machine (SLURM, a headless browser, a tmpfs mount).

Locally such a test skips where the service cannot be had, with a reason that starts with
``[needs <service>]``, and the run ends with one summary line listing them (tests/conftest.py).
Under ``CI=true`` it fails instead: `.ci/run` sets every service up and stops when it cannot,
so a missing service in CI is a broken set-up, never a green run that checked less.
"""

from __future__ import annotations

import os

import pytest

SERVICES = ("SLURM", "browser", "tmpfs")


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


def unavailable(service: str, reason: str) -> None:
    """Skip the calling test (fail it under CI=true) because ``service`` is missing."""
    if service not in SERVICES:
        raise ValueError(f"unknown service {service!r}; expected one of {SERVICES}")
    message = f"[needs {service}] {reason}"
    if in_ci():
        pytest.fail(f"CI=true: {message} (.ci/run should have set it up)", pytrace=False)
    pytest.skip(message)


def skipped_services(reasons: list[str]) -> dict[str, int]:
    """How many skips each service caused, from skip reasons (for the summary line)."""
    counts: dict[str, int] = {}
    for reason in reasons:
        for service in SERVICES:
            if f"[needs {service}]" in reason:
                counts[service] = counts.get(service, 0) + 1
    return counts
