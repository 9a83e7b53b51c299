"""`icsa.regression.compare` and `build_baseline` on hand-made results (no training)."""

from __future__ import annotations

import copy

import pytest

from icsa.errors import InputError
from icsa.regression import MARGIN, build_baseline, compare, drift

ENV = {"torch": "2.14.1", "cpu_capability": "AVX512", "machine": "x86_64"}


def _result(ranks: dict[str, list[int]], env: dict = ENV, shift: float = 0.0) -> dict:
    return {
        "environment": env,
        "results": {
            key: {"first_hit_rank": r, "recalls": {}, "projection": [0.5 + shift, -0.25]}
            for key, r in ranks.items()
        },
    }


STABLE, LOOSE = "a-bnone-s0/p-test", "a-b5-s0/p-test"
REF = _result({STABLE: [0, 1, -1, 3, 0], LOOSE: [0, 2, 4, -1, 1]})


def test_baseline_allows_the_measured_drift_plus_a_margin() -> None:
    avx2 = {**ENV, "cpu_capability": "AVX2"}
    other = _result({STABLE: [0, 1, -1, 3, 0], LOOSE: [1, 2, 0, -1, 7]}, avx2, 1e-6)
    base = build_baseline(REF, [other], "cmd")
    measured = base["tolerance"]["measured"]
    assert measured[STABLE] == {"changed_ranks": 0, "found": 0, "projection": pytest.approx(1e-6)}
    # LOOSE: ranks of 3 queries changed; Found@1 2 → 2 (0), Found@5 4 → 3 (1).
    assert measured[LOOSE]["changed_ranks"] == 3 and measured[LOOSE]["found"] == 1
    assert base["tolerance"]["allowed"][LOOSE]["changed_ranks"] == 3 + MARGIN["changed_ranks"]
    assert base["tolerance"]["measured_against"] == [other["environment"]]
    assert compare(other, base) == []  # the measured environment passes its own tolerance


def test_exact_in_the_same_environment_and_tolerant_elsewhere() -> None:
    base = build_baseline(REF, [], "cmd")
    moved = copy.deepcopy(REF)
    moved["results"][STABLE]["first_hit_rank"][1] = 2  # one query, one rank
    assert compare(copy.deepcopy(REF), base) == []
    problems = compare(moved, base)
    assert problems == [f"{STABLE}: changed_ranks moved by 1 (allowed 0)"]
    assert compare(moved, base, tolerant=True) == []  # within the 2-rank margin
    foreign = copy.deepcopy(moved)
    foreign["environment"] = {**ENV, "cpu_capability": "AVX2"}
    assert compare(foreign, base) == []  # another machine: the tolerance applies by itself
    for query in (0, 2, 3):
        foreign["results"][STABLE]["first_hit_rank"][query] = 9
    assert any("changed_ranks moved by 4" in p for p in compare(foreign, base))


def test_projection_and_found_are_checked_too() -> None:
    base = build_baseline(REF, [], "cmd")
    shifted = _result({STABLE: [0, 1, -1, 3, 0], LOOSE: [0, 2, 4, -1, 1]}, shift=1e-3)
    assert any("projection moved" in p for p in compare(shifted, base, tolerant=True))
    lost = _result({STABLE: [0, 1, -1, 3, 0], LOOSE: [9, 9, 4, -1, 1]})  # two queries fall out
    assert drift(lost, REF)[LOOSE].found == 2
    assert any("found moved by 2" in p for p in compare(lost, base, tolerant=True))


def test_other_runs_are_an_error() -> None:
    with pytest.raises(InputError, match="expected the same runs and evaluation sets"):
        drift(_result({STABLE: [0, 1, -1, 3, 0]}), REF)
