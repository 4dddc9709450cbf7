"""`VideoDensePrompt`: the video adapter's space-time grid as a dense prompt of the mask decoder.

A SAM-family image encoder sees one frame; the adapter's grid knows, per cell and frame, what is there
and how it moves in the clip. Projected to the engine's prompt width and resized to its image-embedding
grid, it is added to the no-mask dense embedding (`MaskEngine.decode(..., dense_embeds=...)`), so the
decoder's ``[SEG]`` token can pick the cells of the object the question singles out. The output layer is
zero-initialised: pretrained SAM behaviour is unchanged at init.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class VideoDensePrompt(nn.Module):
    """``grid [V, T, h, w, d]`` -> dense prompts ``[V*T, C, h_e, w_e]``.

    Args:
        in_dim: d, channels of the (adapted) vision grid.
        prompt_dim: C, the engine's prompt / image-embedding width.
        embedding_size: h_e = w_e, the side of the engine's image-embedding grid.
    """

    def __init__(self, in_dim: int, prompt_dim: int, embedding_size: int) -> None:
        super().__init__()
        self.embedding_size = int(embedding_size)
        self.norm = nn.LayerNorm(in_dim)
        self.proj = nn.Sequential(nn.Linear(in_dim, prompt_dim), nn.GELU(), nn.Linear(prompt_dim, prompt_dim))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.zeros_(self.proj[-1].weight)
        nn.init.zeros_(self.proj[-1].bias)

    def forward(self, grid: torch.Tensor) -> torch.Tensor:
        V, T, h, w, d = grid.shape
        dtype = self.norm.weight.dtype
        x = self.proj(self.norm(grid.to(dtype)))  # [V, T, h, w, C]
        x = x.flatten(0, 1).permute(0, 3, 1, 2)  # [V*T, C, h, w]
        size = self.embedding_size
        if (h, w) != (size, size):
            x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
        return x.contiguous()
