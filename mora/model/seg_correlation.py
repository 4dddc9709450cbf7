"""`SegCorrelationPrompt`: where is the ``[SEG]`` object? A per-frame dense prompt from the correlation of
the ``[SEG]`` state with every cell of the mask engine's image-embedding grid.

The sparse ``[SEG]`` prompt alone leaves the mask decoder to discover, through its own attention, which of
several objects the language model means; a tiny model trained from scratch instead learns to segment
every object (the learning benchmark's plateau). Referring-segmentation models fuse the expression into
the visual features pixel by pixel for this reason. Here the ``[SEG]`` state is projected to a query and
compared with a key per cell, computed from the cell's image embedding and (when the model has a
`MotionDensePrompt`) its motion features; the correlation map ``[B, T, h, w]``

* becomes a dense prompt through a zero-initialised 1x1 conv (no effect on a pretrained decoder at init),
  added to the decoder's dense embedding beside the motion prompt, and
* is returned as logits, so that training can supervise it directly with the target mask pooled to the
  grid (`mora.model.losses.correlation_loss`): a short path from the answer to the right cells.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class SegCorrelationPrompt(nn.Module):
    """Correlation map of a ``[SEG]`` state with the cells of every frame, and its dense prompt.

    Args:
        hidden_size: D, width of the language model's hidden states.
        embed_dim: C, channels of the engine's image embedding (= its prompt dim).
        motion_dim: channels of the per-cell motion features (0 without them).
        dim: width of the query / key space.
    """

    def __init__(self, hidden_size: int, embed_dim: int, motion_dim: int = 0, dim: int = 64) -> None:
        super().__init__()
        self.embed_dim, self.motion_dim = int(embed_dim), int(motion_dim)
        self.query = nn.Sequential(
            nn.Linear(hidden_size, hidden_size), nn.GELU(), nn.Linear(hidden_size, dim)
        )
        self.key = nn.Sequential(
            nn.Conv2d(embed_dim + motion_dim, dim, 1), nn.GELU(), nn.Conv2d(dim, dim, 3, padding=1)
        )
        self.bias = nn.Parameter(torch.zeros(1))
        self.prompt = nn.Conv2d(1, embed_dim, 1)
        self.scale = 1.0 / math.sqrt(dim)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """PyTorch's default init, then zeros in the prompt conv (no effect on the decoder at init)."""
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Conv2d)):
                module.reset_parameters()
        nn.init.zeros_(self.bias)
        nn.init.zeros_(self.prompt.weight)
        nn.init.zeros_(self.prompt.bias)

    def forward(
        self,
        seg_states: torch.Tensor,
        image_embeds: torch.Tensor,
        motion_features: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Correlation logits and dense prompts of every frame.

        Args:
            seg_states: ``[B, D]`` ``[SEG]`` hidden states.
            image_embeds: ``[B, T, C, h, w]`` the engine's image embeddings.
            motion_features: ``[B, T, M, h, w]`` per-cell motion features (required iff ``motion_dim`` > 0).

        Returns:
            dense prompts ``[B, T, C, h, w]`` and correlation logits ``[B, T, h, w]``.
        """
        B, T, C, h, w = image_embeds.shape
        if C != self.embed_dim or seg_states.shape[0] != B:
            raise ValueError(
                f"image_embeds must be [B={seg_states.shape[0]}, T, {self.embed_dim}, h, w], "
                f"got {list(image_embeds.shape)}"
            )
        if (motion_features is None) != (self.motion_dim == 0) or (
            motion_features is not None and tuple(motion_features.shape) != (B, T, self.motion_dim, h, w)
        ):
            got = None if motion_features is None else list(motion_features.shape)
            raise ValueError(
                f"motion_features must be [B, T, {self.motion_dim}, {h}, {w}] or absent, got {got}"
            )
        dtype = self.prompt.weight.dtype
        embeds = image_embeds.float()
        embeds = embeds / embeds.pow(2).mean(dim=(2, 3, 4), keepdim=True).sqrt().clamp_min(
            1e-6
        )  # per-frame RMS
        cells = embeds.to(dtype)
        if motion_features is not None:
            cells = torch.cat([cells, motion_features.to(dtype)], dim=2)
        keys = self.key(cells.flatten(0, 1)).view(B, T, -1, h, w)  # [B, T, dim, h, w]
        query = self.query(seg_states.to(dtype))  # [B, dim]
        logits = torch.einsum("bd,btdhw->bthw", query, keys) * self.scale + self.bias  # [B, T, h, w]
        dense = self.prompt(logits.flatten(0, 1).unsqueeze(1)).view(B, T, C, h, w)
        return dense, logits


def correlation_targets(gt_masks: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """``[M, S, S]`` masks -> ``[M, h, w]`` fraction of each cell the target covers (area pooling)."""
    return F.adaptive_avg_pool2d(gt_masks.float().unsqueeze(1), grid).squeeze(1)
