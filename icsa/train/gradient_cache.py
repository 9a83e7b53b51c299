"""A training step in chunks of inputs: the gradient cache (``train.step_chunk``).

Gao, Zhang, Han & Callan, "Scaling Deep Contrastive Learning Batch Size under Memory Limited
Setup" (RepL4NLP 2021). A step's loss couples all of its inputs (a query with its positive and
negatives; a Multi-Similarity batch), so the plain step keeps the activations of every input
until the backward pass: for VGG16 trained from block 1 at 480×640, 48 inputs need about 35 GB.
The gradient cache splits the step in two passes:

1. describe the inputs chunk by chunk without a graph, giving the descriptors ``d``;
2. compute the loss on ``d`` (a leaf that requires grad) and back-propagate it to ``d`` only;
3. for each chunk again, recompute its descriptors with a graph and back-propagate
   ``∂loss/∂d`` of that chunk through it.

Step 3's gradients sum to the plain step's: the loss is the same function of the same
descriptors, and the chain rule splits over inputs wherever an input's descriptor depends on that
input alone. Two things break that, and are refused or said here:

- **BatchNorm in the trained blocks** normalises over the batch, so a chunk's statistics differ
  from the batch's: :func:`require_chunkable` refuses it (VGG16, AlexNet, DINOv2 have none in
  their trained blocks; ResNet-18 has).
- **Float summation order.** The weight gradients are summed chunk by chunk instead of inside
  one GEMM, so the step agrees with the plain one to rounding (tests: ≤ 1e-5 relative), not bit
  for bit. A chunked run is itself deterministic on CPU (same run, same bits; resume
  bit-identical), and ``step_chunk`` is part of the recipe and the run's fingerprint.

Cost: one more forward pass of the trained blocks per step (the frozen prefix is computed once
and kept); peak activation memory: ``step_chunk`` inputs instead of all of them.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from icsa.errors import InputError

Backward = Callable[[], None] | None


def gradient_cache(
    prefix: torch.Tensor, head: Callable[[torch.Tensor], torch.Tensor], chunk: int
) -> tuple[torch.Tensor, Callable[[], None]]:
    """Descriptors of ``prefix`` [N, ...] through ``head``, ``chunk`` inputs at a time, as a
    leaf that requires grad, and the function that completes the backward pass once the loss's
    gradient has reached them (``loss.backward()`` first, then the returned function)."""
    parts = prefix.split(chunk)
    with torch.no_grad():
        desc = torch.cat([head(part) for part in parts])  # [N, D]
    desc.requires_grad_(True)

    def backward() -> None:
        if desc.grad is None:
            raise RuntimeError("gradient cache: back-propagate the loss before its second pass")
        for part, grad in zip(parts, desc.grad.split(chunk), strict=True):
            head(part).backward(grad)  # the chunk's graph, freed after its backward

    return desc, backward


def require_chunkable(model: nn.Module, chunk: int, run: str) -> None:
    """Refuse ``train.step_chunk`` where chunks would change the step: BatchNorm modules in
    training mode (the trained blocks') normalise over the inputs they are given."""
    if not chunk:
        return
    was_training = model.training
    model.train()  # the mode of a step; frozen blocks keep BatchNorm in eval mode
    batch_norms = sorted(
        name
        for name, module in model.named_modules()
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and module.training
    )
    model.train(was_training)
    if batch_norms:
        raise InputError(
            f"{run}: train.step_chunk={chunk}, but the trained blocks hold BatchNorm "
            f"({', '.join(batch_norms[:3])}{', …' if len(batch_norms) > 3 else ''}), whose "
            "batch statistics would change with the chunks; expected step_chunk: 0 for this "
            "model and lowest trained block"
        )
