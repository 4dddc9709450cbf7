"""The trainable heads MoRA adds to the backbone.

* `MotionTokenizer`: features of the differences between consecutive frames, pooled to a g x g grid and
  projected to the language-model width (the motion tokens).
* `SegProjector`: ``[SEG]`` hidden state -> mask-engine prompt (LISA's ``text_hidden_fcs``).
* `TemporalHead`: ``[LOC]`` hidden state -> one in-span logit per frame, for any number of frames.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class MotionTokenizer(nn.Module):
    """Inter-frame difference tokens.

    D_t = F_t - F_{t-1} on the vision grid, average-pooled to g x g, then a two-layer MLP to width D.
    With ``pixel_fold`` r > 0, each token also sees the two frames' pixels area-pooled to ``g*r x g*r``
    and folded into ``2 * 3 * r * r`` channels per cell (``pixel_unshuffle``): raw motion below the
    backbone's patch size (which way an edge moved) reaches the token without having to be learned by
    the vision tower first.
    """

    def __init__(self, in_dim: int, out_dim: int, grid: int, pixel_fold: int = 0) -> None:
        super().__init__()
        if pixel_fold < 0:
            raise ValueError(f"pixel_fold must be >= 0, got {pixel_fold}")
        self.grid, self.pixel_fold = grid, pixel_fold
        in_dim = in_dim + 2 * 3 * pixel_fold * pixel_fold
        self.proj = nn.Sequential(nn.Linear(in_dim, out_dim), nn.GELU(), nn.Linear(out_dim, out_dim))

    def forward(
        self, grid_features: torch.Tensor, pixel_values: torch.Tensor | None = None, stride: int = 1
    ) -> torch.Tensor:
        """Motion tokens of frame pairs ``(t, t + s)``.

        Args:
            grid_features: ``[B, T, h, w, d]`` per-frame features.
            pixel_values: ``[B, T, 3, H, W]`` the same frames (required when ``pixel_fold`` > 0).
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
        pooled = F.adaptive_avg_pool2d(diffs, g)  # [B*(T-s), d, g, g]
        dtype = self.proj[0].weight.dtype
        if self.pixel_fold:
            if pixel_values is None or pixel_values.shape[:2] != (B, T) or pixel_values.ndim != 5:
                got = None if pixel_values is None else list(pixel_values.shape)
                raise ValueError(f"pixel_fold > 0 needs pixel_values [B={B}, T={T}, 3, H, W], got {got}")
            r = self.pixel_fold
            pix = F.adaptive_avg_pool2d(pixel_values.flatten(0, 1).to(dtype), g * r)  # [B*T, 3, g*r, g*r]
            pix = F.pixel_unshuffle(pix, r).view(B, T, 3 * r * r, g, g)
            pairs = torch.cat([pix[:, : T - s], pix[:, s:]], dim=2).flatten(0, 1)  # [B*(T-s), 6*r*r, g, g]
            pooled = torch.cat([pooled.to(dtype), pairs], dim=1)
        pooled = pooled.flatten(2).transpose(1, 2)  # [B*(T-s), g*g, d (+ 6*r*r)]
        tokens = self.proj(pooled.to(dtype))  # [B*(T-s), g*g, D]
        return tokens.view(B, T - s, g * g, -1)


class SegProjector(nn.Sequential):
    """``[..., D]`` -> ``[..., C]``: Linear(D, D), ReLU, Linear(D, C), Dropout(0) as LISA."""

    def __init__(self, hidden_size: int, prompt_dim: int) -> None:
        super().__init__(
            nn.Linear(hidden_size, hidden_size),
            nn.ReLU(inplace=False),
            nn.Linear(hidden_size, prompt_dim),
            nn.Dropout(0.0),
        )


