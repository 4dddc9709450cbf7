"""How many visual and motion tokens a clip becomes, shared by the processor and the model.

The processor expands ``<video>`` / ``<motion>`` to exactly these counts; the model checks that the
placeholders it finds match the features it computes (ValueError with both numbers otherwise).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from mora.configuration_mora import MoRAConfig


@dataclass(frozen=True)
class VisualLayout:
    """Token geometry of one backbone family.

    Attributes:
        backbone_family: ``"llava"`` or ``"qwen2_5_vl"``.
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

    def num_motion_tokens(self, num_input_frames: int) -> int:
        """N_m: ``<motion>`` placeholders: (T_llm - 1) * g * g, or 0 when switched off."""
        if not self.use_motion_tokens:
            return 0
        return (self.llm_frame_count(num_input_frames) - 1) * self.motion_grid**2


def sample_frame_indices(num_input_frames: int, num_frames: int) -> list[int]:
    """Uniformly spread indices of the frames the language model sees (all when there are few)."""
    if num_input_frames <= num_frames:
        return list(range(num_input_frames))
    return np.linspace(0, num_input_frames - 1, num_frames).round().astype(int).tolist()
