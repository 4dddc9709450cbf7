"""Mask engines: SAM-family mask decoders prompted by ``[SEG]`` embeddings (transformers Sam2/Sam classes)."""

from __future__ import annotations

from typing import Any

from transformers import AutoConfig, PreTrainedConfig, Sam2Config, Sam2VideoConfig, SamConfig

from mora.model.mask_engines.base import FrameFeatures, MaskEngine
from mora.model.mask_engines.configs import (
    PUBLISHED_NUM_PARAMETERS,
    sam2_1_hiera_large_config,
    sam2_1_hiera_tiny_config,
    sam_vit_h_config,
    tiny_sam2_config,
    tiny_sam_config,
)
from mora.model.mask_engines.sam2_engine import Sam2MaskEngine
from mora.model.mask_engines.sam_engine import SamMaskEngine

__all__ = [
    "PUBLISHED_NUM_PARAMETERS",
    "FrameFeatures",
    "MaskEngine",
    "Sam2MaskEngine",
    "SamMaskEngine",
    "build_mask_engine",
    "sam2_1_hiera_large_config",
    "sam2_1_hiera_tiny_config",
    "sam_vit_h_config",
    "tiny_sam2_config",
    "tiny_sam_config",
]


def build_mask_engine(config: Sam2VideoConfig | Sam2Config | SamConfig | dict[str, Any]) -> MaskEngine:
    """The engine for ``config``: SAM2 (``Sam2VideoConfig``/``Sam2Config``) or SAM v1 (``SamConfig``).

    A dict (e.g. a config read back from JSON) must carry its transformers ``model_type``.
    """
    if isinstance(config, dict):
        values = dict(config)
        model_type = values.pop("model_type", None)
        if model_type is None:
            raise ValueError("a mask-engine config dict needs a 'model_type' (sam2_video, sam2 or sam)")
        values.pop("transformers_version", None)
        config = AutoConfig.for_model(model_type, **values)
    if isinstance(config, (Sam2VideoConfig, Sam2Config)):
        return Sam2MaskEngine(config)
    if isinstance(config, SamConfig):
        return SamMaskEngine(config)
    kind = type(config).__name__ if isinstance(config, PreTrainedConfig) else repr(type(config))
    raise TypeError(f"no mask engine for {kind}; expected Sam2VideoConfig, Sam2Config or SamConfig")
