"""Typed outputs of `MoRAForVideoGrounding.forward`."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers.utils import ModelOutput


@dataclass
class MoRAOutput(ModelOutput):
    """Outputs of one forward pass.

    Attributes:
        loss: weighted total (None without labels or targets).
        loss_ce, loss_mask_bce, loss_mask_dice, loss_temporal: the unweighted parts.
        logits: ``[B, L, V]`` language-model logits.
        mask_logits: ``[B, T, S, S]`` mask logits on the mask-engine canvas (None when a sample has no
            single ``[SEG]``).
        span_logits: ``[B, T]`` per-frame in-span logits; rows of samples without ``[LOC]`` are 0
            (None when no sample has a ``[LOC]``).
        seg_prompts: ``[B, T, P, C]`` per-frame mask-engine prompts from ``[SEG]`` (None with mask_logits).
    """

    loss: torch.Tensor | None = None
    loss_ce: torch.Tensor | None = None
    loss_mask_bce: torch.Tensor | None = None
    loss_mask_dice: torch.Tensor | None = None
    loss_temporal: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    mask_logits: torch.Tensor | None = None
    span_logits: torch.Tensor | None = None
    seg_prompts: torch.Tensor | None = None
