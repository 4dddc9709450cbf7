"""Backbone adapters: family-specific glue around transformers VLMs."""

from __future__ import annotations

from transformers import (
    LlavaForConditionalGeneration,
    PreTrainedModel,
    Qwen2_5_VLForConditionalGeneration,
    Qwen3VLForConditionalGeneration,
)

from mora.model.backbones.base import BackboneAdapter, VisualFeatures
from mora.model.backbones.llava import LlavaAdapter
from mora.model.backbones.qwen2_5_vl import Qwen25VLAdapter
from mora.model.backbones.qwen3_vl import Qwen3VLAdapter

_ADAPTERS = {"llava": LlavaAdapter, "qwen2_5_vl": Qwen25VLAdapter, "qwen3_vl": Qwen3VLAdapter}
_VLM_CLASSES = {
    "llava": LlavaForConditionalGeneration,
    "qwen2_5_vl": Qwen2_5_VLForConditionalGeneration,
    "qwen3_vl": Qwen3VLForConditionalGeneration,
}


def build_vlm(vlm_config) -> PreTrainedModel:
    """The transformers VLM for a backbone config (random weights; load weights afterwards)."""
    return _VLM_CLASSES[vlm_config.model_type](vlm_config)


def build_adapter(family: str, vlm: PreTrainedModel, image_size: int, **options) -> BackboneAdapter:
    """The adapter of ``family``; ``options`` are family-specific (LLaVA: ``video_pooling``,
    ``video_pool_grid``)."""
    if family not in _ADAPTERS:
        raise ValueError(f"unknown backbone family {family!r}; expected one of {sorted(_ADAPTERS)}")
    return _ADAPTERS[family](vlm, image_size, **options)


__all__ = ["BackboneAdapter", "VisualFeatures", "build_adapter", "build_vlm"]
