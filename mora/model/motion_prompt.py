"""`MotionDensePrompt`: per-frame dense motion prompts for the mask decoder.

The ``[SEG]`` prompt alone would have to encode which of several similar objects moves; the mask
decoder's own image embeddings carry no motion. This module builds, for every frame of a clip, a dense
prompt on the mask engine's image-embedding grid ``[C, h, w]`` from

* the differences of the frame's image embedding to the previous and to the next frame (the frames ``s``
  positions away with ``stride=s``, see ``MoRAForVideoGrounding.motion_stride``; zeros at the
  clip ends), and
* the raw RGB differences to the previous / next frame, area-downsampled to ``r*h x r*w`` and folded
  into ``3 * r * r`` channels per difference (``pixel_unshuffle``) so sub-cell detail survives,

through a small conv stack. The engine adds the result to its no-mask dense embedding
(`MaskEngine.decode(..., dense_embeds=...)`). The last conv is zero-initialised: at init the decoder
behaves exactly as without the module (pretrained SAM behaviour is unchanged).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

MAX_PIXEL_FOLD = 4  # r: raw differences are kept at up to 4x the embedding grid resolution


def neighbour_differences(x: torch.Tensor, stride: int = 1) -> torch.Tensor:
    """``[B, T, ...]`` -> ``[B, T, 2, ...]``: ``x[t] - x[t-s]`` and ``x[t+s] - x[t]``, zeros where the partner
    frame is outside the clip (s = ``stride``)."""
    if stride < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
    T = x.shape[1]
    s = min(stride, T)
    zero = torch.zeros_like(x[:, :s])
    step = x[:, s:] - x[:, : T - s]  # [B, T-s, ...]
    prev = torch.cat([zero, step], dim=1)
    nxt = torch.cat([step, zero], dim=1)
    return torch.stack([prev, nxt], dim=2)


class MotionDensePrompt(nn.Module):
    """Dense motion prompts ``[B, T, C, h, w]`` from image embeddings and frames of a clip.

    Args:
        embed_dim: C, channels of the engine's image embedding (= its prompt dim).
        grid: h = w, the side of the image-embedding grid.
        image_size: S, side of the mask-engine frames.
        hidden_dim: width of the conv stack.
    """

    def __init__(self, embed_dim: int, grid: int, image_size: int, hidden_dim: int = 128) -> None:
        super().__init__()
        self.embed_dim, self.grid, self.image_size = int(embed_dim), int(grid), int(image_size)
        self.fold = max(1, min(MAX_PIXEL_FOLD, self.image_size // self.grid))
        in_dim = 2 * embed_dim + 2 * 3 * self.fold * self.fold
        self.net = nn.Sequential(
            nn.Conv2d(in_dim, hidden_dim, 3, padding=1),
            nn.GELU(),
            nn.Conv2d(hidden_dim, hidden_dim, 3, padding=1),
            nn.GELU(),
            nn.Conv2d(hidden_dim, embed_dim, 1),
        )
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """PyTorch's default conv init, then zeros in the output layer (no effect on the decoder at init)."""
        for layer in self.net:
            if isinstance(layer, nn.Conv2d):
                layer.reset_parameters()
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)

    def forward(
        self,
        image_embeds: torch.Tensor,
        pixel_values: torch.Tensor,
        stride: int = 1,
        return_hidden: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Dense prompts of every frame.

        Args:
            image_embeds: ``[B, T, C, h, w]`` the engine's per-frame image embeddings (``maps[-1]``).
            pixel_values: ``[B, T, 3, S, S]`` the normalised mask-engine frames.
            stride: s; frame t is compared with frames t - s and t + s.
            return_hidden: also return the conv stack's last hidden features ``[B, T, hidden_dim, h, w]``
                (per-cell motion features, e.g. for `SegCorrelationPrompt`).

        Returns:
            ``[B, T, C, h, w]`` in the module's dtype (and the hidden features with ``return_hidden``).
        """
        B, T, C, h, w = image_embeds.shape
        if (C, h, w) != (self.embed_dim, self.grid, self.grid):
            raise ValueError(
                f"image_embeds must be [B, T, {self.embed_dim}, {self.grid}, {self.grid}], "
                f"got {list(image_embeds.shape)}"
            )
        if pixel_values.shape[:2] != (B, T) or pixel_values.shape[2] != 3:
            raise ValueError(f"pixel_values must be [B={B}, T={T}, 3, S, S], got {list(pixel_values.shape)}")
        dtype = self.net[0].weight.dtype
        # embedding scales differ between engines: each frame's embedding is divided by its own RMS (a
        # per-frame statistic, so a frame's prompt does not depend on which other frames were given)
        embeds = image_embeds.float()
        embeds = embeds / embeds.pow(2).mean(dim=(2, 3, 4), keepdim=True).sqrt().clamp_min(1e-6)
        emb = neighbour_differences(embeds.to(dtype), stride).flatten(2, 3).flatten(0, 1)  # [BT, 2C, h, w]
        size = (h * self.fold, w * self.fold)
        pix = F.adaptive_avg_pool2d(pixel_values.to(dtype).flatten(0, 1), size).view(B, T, 3, *size)
        pix = neighbour_differences(pix, stride).flatten(2, 3).flatten(0, 1)  # [BT, 6, r*h, r*w]
        pix = F.pixel_unshuffle(pix, self.fold)  # [BT, 6*r*r, h, w]
        hidden = self.net[:-1](torch.cat([emb, pix], dim=1))  # [BT, hidden_dim, h, w]
        out = self.net[-1](hidden).reshape(B, T, C, h, w)
        return (out, hidden.reshape(B, T, -1, h, w)) if return_hidden else out
