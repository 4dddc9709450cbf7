"""Motion tokens: features of the differences between frames, pooled to a g x g grid and projected to the
language-model width (`MotionTokenizer`)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class MotionTokenizer(nn.Module):
    """Inter-frame difference tokens.

    D_t = F_{t+s} - F_t on the vision grid, average-pooled to g x g, then a two-layer MLP to width D.
    """

    def __init__(self, in_dim: int, out_dim: int, grid: int) -> None:
        super().__init__()
        self.grid = grid
        self.proj = nn.Sequential(nn.Linear(in_dim, out_dim), nn.GELU(), nn.Linear(out_dim, out_dim))

    def forward(self, grid_features: torch.Tensor, stride: int = 1) -> torch.Tensor:
        """Motion tokens of frame pairs ``(t, t + s)``.

        Args:
            grid_features: ``[B, T, h, w, d]`` per-frame features.
            stride: s, the distance between the two frames of a pair (1 = consecutive frames).

        Returns:
            ``[B, T - s, g * g, D]`` (empty along dim 1 when T <= s).
        """
        if stride < 1:
            raise ValueError(f"stride must be >= 1, got {stride}")
        B, T, h, w, d = grid_features.shape
        g, s = self.grid, min(stride, T)
        diffs = grid_features[:, s:] - grid_features[:, : T - s]  # [B, T-s, h, w, d]
        diffs = diffs.permute(0, 1, 4, 2, 3).reshape(B * (T - s), d, h, w)  # [B*(T-s), d, h, w]
        pooled = F.adaptive_avg_pool2d(diffs, g).flatten(2).transpose(1, 2)  # [B*(T-s), g*g, d]
        tokens = self.proj(pooled.to(self.proj[0].weight.dtype))  # [B*(T-s), g*g, D]
        return tokens.view(B, T - s, g * g, tokens.shape[-1])  # explicit width: T - s may be 0
