"""Which k-means centroids a run's NetVLAD starts from (no torch: the workflow imports this).

NetVLAD's centroids come from k-means on the local descriptors it receives at initialisation
(docs/science.md). For modules that are the identity when untrained (weights at 1, or no
module) that is the backbone's output, so one centroids file per (dataset, backbone, seed)
serves all of them. SE and CBAM are not the identity at initialisation (their gates rescale
channels), so their centroids are computed through the untrained module (``icsa kmeans
--model-spec`` naming it).
Each registry entry says which it is (``AttentionSpec.identity_at_init``);
``tests/test_kmeans.py`` checks that against every registered module numerically.
"""

from __future__ import annotations

from icsa.registry import attention_spec

BACKBONE_SOURCE = "backbone"


def centroid_source(attention: str) -> str:
    """``"backbone"`` for modules that are the identity at init, else the module's own name."""
    return BACKBONE_SOURCE if attention_spec(attention).identity_at_init else attention
