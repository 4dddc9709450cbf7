"""How many visual and motion tokens a clip becomes, shared by the processor and the model.

The processor expands ``<video>`` / ``<motion>`` to exactly these counts; the model checks that the
placeholders it finds match the features it computes (ValueError with both numbers otherwise).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch

from mora.configuration_mora import MoRAConfig


@dataclass(frozen=True)
class VisualLayout:
    """Token geometry of one backbone family.

    Attributes:
        backbone_family: ``"llava"``, ``"qwen2_5_vl"`` or ``"qwen3_vl"``.
        image_size: side of the square backbone frames.
        patch_size: vision-tower patch side.
        drop_cls: LLaVA ``vision_feature_select_strategy == "default"`` (the CLS token is dropped).
        spatial_merge_size: Qwen patch merger (2x2 patches -> one token); 1 for LLaVA.
        temporal_patch_size: Qwen frames per temporal patch; 1 for LLaVA.
        num_frames: frames the language model sees at most.
        use_motion_tokens: whether motion tokens are fed.
        motion_grid: g (g*g motion tokens per consecutive-frame difference).
        video_pooling: LLaVA video tokens, ``"videochatgpt"`` or ``"frame_grid"`` (`MoRAConfig`).
        video_pool_grid: p of ``"frame_grid"`` (p*p tokens per frame).
        frame_rate: Qwen3-VL: frames per second of the clips given to the processor, for the timestamps of
            its video prompt (``<t seconds>`` before each temporal patch); 2.0 is the rate Qwen3-VL's own
            video processor samples at.
    """

    backbone_family: str
    image_size: int
    patch_size: int
    drop_cls: bool
    spatial_merge_size: int
    temporal_patch_size: int
    num_frames: int
    use_motion_tokens: bool
    motion_grid: int
    video_pooling: str = "videochatgpt"
    video_pool_grid: int = 4
    frame_rate: float = 2.0

    @classmethod
    def from_config(cls, config: MoRAConfig) -> VisualLayout:
        vision = config.vlm_config.vision_config
        if config.backbone_family == "llava":
            return cls(
                backbone_family="llava",
                image_size=config.backbone_image_size,
                patch_size=vision.patch_size,
                drop_cls=config.vlm_config.vision_feature_select_strategy == "default",
                spatial_merge_size=1,
                temporal_patch_size=1,
                num_frames=config.num_frames,
                use_motion_tokens=config.use_motion_tokens,
                motion_grid=config.motion_grid,
                video_pooling=config.video_pooling,
                video_pool_grid=config.video_pool_grid,
            )
        return cls(
            backbone_family=config.backbone_family,
            image_size=config.backbone_image_size,
            patch_size=vision.patch_size,
            drop_cls=False,
            spatial_merge_size=vision.spatial_merge_size,
            temporal_patch_size=vision.temporal_patch_size,
            num_frames=config.num_frames,
            use_motion_tokens=config.use_motion_tokens,
            motion_grid=config.motion_grid,
        )

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def patches_per_side(self) -> int:
        return self.image_size // self.patch_size

    def llm_frame_count(self, num_input_frames: int) -> int:
        """Frames the language model sees for a clip of ``num_input_frames`` frames."""
        return min(num_input_frames, self.num_frames)

    def num_video_tokens(self, num_input_frames: int) -> int:
        """N_v: ``<video>`` placeholders for a clip of ``num_input_frames`` frames."""
        t = self.llm_frame_count(num_input_frames)
        side = self.patches_per_side
        if self.backbone_family == "llava":
            if self.video_pooling == "frame_grid":  # every frame's grid pooled to p x p
                return t * min(self.video_pool_grid, side) ** 2
            # Video-ChatGPT pooling: temporal mean per spatial token + spatial mean per frame
            return side * side + t
        grid_t = -(-t // self.temporal_patch_size)
        merged_side = side // self.spatial_merge_size
        return grid_t * merged_side * merged_side

    def video_segments(self, num_input_frames: int) -> list[tuple[str | None, int]]:
        """How the ``<video>`` placeholders are grouped in the prompt: (label, count) per group.

        Qwen3-VL: one group per temporal patch, labelled with its timestamp as Qwen3-VL's processor writes
        it (``"<1.2 seconds>"``: the mean time of the patch's first and last frame, the frames being the
        ones the language model sees, at `frame_rate`); the other families: one unlabelled group.
        """
        total = self.num_video_tokens(num_input_frames)
        if self.backbone_family != "qwen3_vl":
            return [(None, total)]
        indices = sample_frame_indices(num_input_frames, self.num_frames)
        patch = self.temporal_patch_size
        indices += [indices[-1]] * (-len(indices) % patch)  # the last frame fills the last patch
        groups = [indices[i : i + patch] for i in range(0, len(indices), patch)]
        per_group = total // len(groups)
        seconds = [(g[0] / self.frame_rate + g[-1] / self.frame_rate) / 2 for g in groups]  # as Qwen computes
        return [(f"<{t:.1f} seconds>", per_group) for t in seconds]

    def num_motion_tokens(self, num_input_frames: int) -> int:
        """N_m: ``<motion>`` placeholders: (T_llm - 1) * g * g, or 0 when switched off."""
        if not self.use_motion_tokens:
            return 0
        return (self.llm_frame_count(num_input_frames) - 1) * self.motion_grid**2


VIDEO_TOKEN_TYPE = 2  # Qwen's mm_token_type_ids value for video tokens (0 text, 1 image)


def mm_token_type_ids(input_ids: torch.Tensor, video_token_id: int) -> torch.Tensor:
    """``[B, L]`` int: Qwen's modality of every token (2 at the ``<video>`` placeholders, 0 elsewhere)."""
    return (input_ids == video_token_id).to(torch.int) * VIDEO_TOKEN_TYPE


def sample_frame_indices(num_input_frames: int, num_frames: int) -> list[int]:
    """Uniformly spread indices of the frames the language model sees (all when there are few)."""
    if num_input_frames <= num_frames:
        return list(range(num_input_frames))
    return np.linspace(0, num_input_frames - 1, num_frames).round().astype(int).tolist()
