"""icsa — visual place recognition with input-independent attention (ICSA) and NetVLAD.

Reproduces "Image Retrieval Based on Independent Attention Mechanism" (Computer Science 2023,
50(6A)). Importing the package does no I/O and loads no torch; the models are re-exported
(imported on first use) for use in other code.
"""

from icsa.lazy import lazy_exports

__version__ = "0.1.0"

# The models (torch, torchvision) load on first use, so that `icsa --help` stays instant.
_MODELS = ("ICSA", "NetVLAD", "build_attention", "build_backbone", "build_model")
__getattr__, __dir__ = lazy_exports(__name__, dict.fromkeys(_MODELS, "icsa.models"))

__all__ = ["ICSA", "NetVLAD", "build_attention", "build_backbone", "build_model", "__version__"]
