"""Realistic faults for the regression check's mutation test (tests/test_regression.py).

Each mutant is a list of (file under icsa/, exact text, replacement). ``apply`` copies the
package and makes each replacement, refusing a text that does not occur exactly once, so a
refactor that moves the code fails loudly here instead of silently testing nothing.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from tests.helpers.workflow import ROOT

MUTANTS: dict[str, list[tuple[str, str, str]]] = {
    # Hard-negative mining picks violating negatives in random order instead of the hardest.
    "random-hard-negatives": [
        (
            "train/mining.py",
            'order = np.argsort(d_neg, kind="stable")',
            "order = np.random.default_rng(len(d_neg)).permutation(len(d_neg))",
        ),
    ],  # fmt: skip
    # NetVLAD's residual x − c computed as x + c.
    "netvlad-residual-sign": [
        (
            "models/netvlad.py",
            "vlad = vlad - assign.sum(dim=2, keepdim=True)",
            "vlad = vlad + assign.sum(dim=2, keepdim=True)",
        ),
    ],  # fmt: skip
    # The attention module skipped between backbone and aggregator.
    "attention-bypassed": [
        (
            "models/model.py",
            "return self.pool(self.attention(features))",
            "return self.pool(features)",
        ),
        (
            "models/model.py",
            "return self.attention(self.backbone(images))",
            "return self.backbone(images)",
        ),
    ],  # fmt: skip
    # The 25 m evaluation threshold read as 26 m.
    "threshold-26m": [
        (
            "evaluate/recall.py",
            "positives = positives_within(db_utm, query_utm, threshold)",
            "positives = positives_within(db_utm, query_utm, threshold + 1.0)",
        ),
    ],  # fmt: skip
    # The last epoch kept instead of the best one (by validation Recall@5).
    "last-epoch-kept": [
        (
            "train/loop.py",
            'improved = trained and row["recall@5"] > st.best_recall',
            "improved = trained",
        ),
    ],  # fmt: skip
    # TokyoTM's same-time database images left in the ranking.
    "tokyotm-same-time-kept": [
        ("evaluate/recall.py", "keep = valid & ~same", "keep = valid"),
    ],  # fmt: skip
}


def apply(name: str, dest: Path) -> Path:
    """A copy of the package with mutant ``name`` applied under ``dest``; returns ``dest``
    (put it first on PYTHONPATH)."""
    shutil.copytree(ROOT / "icsa", dest / "icsa", ignore=shutil.ignore_patterns("__pycache__"))
    for relative, old, new in MUTANTS[name]:
        path = dest / "icsa" / relative
        text = path.read_text()
        if text.count(old) != 1:
            raise AssertionError(f"mutant {name}: {old!r} occurs {text.count(old)}× in {path}")
        path.write_text(text.replace(old, new))
    return dest
