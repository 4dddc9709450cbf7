"""`PixelMaskPath`: a high-resolution mask path beside the mask engine's decoder.

A SAM-family decoder upsamples its image-embedding grid (S/16 for real SAM, 8x8 for the tiny engine) to
masks, and its output token lives in a small space (C/8 channels). Where objects are a few grid cells
large, separating neighbours needs per-pixel evidence. This path embeds every pixel of every frame at the
engine's full input resolution S, as the sum of a per-pixel MLP of the frame's pixels (3x3 conv, GELU, 1x1
conv) and the (adapted) vision grid projected and upsampled, and adds to the engine's logits the dot product
of those embeddings with a query read from the ``[SEG]`` state (after the grounding reader):

    logits_{b,t} = engine_{b,t} + < Q s_b , E_{v(b),t} >          E: [V, T, e, S, S] per video frame

The query comes from the language-model-width ``[SEG]`` state, not from the engine's prompt: measured on the
tiny default (train/README.md), a query behind the SAM prompt projector and a pixel embedding mixed through a
nonlinearity with the engine's embedding never learned to single out the answer object (Dice stuck at 0.5,
the masks covering every moving object), while this form did. Pixel embeddings are computed once per video
frame and read by all of its questions.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mora.model.packing import slots_by_video


class PixelMaskPath(nn.Module):
    """Per-pixel embeddings of frames and their dot product with ``[SEG]`` queries.

    Args:
        query_dim: D, width of the ``[SEG]`` states the queries are read from.
        grid_dim: d, channels of the vision grid (0: no grid input).
        dim: e, width of the pixel embeddings.
    """

    def __init__(self, query_dim: int, grid_dim: int, dim: int) -> None:
        super().__init__()
        self.dim = dim
        self.pixels = nn.Sequential(nn.Conv2d(3, dim, 3, padding=1), nn.GELU(), nn.Conv2d(dim, dim, 1))
        self.grid = nn.Linear(grid_dim, dim) if grid_dim else None
        self.query = nn.Linear(query_dim, dim)

    def embed(self, pixel_values: torch.Tensor, grid: torch.Tensor | None = None) -> torch.Tensor:
        """Pixel embeddings ``[N, e, S, S]`` of N frames.

        Args:
            pixel_values: ``[N, 3, S, S]`` normalised mask-engine frames.
            grid: ``[N, h, w, d]`` their (adapted) vision grid, when the path has a grid input.
        """
        dtype = self.query.weight.dtype
        x = self.pixels(pixel_values.to(dtype))
        if self.grid is not None:
            if grid is None:
                raise ValueError("this PixelMaskPath reads the vision grid; pass grid [N, h, w, d]")
            g = self.grid(grid.to(dtype)).permute(0, 3, 1, 2)  # [N, e, h, w]
            x = x + F.interpolate(g, size=x.shape[-2:], mode="bilinear", align_corners=False)
        return x

    def forward(
        self, embeds: torch.Tensor, seg_states: torch.Tensor, video_index: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Mask logits of the path.

        Args:
            embeds: ``[V, T, e, S, S]`` pixel embeddings (`embed`) of every frame of V videos.
            seg_states: ``[B, D]`` the ``[SEG]`` state of each question.
            video_index: ``[B]`` the video of each question (default: question b, video b).

        Returns:
            ``[B, T, S, S]`` float32 logits.
        """
        V, T, e, H, W = embeds.shape
        B = seg_states.shape[0]
        if video_index is None:
            video_index = torch.arange(B)
        video_index = video_index.to(embeds.device)
        queries = self.query(seg_states.to(self.query.weight.dtype))  # [B, e]
        rows, slots = slots_by_video(video_index, V)
        packed = queries.new_zeros(V * slots, e).index_copy(0, rows, queries).view(V, slots, e)
        logits = torch.einsum("vse,vtehw->vsthw", packed, embeds.to(queries.dtype))  # [V, slots, T, S, S]
        return logits.reshape(V * slots, T, H, W)[rows].float()
