"""The multisimilarity regime's learning-rate schedule: linear warm-up, then linear decay.

Warm-up as gsv-cities (``VPRModel.optimizer_step``: for the first ``warmup`` steps the lr is
``min(1, (step + 1) / warmup)`` times the base lr); the decay as serizba/salad's
``LinearLR(start_factor=1, end_factor=0.2, total_iters=4000)``: the factor falls linearly from 1
to ``end_factor`` over ``decay_steps`` optimiser steps and then stays. Both count optimiser
steps from the start of the run; the factors multiply (salad has no warm-up; with
``warmup=0`` this is its schedule).
"""

from __future__ import annotations


class WarmupLinear:
    """``LambdaLR`` factor of optimiser step ``step`` (0-based). A plain object, not a closure:
    ``LambdaLR.state_dict`` stores its attributes, so the schedule checkpoints as plain data."""

    def __init__(self, warmup: int, decay_steps: int, end_factor: float) -> None:
        self.warmup = int(warmup)
        self.decay_steps = int(decay_steps)
        self.end_factor = float(end_factor)

    def __call__(self, step: int) -> float:
        warm = min(1.0, (step + 1) / self.warmup) if self.warmup > 0 else 1.0
        done = min(step, self.decay_steps) / self.decay_steps
        return warm * (1.0 + (self.end_factor - 1.0) * done)