class TemporalHead(nn.Module):
    """Per-frame in-span logits from the ``[LOC]`` hidden state.

    logit_t = max_i <q, k_{t,i}> / sqrt(dim) + bias, with q an MLP of the ``[LOC]`` state and k_{t,i} a
    linear map of frame t's tokens (its visual tokens and the motion tokens into and out of it).
    """

    def __init__(self, hidden_size: int, dim: int) -> None:
        super().__init__()
        self.query = nn.Sequential(
            nn.Linear(hidden_size, hidden_size), nn.ReLU(), nn.Linear(hidden_size, dim)
        )
        self.key = nn.Linear(hidden_size, dim)
        self.bias = nn.Parameter(torch.zeros(1))
        self.scale = 1.0 / math.sqrt(dim)

    def forward(self, loc_hidden: torch.Tensor, frame_tokens: torch.Tensor) -> torch.Tensor:
        """Args: loc_hidden ``[B, D]``; frame_tokens ``[B, T, n, D]``. Returns span logits ``[B, T]``."""
        q = self.query(loc_hidden)  # [B, dim]
        k = self.key(frame_tokens.to(q.dtype))  # [B, T, n, dim]
        scores = torch.einsum("bd,btnd->btn", q, k) * self.scale  # [B, T, n]
        return scores.amax(dim=-1) + self.bias  # [B, T]


class FramePromptReader(nn.Module):
    """A per-frame prompt token: the ``[SEG]`` state attends over one frame's tokens.

    The readout (a softmax-weighted sum of the frame's visual and motion tokens, projected to the prompt
    width C) tells the mask decoder what the referred object looks like and where it moves in that frame;
    it is added as a second sparse prompt beside the ``[SEG]`` projection.
    """

    def __init__(self, hidden_size: int, dim: int, prompt_dim: int) -> None:
        super().__init__()
        self.query = nn.Linear(hidden_size, dim)
        self.key = nn.Linear(hidden_size, dim)
        self.value = nn.Linear(hidden_size, prompt_dim)
        self.scale = 1.0 / math.sqrt(dim)

    def forward(self, seg_hidden: torch.Tensor, frame_tokens: torch.Tensor) -> torch.Tensor:
        """Args: seg_hidden ``[B, D]``; frame_tokens ``[B, T, n, D]``. Returns ``[B, T, C]``."""
        q = self.query(seg_hidden)  # [B, dim]
        tokens = frame_tokens.to(q.dtype)
        weights = (torch.einsum("bd,btnd->btn", q, self.key(tokens)) * self.scale).softmax(
            dim=-1
        )  # [B, T, n]
        return torch.einsum("btn,btnc->btc", weights, self.value(tokens))  # [B, T, C]


def temporal_frame_tokens(visual_tokens: torch.Tensor, motion_tokens: torch.Tensor | None) -> torch.Tensor:
    """Keys of the temporal head for every frame.

    Args:
        visual_tokens: ``[B, T, n, D]`` projected per-frame tokens.
        motion_tokens: ``[B, T - s, m, D]`` motion tokens of the frame pairs ``(t, t + s)`` (`MotionTokenizer`
            with stride s, read off the shapes), or None.

    Returns:
        ``[B, T, n + 2m, D]``: frame t's visual tokens, the motion into t (from t - s) and out of t (to t + s);
        missing partners (t < s, t >= T - s) are zeros.
    """
    if motion_tokens is None:
        return visual_tokens
    B, T = visual_tokens.shape[:2]
    s = T - motion_tokens.shape[1]
    if not 1 <= s <= T:
        raise ValueError(f"{motion_tokens.shape[1]} motion tokens per clip do not fit {T} frames")
    motion_tokens = motion_tokens.to(visual_tokens.dtype)
    zero = motion_tokens.new_zeros(B, s, *motion_tokens.shape[2:])  # [B, s, m, D]
    into = torch.cat([zero, motion_tokens], dim=1)  # [B, T, m, D]
    out_of = torch.cat([motion_tokens, zero], dim=1)  # [B, T, m, D]
    return torch.cat([visual_tokens, into, out_of], dim=2)
