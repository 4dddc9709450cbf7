"""What the Qwen-VL families share: native video input patchified here (their video processors need
torchvision), 3-D M-RoPE positions from ``get_rope_index`` and per-frame features.

The language model reads the sampled frames as one Qwen video (temporal patches of ``temporal_patch_size``
frames, 2x2 spatial merge). Motion tokens are plain text positions for M-RoPE. Per-frame features for
motion tokens and the temporal head come from encoding each frame as its own one-frame video (the frame
repeated to fill a temporal patch). Subclasses name the vision-tower and projector modules and may add
inputs the language model reads beside the token embeddings (`QwenVLAdapter.language_model_kwargs`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from mora.model.backbones.base import BackboneAdapter, VisualFeatures
from mora.processing.visual_layout import mm_token_type_ids


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


@dataclass
class EncodedVideo:
    """Output of the Qwen vision tower for B videos of one grid.

    Attributes:
        tokens: ``[B, n, D]`` merged tokens at the language-model width (n = t * gh/m * gw/m).
        grid: (t, gh, gw) patch grid of each video.
        deepstack: Qwen3-VL: one ``[B, n, D]`` tensor per DeepStack layer (features of intermediate vision
            blocks, added to the language model's early hidden states); empty for other families.
    """

    tokens: torch.Tensor
    grid: tuple[int, int, int]
    deepstack: list[torch.Tensor]


class QwenVLAdapter(BackboneAdapter):
    """Shared adapter of the Qwen-VL families (the VLM is ``Qwen*VLForConditionalGeneration``)."""

    @property
    def _vision_config(self):
        return self.vlm.config.vision_config

    @property
    def motion_input_dim(self) -> int:
        return self._vision_config.out_hidden_size

    def _encode(self, videos: torch.Tensor) -> EncodedVideo:
        """``[B, T, 3, H, W]`` -> the tower's merged tokens (and DeepStack features) per video."""
        vc = self._vision_config
        visual = self.vlm.model.visual
        patches, grid = patchify_video(videos, vc.patch_size, vc.spatial_merge_size, vc.temporal_patch_size)
        B = videos.shape[0]
        grid_thw = torch.tensor([grid] * B, dtype=torch.long, device=videos.device)
        out = visual(patches.to(visual.dtype), grid_thw=grid_thw, return_dict=True)
        tokens = out.pooler_output.view(B, -1, out.pooler_output.shape[-1])
        deepstack = [f.view(B, -1, f.shape[-1]) for f in (getattr(out, "deepstack_features", None) or [])]
        return EncodedVideo(tokens=tokens, grid=grid, deepstack=deepstack)

    def frame_features(self, pixel_values: torch.Tensor) -> VisualFeatures:
        B, T, C, H, W = pixel_values.shape
        merge = self._vision_config.spatial_merge_size
        frames = pixel_values.reshape(B * T, 1, C, H, W)  # every frame its own one-frame video
        encoded = self._encode(frames)  # tokens [B*T, n, D]
        _, gh, gw = encoded.grid
        grid = encoded.tokens.view(B, T, gh // merge, gw // merge, -1)  # [B, T, h, w, D]
        return VisualFeatures(grid=grid, tokens=self.tokens_from_grid(grid))

    def tokens_from_grid(self, grid: torch.Tensor) -> torch.Tensor:
        return grid.flatten(2, 3)  # the merger already projects to the language-model width

    def video_tokens(self, pixel_values: torch.Tensor, features: VisualFeatures) -> torch.Tensor:
        return self._encode(pixel_values).tokens  # [B, N_v, D]

    def video_inputs(
        self, pixel_values: torch.Tensor, features: VisualFeatures
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        encoded = self._encode(pixel_values)
        return encoded.tokens, encoded.deepstack

    def _video_grid_thw(self, num_llm_frames: int, batch: int, device: torch.device) -> torch.Tensor:
        vc = self._vision_config
        gt = -(-num_llm_frames // vc.temporal_patch_size)
        g = self.image_size // vc.patch_size
        return torch.tensor([[gt, g, g]] * batch, dtype=torch.long, device=device)

    def position_ids(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, num_llm_frames: int
    ) -> torch.Tensor:
        """M-RoPE positions ``[3, B, L]`` (video tokens 3-D, everything else text)."""
        token_type = mm_token_type_ids(input_ids, self.vlm.config.video_token_id)
        grid_thw = self._video_grid_thw(num_llm_frames, input_ids.shape[0], input_ids.device)
        position_ids, _ = self.vlm.model.get_rope_index(
            input_ids, mm_token_type_ids=token_type, video_grid_thw=grid_thw, attention_mask=attention_mask
        )
        return position_ids

    def next_position_ids(self, position_ids: torch.Tensor | None, step: int) -> torch.Tensor:
        nxt = position_ids.max() + 1 + step
        return nxt.view(1, 1, 1).expand(3, 1, 1).to(position_ids.device)
