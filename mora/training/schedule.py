"""Learning-rate schedules as multipliers of ``optim.lr`` per optimizer step.

``warmup_decay`` reproduces DeepSpeed's ``WarmupDecayLR`` with ``warmup_type="linear"`` as LISA/MoRA use
it (warm-up from 0 over ``warmup_steps``, then linear decay to 0 at ``total_steps``); ``cosine`` is
linear warm-up then half-cosine decay to ``min_lr_ratio``. They are plain `LambdaLR` schedulers, so
DeepSpeed steps them at gradient-accumulation boundaries and saves their state with its checkpoints.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from mora.training.config import OptimConfig


def lr_multiplier(
    step: int, *, schedule: str, warmup_steps: int, total_steps: int, min_lr_ratio: float
) -> float:
    """Multiplier of the base learning rate for optimizer step ``step`` (0-based)."""
    if schedule == "constant":
        return 1.0 if warmup_steps == 0 else min(1.0, (step + 1) / warmup_steps)
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    remaining = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / remaining)
    if schedule == "warmup_decay":
        return max(0.0, 1.0 - progress)
    if schedule == "cosine":
        return min_lr_ratio + (1.0 - min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))
    raise ValueError(f"unknown schedule {schedule!r}")


def build_scheduler(
    optimizer: torch.optim.Optimizer, optim: OptimConfig, total_steps: int
) -> torch.optim.lr_scheduler.LambdaLR:
    fn: Callable[[int], float] = lambda step: lr_multiplier(  # noqa: E731
        step,
        schedule=optim.schedule,
        warmup_steps=optim.warmup_steps,
        total_steps=total_steps,
        min_lr_ratio=optim.min_lr_ratio,
    )
    return torch.optim.lr_scheduler.LambdaLR(optimizer, fn)
