"""Training: k-means initialisation, hard-negative mining, the triplet loop and checkpoints.

See docs/architecture.md ("Training") for the files a run writes and DESIGN §2 for the recipe.
"""

from icsa.train.checkpoint import load_checkpoint, load_model, save_checkpoint
from icsa.train.kmeans import compute_centroids, load_centroids
from icsa.train.loop import NonFiniteLossError, TripletTrainer
from icsa.train.mining import HardNegativeMiner, TripletGeometry, build_geometry
from icsa.train.run import run_name, train_run
from icsa.train.settings import TrainSettings

__all__ = [
    "HardNegativeMiner",
    "NonFiniteLossError",
    "TrainSettings",
    "TripletGeometry",
    "TripletTrainer",
    "build_geometry",
    "compute_centroids",
    "load_centroids",
    "load_checkpoint",
    "load_model",
    "run_name",
    "save_checkpoint",
    "train_run",
]
