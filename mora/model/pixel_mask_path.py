"""`PixelMaskPath`: a high-resolution mask path beside the mask engine's decoder.

A SAM-family decoder upsamples its image-embedding grid (S/16 for real SAM, 8x8 for the tiny engine) to
masks, and its output token lives in a small space (C/8 channels). Where objects are a few grid cells
large, separating neighbours needs per-pixel evidence. This path embeds every pixel of every frame at the
engine's full input resolution S from the frame's pixels (a 3x3 conv), the engine's image embedding and the
(adapted) vision grid, both upsampled, and adds to the engine's logits the dot product of those embeddings
with a query from the ``[SEG]`` prompt:

    logits_{b,t} = engine_{b,t} + < Q p_b , E_{v(b),t} >          E: [V, T, e, S, S] per video frame

The query layer is zero-initialised, so the engine's masks are unchanged at init. Pixel embeddings are
computed once per video frame and read by all of its questions.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mora.model.packing import slots_by_video


class PixelMaskPath(nn.Module):
    """Per-pixel embeddings of frames and their dot product with ``[SEG]`` prompt queries.

    Args:
        prompt_dim: C, the engine's prompt width (the ``[SEG]`` prompt and the image-embedding channels).
        grid_dim: d, channels of the vision grid (0: no grid input).
        dim: e, width of the pixel embeddings.
    """

    def __init__(self, prompt_dim: int, grid_dim: int, dim: int) -> None:
        super().__init__()
        self.dim = dim
        self.pixels = nn.Conv2d(3, dim, 3, padding=1)
        self.engine = nn.Conv2d(prompt_dim, dim, 1)
        self.grid = nn.Linear(grid_dim, dim) if grid_dim else None
        self.mix = nn.Sequential(nn.GELU(), nn.Conv2d(dim, dim, 1))
        self.query = nn.Linear(prompt_dim, dim)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.zeros_(self.query.weight)
        nn.init.zeros_(self.query.bias)

    def embed(
        self, pixel_values: torch.Tensor, image_embeds: torch.Tensor, grid: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Pixel embeddings ``[N, e, S, S]`` of N frames.

        Args:
            pixel_values: ``[N, 3, S, S]`` normalised mask-engine frames.
            image_embeds: ``[N, C, h, w]`` the engine's image embeddings of the same frames.
            grid: ``[N, h', w', d]`` their (adapted) vision grid, when the path has a grid input.
        """
        dtype = self.pixels.weight.dtype
        size = pixel_values.shape[-2:]
        x = self.pixels(pixel_values.to(dtype))
        x = x + F.interpolate(
            self.engine(image_embeds.to(dtype)), size=size, mode="bilinear", align_corners=False
        )
        if self.grid is not None:
            if grid is None:
                raise ValueError("this PixelMaskPath reads the vision grid; pass grid [N, h, w, d]")
            g = self.grid(grid.to(dtype)).permute(0, 3, 1, 2)  # [N, e, h', w']
            x = x + F.interpolate(g, size=size, mode="bilinear", align_corners=False)
        return self.mix(x)

    def forward(
        self, embeds: torch.Tensor, prompts: torch.Tensor, video_index: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Mask logits of the path.

        Args:
            embeds: ``[V, T, e, S, S]`` pixel embeddings (`embed`) of every frame of V videos.
            prompts: ``[B, C]`` the ``[SEG]`` prompt of each question.
            video_index: ``[B]`` the video of each question (default: question b, video b).

        Returns:
            ``[B, T, S, S]`` float32 logits.
        """
        V, T, e, H, W = embeds.shape
        B = prompts.shape[0]
        if video_index is None:
            video_index = torch.arange(B)
        video_index = video_index.to(embeds.device)
        queries = self.query(prompts.to(self.query.weight.dtype))  # [B, e]
        rows, slots = slots_by_video(video_index, V)
        packed = queries.new_zeros(V * slots, e).index_copy(0, rows, queries).view(V, slots, e)
        logits = torch.einsum("vse,vtehw->vsthw", packed, embeds.to(queries.dtype))  # [V, slots, T, S, S]
        return logits.reshape(V * slots, T, H, W)[rows].float()
