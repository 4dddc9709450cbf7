"""Qwen3-VL family: native video input with timestamps, and DeepStack visual features.

Differences from Qwen2.5-VL that MoRA handles (transformers' ``Qwen3VLForConditionalGeneration``):

* The prompt gives every temporal patch (``temporal_patch_size`` frames) its own
  ``<t seconds><|vision_start|> video tokens <|vision_end|>`` group (`VisualLayout.video_segments`, built
  by the processor); ``get_rope_index`` splits the video grid into one-frame grids, so each group starts
  its own 3-D position block and time is told by the timestamp text.
* DeepStack: the vision tower also returns merged features of intermediate blocks
  (``deepstack_visual_indexes``); the language model adds the k-th of them to the hidden states of the
  video positions after its k-th decoder layer (``visual_pos_masks`` / ``deepstack_visual_embeds``).
* A learned, interpolated position embedding in the vision tower (``pos_embed``), no window attention.
"""

from __future__ import annotations

import torch
from torch import nn

from mora.model.backbones.qwen_common import QwenVLAdapter


class Qwen3VLAdapter(QwenVLAdapter):
    """Adapter for ``Qwen3VLForConditionalGeneration``."""

    def vision_modules(self) -> list[nn.Module]:
        visual = self.vlm.model.visual
        return [visual.patch_embed, visual.pos_embed, visual.blocks]

    def projector_modules(self) -> list[nn.Module]:
        visual = self.vlm.model.visual
        return [visual.merger, visual.deepstack_merger_list]

    def language_model_kwargs(self, video_mask: torch.Tensor, layer_features: list[torch.Tensor]) -> dict:
        """DeepStack inputs of the decoder: the video positions ``[B, L]`` and, per DeepStack layer, the
        features of those positions in row-major order (``[B * N_v, D]``; every row holds N_v video tokens)."""
        if not layer_features:
            return {}
        return {
            "visual_pos_masks": video_mask,
            "deepstack_visual_embeds": [f.reshape(-1, f.shape[-1]) for f in layer_features],
        }
