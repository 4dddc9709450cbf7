"""Qwen2.5-VL family: native video input (3-D M-RoPE over temporal patches; `QwenVLAdapter`)."""

from __future__ import annotations

from torch import nn

from mora.model.backbones.qwen_common import QwenVLAdapter


class Qwen25VLAdapter(QwenVLAdapter):
    """Adapter for ``Qwen2_5_VLForConditionalGeneration`` (window-attention vision tower, one merger)."""

    def vision_modules(self) -> list[nn.Module]:
        visual = self.vlm.model.visual
        return [visual.patch_embed, visual.blocks]

    def projector_modules(self) -> list[nn.Module]:
        return [self.vlm.model.visual.merger]
