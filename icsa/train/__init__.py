"""Training: k-means initialisation, hard-negative mining, the triplet loop, the multisimilarity
regime (place-grouped batches) and checkpoints.

See docs/architecture.md ("Training") for the files a run writes and docs/science.md for the recipe.
"""

from icsa.lazy import lazy_exports

# Imported on first use (icsa/lazy.py): most submodules need torch, while the workflow checks
# the recipe with icsa.train.settings (torch-free) when it parses the config.
_EXPORTS = {
    "icsa.train.checkpoint": ["load_checkpoint", "load_model", "save_checkpoint"],
    "icsa.train.job": ["RunContext", "RunInputs", "RunOptions"],
    "icsa.train.kmeans": ["compute_centroids", "load_centroids"],
    "icsa.train.loop": ["DivergedError", "NonFiniteLossError", "TripletTrainer"],
    "icsa.train.mining": ["HardNegativeMiner", "TripletGeometry", "build_geometry"],
    "icsa.train.multisimilarity": ["MultiSimilarityTrainer", "prepare_multisimilarity"],
    "icsa.train.places": ["Places", "place_batches", "places_from_utm"],
    "icsa.train.run": ["prepare_trainer", "train_run"],
    "icsa.train.settings": ["TrainSettings"],
}
__getattr__, __dir__ = lazy_exports(
    __name__, {name: module for module, names in _EXPORTS.items() for name in names}
)

__all__ = sorted(name for names in _EXPORTS.values() for name in names)
