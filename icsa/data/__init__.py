"""Datasets: NetVLAD dbStruct files, layouts on disk, place geometry and image datasets.

The synthetic city lives in :mod:`icsa.data.synthetic` and is imported only where it is used
(``icsa prepare synthetic``), so importing this package stays light and does no I/O.
"""

from icsa.lazy import lazy_exports

# Imported on first use: datasets.py needs torch and torchvision, and `icsa <cmd> --help` must
# not wait for them (icsa/lazy.py).
_EXPORTS = {
    "icsa.data.check": ["check_dataset", "summary_lines"],
    "icsa.data.datasets": [
        "IMAGENET_MEAN", "IMAGENET_STD", "ImageDataset", "load_image", "split_datasets",
    ],
    "icsa.data.dbstruct": ["FIELDS_10", "FIELDS_12", "DbStruct", "read_dbstruct", "write_dbstruct"],
    "icsa.data.geometry": [
        "different_time", "eval_positives", "positives_within", "potential_negatives",
        "training_positives",
    ],
    "icsa.data.layouts": [
        "DATASETS", "LAYOUTS", "Layout", "PlaceSplit", "describe_layout", "get_layout",
        "load_split", "split_mat_path",
    ],
}  # fmt: skip
__getattr__, __dir__ = lazy_exports(
    __name__, {name: module for module, names in _EXPORTS.items() for name in names}
)

__all__ = [
    "DATASETS",
    "FIELDS_10",
    "FIELDS_12",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "LAYOUTS",
    "DbStruct",
    "ImageDataset",
    "Layout",
    "PlaceSplit",
    "check_dataset",
    "describe_layout",
    "different_time",
    "eval_positives",
    "get_layout",
    "load_image",
    "load_split",
    "positives_within",
    "potential_negatives",
    "read_dbstruct",
    "split_datasets",
    "split_mat_path",
    "summary_lines",
    "training_positives",
    "write_dbstruct",
]
