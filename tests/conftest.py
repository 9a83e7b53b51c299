"""Fixtures shared by several test modules (helpers that are not fixtures: tests/helpers/)."""

from __future__ import annotations

import pytest

from tests.helpers.city import build_tiny_city


@pytest.fixture(scope="session")
def tiny_city(tmp_path_factory):
    """(root, centroids) of the tiny 32×32 street city (tests/helpers/city.py); read-only."""
    return build_tiny_city(tmp_path_factory.mktemp("tiny-city"))


def pytest_xdist_auto_num_workers(config) -> int:
    """`-n auto`: one worker per CPU this process may use (affinity and cgroup quota), at most
    4 — the workflow tests each run Snakemake on 2 cores."""
    from icsa.utils import available_cpus

    return min(available_cpus(), 4)


# The longest modules first: under `--dist loadscope` a module starts when a worker takes it, in
# collection order, so the tiny workflow (minutes) must not be the last one to start.
HEAVY_FIRST = (
    "test_workflow_e2e",
    "test_regression",
    "test_rehearsal",
    "test_slurm",
    "test_dvc",
    "test_workflow_kills",
    "test_report",
)


def pytest_collection_modifyitems(config, items) -> None:
    def rank(item) -> int:
        name = item.module.__name__.rsplit(".", 1)[-1] if item.module else ""
        return HEAVY_FIRST.index(name) if name in HEAVY_FIRST else len(HEAVY_FIRST)

    items.sort(key=rank)  # stable: the order inside a module is kept


def pytest_terminal_summary(terminalreporter) -> None:
    """One line naming the machine services whose tests skipped (tests/helpers/services.py);
    under CI=true those tests fail instead, so CI never prints it."""
    from tests.helpers.services import skipped_services

    reasons = []
    for report in terminalreporter.stats.get("skipped", []):
        longrepr = report.longrepr
        reasons.append(str(longrepr[2] if isinstance(longrepr, tuple) else longrepr))
    counts = skipped_services(reasons)
    if counts:
        listed = ", ".join(f"{service} ({n} test{'s' * (n > 1)})" for service, n in counts.items())
        terminalreporter.write_line(
            f"skipped for want of a service here: {listed}; .ci/run sets them up, and under "
            "CI=true these tests fail instead of skipping"
        )
