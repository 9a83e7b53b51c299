"""icsa — visual place recognition with input-independent attention (ICSA) and NetVLAD.

Reproduces "Image Retrieval Based on Independent Attention Mechanism" (Computer Science 2023,
50(6A)). Importing the package does no I/O; the models are re-exported for use in other code.
"""

from icsa.models import ICSA, NetVLAD, build_attention, build_backbone, build_model

__version__ = "0.1.0"

__all__ = ["ICSA", "NetVLAD", "build_attention", "build_backbone", "build_model", "__version__"]
