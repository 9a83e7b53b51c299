"""Fixtures shared by several test modules (helpers that are not fixtures: tests/helpers/)."""

from __future__ import annotations

import pytest

from tests.helpers.city import build_tiny_city


@pytest.fixture(scope="session")
def tiny_city(tmp_path_factory):
    """(root, centroids) of the tiny 32×32 street city (tests/helpers/city.py); read-only."""
    return build_tiny_city(tmp_path_factory.mktemp("tiny-city"))
