"""MoRA's training losses.

total = ce_w * CE + bce_w * mask BCE + dice_w * mask Dice + temporal_w * temporal BCE

Mask losses run over frames that carry a target (``mask_valid``) and are normalised per mask as LISA:
sigmoid BCE averaged over pixels, Dice on sigmoid probabilities with scale 1000 and eps 1e-6, both
averaged over masks. The temporal loss is the BCE of per-frame span logits against in-span labels,
averaged over the frames of samples that have a span.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from mora.constants import IGNORE_INDEX

DICE_SCALE = 1000.0
DICE_EPS = 1e-6


@dataclass
class LossBreakdown:
    """Scalar losses (0-d tensors); ``total`` is the weighted sum."""

    total: torch.Tensor
    ce: torch.Tensor
    mask_bce: torch.Tensor
    mask_dice: torch.Tensor
    temporal: torch.Tensor


def language_model_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Next-token cross-entropy. logits ``[B, L, V]``, labels ``[B, L]`` (IGNORE_INDEX ignored)."""
    shift_logits = logits[:, :-1].float().flatten(0, 1)  # [B*(L-1), V]
    shift_labels = labels[:, 1:].flatten().to(shift_logits.device)  # [B*(L-1)]
    if not bool((shift_labels != IGNORE_INDEX).any()):
        return shift_logits.sum() * 0.0
    return F.cross_entropy(shift_logits, shift_labels, ignore_index=IGNORE_INDEX)


def _mean(per_mask: torch.Tensor, weights: torch.Tensor | None) -> torch.Tensor:
    """Mean of ``per_mask [M]``, weighted by ``weights [M]`` when given."""
    if weights is None:
        return per_mask.mean()
    weights = weights.to(per_mask)
    return (per_mask * weights).sum() / weights.sum().clamp_min(1e-8)


def mask_bce_loss(
    logits: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor | None = None
) -> torch.Tensor:
    """Mean over masks of the per-mask pixel-mean sigmoid BCE. logits, targets ``[M, S, S]``; optional
    per-mask weights ``[M]``."""
    per_mask = F.binary_cross_entropy_with_logits(logits.float(), targets.float(), reduction="none")
    return _mean(per_mask.flatten(1).mean(dim=1), weights)


def mask_dice_loss(
    logits: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor | None = None
) -> torch.Tensor:
    """Mean over masks of 1 - Dice on sigmoid probabilities (LISA's scale/eps). ``[M, S, S]``; optional
    per-mask weights ``[M]``."""
    probs = logits.float().sigmoid().flatten(1) / DICE_SCALE  # [M, S*S]
    gt = targets.float().flatten(1) / DICE_SCALE
    numerator = 2 * (probs * gt * DICE_SCALE).sum(dim=1)
    denominator = probs.sum(dim=1) + gt.sum(dim=1)
    return _mean(1 - (numerator + DICE_EPS) / (denominator + DICE_EPS), weights)


def temporal_loss(
    span_logits: torch.Tensor, span_labels: torch.Tensor, span_valid: torch.Tensor
) -> torch.Tensor:
    """BCE of ``[B, T]`` span logits against ``[B, T]`` labels over samples where ``span_valid [B]``."""
    rows = span_valid.to(torch.bool)
    return F.binary_cross_entropy_with_logits(span_logits[rows].float(), span_labels[rows].float())


def combine_losses(
    *,
    ce: torch.Tensor,
    mask_bce: torch.Tensor,
    mask_dice: torch.Tensor,
    temporal: torch.Tensor,
    weights: tuple[float, float, float, float],
) -> LossBreakdown:
    """Weighted sum with ``weights`` = (ce, mask_bce, mask_dice, temporal)."""
    w_ce, w_bce, w_dice, w_t = weights
    total = w_ce * ce + w_bce * mask_bce + w_dice * mask_dice + w_t * temporal
    return LossBreakdown(total=total, ce=ce, mask_bce=mask_bce, mask_dice=mask_dice, temporal=temporal)


def compute_losses(
    config,
    out,
    ce: torch.Tensor | None,
    gt_masks: torch.Tensor | None,
    mask_valid: torch.Tensor | None,
    span_labels: torch.Tensor | None,
    span_valid: torch.Tensor | None,
    has_loc: torch.Tensor,
) -> LossBreakdown:
    """All losses of one batch from model outputs (`MoRAOutput`) and the processor's targets.

    Args:
        config: `MoRAConfig` (loss weights).
        ce: the language-model loss (`language_model_loss`), or None without labels;
        gt_masks ``[B, T, S, S]``; mask_valid ``[B, T]`` (None: every frame); span_labels ``[B, T]``; span_valid ``[B]`` (None: every sample); has_loc ``[B]`` samples with [LOC].

    Raises:
        ValueError: mask targets that do not match the mask logits, or a span label without ``[LOC]``.
    """
    device = has_loc.device  # the model's device
    zero = torch.zeros((), dtype=torch.float32, device=device)
    ce = zero if ce is None else ce
    bce = dice = zero
    if gt_masks is not None:
        gt_masks = gt_masks.to(device)
        if out.mask_logits is None or tuple(gt_masks.shape) != tuple(out.mask_logits.shape):
            shape = None if out.mask_logits is None else tuple(out.mask_logits.shape)
            raise ValueError(f"gt_masks {tuple(gt_masks.shape)} do not match mask logits {shape}")
        valid = torch.ones(gt_masks.shape[:2], dtype=torch.bool, device=device)
        if mask_valid is not None:
            valid = mask_valid.to(device, torch.bool)
        if bool(valid.any()):
            weights = None
            outside = config.mask_outside_span_weight
            if span_labels is not None and outside != 1.0:
                # frames outside a row's motion span (rows with a span label) weigh `outside`, the rest 1
                weights = torch.ones(valid.shape, dtype=torch.float32, device=device)
                labelled = torch.ones(valid.shape[0], dtype=torch.bool, device=device)
                if span_valid is not None:
                    labelled = span_valid.to(device, torch.bool)
                out_of_span = (span_labels.to(device) < 0.5) & labelled.unsqueeze(1)
                weights = weights.masked_fill(out_of_span, outside)[valid]
            bce = mask_bce_loss(out.mask_logits[valid], gt_masks[valid], weights)
            dice = mask_dice_loss(out.mask_logits[valid], gt_masks[valid], weights)
    temporal = zero
    if span_labels is not None:
        rows = torch.ones(span_labels.shape[0], dtype=torch.bool, device=device)
        if span_valid is not None:
            rows = span_valid.to(device, torch.bool)
        missing = rows & ~has_loc.to(device)
        if bool(missing.any()):
            raise ValueError(
                f"{int(missing.sum())} sample(s) have a span label but no [LOC] token "
                f"(samples with a span: {int(rows.sum())}, with [LOC]: {int(has_loc.sum())})"
            )
        if bool(rows.any()):
            temporal = temporal_loss(out.span_logits, span_labels.to(device), rows)
    weights = (
        config.ce_loss_weight,
        config.mask_bce_loss_weight,
        config.mask_dice_loss_weight,
        config.temporal_loss_weight,
    )
    return combine_losses(ce=ce, mask_bce=bce, mask_dice=dice, temporal=temporal, weights=weights)
