"""Qwen2.5-VL family: native video input, patchified here (its video processor needs torchvision).

The language model reads the sampled frames as one Qwen video (temporal patches of
``temporal_patch_size`` frames, 2x2 spatial merge, 3-D M-RoPE positions). Motion tokens are plain text
positions for M-RoPE. Per-frame features for motion tokens and the temporal head come from encoding each
frame as its own one-frame video (the frame repeated to fill a temporal patch).
"""

from __future__ import annotations

import torch
from torch import nn

from mora.model.backbones.base import BackboneAdapter, VisualFeatures

VIDEO_TOKEN_TYPE = 2  # Qwen's mm_token_type_ids value for video tokens


def patchify_video(
    videos: torch.Tensor, patch_size: int, merge_size: int, temporal_patch_size: int
) -> tuple[torch.Tensor, tuple[int, int, int]]:
    """Flatten normalised frames into Qwen's patch layout.

    Args:
        videos: ``[B, T, 3, H, W]``; H and W multiples of ``patch_size * merge_size``.

    Returns:
        patches ``[B * t * gh * gw, 3 * temporal_patch_size * patch_size**2]`` and the grid (t, gh, gw)
        where t = ceil(T / temporal_patch_size) (the last frame is repeated to fill the last patch).
    """
    B, T, C, H, W = videos.shape
    if H % (patch_size * merge_size) or W % (patch_size * merge_size):
        raise ValueError(f"frame size {H}x{W} is not a multiple of patch {patch_size} x merge {merge_size}")
    if pad := -T % temporal_patch_size:
        videos = torch.cat([videos, videos[:, -1:].expand(-1, pad, -1, -1, -1)], dim=1)
        T += pad
    gt, gh, gw = T // temporal_patch_size, H // patch_size, W // patch_size
    patches = videos.reshape(
        B,
        gt,
        temporal_patch_size,
        C,
        gh // merge_size,
        merge_size,
        patch_size,
        gw // merge_size,
        merge_size,
        patch_size,
    )
    patches = patches.permute(0, 1, 4, 7, 5, 8, 3, 2, 6, 9)  # [B, t, gh/m, gw/m, m, m, C, tp, p, p]
    patches = patches.reshape(B * gt * gh * gw, C * temporal_patch_size * patch_size * patch_size)
    return patches, (gt, gh, gw)


class Qwen25VLAdapter(BackboneAdapter):
    """Adapter for ``Qwen2_5_VLForConditionalGeneration``."""

    @property
    def _vision_config(self):
        return self.vlm.config.vision_config

    @property
    def motion_input_dim(self) -> int:
        return self._vision_config.out_hidden_size

    def vision_modules(self) -> list[nn.Module]:
        visual = self.vlm.model.visual
        return [visual.patch_embed, visual.blocks]

    def projector_modules(self) -> list[nn.Module]:
        return [self.vlm.model.visual.merger]

    def _encode(self, videos: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int, int]]:
        """``[B, T, 3, H, W]`` -> merged tokens ``[B, t * gh/m * gw/m, D]`` and the grid (t, gh, gw)."""
        vc = self._vision_config
        visual = self.vlm.model.visual
        patches, grid = patchify_video(videos, vc.patch_size, vc.spatial_merge_size, vc.temporal_patch_size)
        B = videos.shape[0]
        grid_thw = torch.tensor([grid] * B, dtype=torch.long, device=videos.device)
        out = visual(patches.to(visual.dtype), grid_thw=grid_thw, return_dict=True)
        return out.pooler_output.view(B, -1, out.pooler_output.shape[-1]), grid

    def frame_features(self, pixel_values: torch.Tensor) -> VisualFeatures:
        B, T, C, H, W = pixel_values.shape
        merge = self._vision_config.spatial_merge_size
        frames = pixel_values.reshape(B * T, 1, C, H, W)  # every frame its own one-frame video
        merged, (_, gh, gw) = self._encode(frames)  # [B*T, n, D]
        h, w = gh // merge, gw // merge
        grid = merged.view(B, T, h, w, -1)  # [B, T, h, w, D]
        return VisualFeatures(grid=grid, tokens=self.tokens_from_grid(grid))

    def tokens_from_grid(self, grid: torch.Tensor) -> torch.Tensor:
        return grid.flatten(2, 3)  # the merger already projects to the language-model width

    def video_tokens(self, pixel_values: torch.Tensor, features: VisualFeatures) -> torch.Tensor:
        tokens, _ = self._encode(pixel_values)  # [B, N_v, D]
        return tokens

    def _video_grid_thw(self, num_llm_frames: int, batch: int, device: torch.device) -> torch.Tensor:
        vc = self._vision_config
        gt = -(-num_llm_frames // vc.temporal_patch_size)
        g = self.image_size // vc.patch_size
        return torch.tensor([[gt, g, g]] * batch, dtype=torch.long, device=device)

    def position_ids(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, num_llm_frames: int
    ) -> torch.Tensor:
        """M-RoPE positions ``[3, B, L]`` (video tokens 3-D, everything else text)."""
        token_type = (input_ids == self.vlm.config.video_token_id).to(torch.int) * VIDEO_TOKEN_TYPE
        grid_thw = self._video_grid_thw(num_llm_frames, input_ids.shape[0], input_ids.device)
        position_ids, _ = self.vlm.model.get_rope_index(
            input_ids, mm_token_type_ids=token_type, video_grid_thw=grid_thw, attention_mask=attention_mask
        )
        return position_ids

    def next_position_ids(self, position_ids: torch.Tensor | None, step: int) -> torch.Tensor:
        nxt = position_ids.max() + 1 + step
        return nxt.view(1, 1, 1).expand(3, 1, 1).to(position_ids.device)
