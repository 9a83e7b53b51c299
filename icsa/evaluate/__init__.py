"""Evaluation: streaming descriptor extraction, exact kNN search, Recall@N, PCA whitening.

Contracts in docs/architecture.md ("Evaluation"); the protocol is NetVLAD's (docs/science.md).
"""

from icsa.evaluate.search import SearchPlan, merge_topk, plan_search, search
from icsa.lazy import lazy_exports

# Imported on first use: extraction needs torch and torchvision (about 3 s of imports, a third
# of them torch._dynamo pulled in by torchvision.ops), which an `icsa evaluate` job — faiss and
# numpy only — must not pay for (issue 30; tests/test_cli_lazy.py). The search is imported here
# (faiss and numpy): a lazy `search` would be shadowed by the submodule of that name, which
# Python sets on the package when any code imports icsa.evaluate.search.
_EXPORTS = {
    "icsa.evaluate.extract": [
        "DTYPES", "extract_descriptors", "extract_in_memory", "iter_descriptors",
    ],
    "icsa.evaluate.metrics": [
        "count_nonfinite", "evaluate_split", "load_descriptors", "write_results",
    ],
    "icsa.evaluate.pca": ["PCAWhitening", "fit_pca"],
    "icsa.evaluate.recall": [
        "RECALL_VALUES", "TOKYO247_CUTOUTS", "Retrieval", "dedup_by_group", "first_hit_ranks",
        "panorama_groups", "recall_at_n", "retrieve",
    ],
}  # fmt: skip
__getattr__, __dir__ = lazy_exports(
    __name__, {name: module for module, names in _EXPORTS.items() for name in names}
)

__all__ = [
    "DTYPES",
    "RECALL_VALUES",
    "TOKYO247_CUTOUTS",
    "PCAWhitening",
    "Retrieval",
    "SearchPlan",
    "count_nonfinite",
    "dedup_by_group",
    "evaluate_split",
    "extract_descriptors",
    "extract_in_memory",
    "first_hit_ranks",
    "fit_pca",
    "iter_descriptors",
    "load_descriptors",
    "merge_topk",
    "panorama_groups",
    "plan_search",
    "recall_at_n",
    "retrieve",
    "search",
    "write_results",
]
