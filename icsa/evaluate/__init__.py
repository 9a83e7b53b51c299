"""Evaluation: streaming descriptor extraction, exact kNN search, Recall@N, PCA whitening.

Contracts in docs/architecture.md ("Evaluation"); the protocol is NetVLAD's (docs/science.md).
"""

from icsa.evaluate.extract import DTYPES, extract_descriptors, extract_in_memory, iter_descriptors
from icsa.evaluate.metrics import count_nonfinite, evaluate_split, load_descriptors, write_results
from icsa.evaluate.pca import PCAWhitening, fit_pca
from icsa.evaluate.recall import (
    RECALL_VALUES,
    TOKYO247_CUTOUTS,
    Retrieval,
    dedup_by_group,
    first_hit_ranks,
    panorama_groups,
    recall_at_n,
    retrieve,
)
from icsa.evaluate.search import SearchPlan, merge_topk, plan_search, search

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
