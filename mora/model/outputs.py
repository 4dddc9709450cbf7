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
        loss_ce, loss_mask_bce, loss_mask_dice, loss_temporal, loss_correlation: the unweighted parts
            (loss_correlation only with ``config.use_seg_correlation``).
        logits: ``[B, L, V]`` language-model logits.
        mask_logits: ``[B, T, S, S]`` mask logits on the mask-engine canvas (None when a sample has no
            single ``[SEG]``).
        span_logits: ``[B, T]`` per-frame in-span logits; rows of samples without ``[LOC]`` are 0
            (None when no sample has a ``[LOC]``).
        seg_prompts: ``[B, T, P, C]`` per-frame mask-engine prompts from ``[SEG]`` (None with mask_logits).
        correlation_logits: ``[B, T, h, w]`` ``[SEG]`` correlation map on the image-embedding grid
            (`SegCorrelationPrompt`; None when off or without mask_logits).
    """

    loss: torch.Tensor | None = None
    loss_ce: torch.Tensor | None = None
    loss_mask_bce: torch.Tensor | None = None
    loss_mask_dice: torch.Tensor | None = None
    loss_temporal: torch.Tensor | None = None
    loss_correlation: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    mask_logits: torch.Tensor | None = None
    span_logits: torch.Tensor | None = None
    seg_prompts: torch.Tensor | None = None
    correlation_logits: torch.Tensor | None = None
