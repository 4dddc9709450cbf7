"""A MoRA checkpoint folder from transformers-format base checkpoints of a real preset's parts.

The Qwen presets start from the published VLM (``Qwen/Qwen3-VL-8B-Instruct``, ``Qwen/Qwen2.5-VL-7B-Instruct``)
and SAM2.1 (``facebook/sam2.1-hiera-large``) as transformers ships them: no key conversion is needed, only
putting them together with MoRA's fresh heads and the VLM's tokenizer with ``[SEG]``/``[LOC]``/``<video>``/
``<motion>`` added (the new tokens take unused rows of Qwen's padded embedding matrix, or added rows when
the tokenizer outgrows it)::

    mora assemble --preset qwen3_vl_8b_sam2_1_large --vlm pretrain_weights/qwen3-vl-8b-instruct \\
        --mask-engine pretrain_weights/sam2.1-hiera-large --out pretrain_weights/mora_qwen3_vl_8b_sam2_1_large

The result is what the recipes in ``train/configs`` name as ``model.pretrained``; `MoRAForVideoGrounding.
from_pretrained` loads it. The published architecture must match the preset's (sizes are compared and
every difference is named); the checkpoint's own config is kept (its exact RoPE and norm settings).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from transformers import AutoTokenizer, PretrainedConfig

from mora.configuration_mora import MoRAConfig
from mora.model.backbones import _VLM_CLASSES
from mora.model.mask_engines import Sam2MaskEngine, SamMaskEngine
from mora.model.modeling_mora import MoRAForVideoGrounding
from mora.presets import PRESETS
from mora.processing.image_ops import mask_engine_frame_settings
from mora.processing.processing_mora import MoRAProcessor
from mora.utils.io import atomic_path
from mora.utils.logging import get_logger

logger = get_logger("assemble")

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
# architecture fields compared between the preset and the checkpoint (where the config has them)
_TEXT_FIELDS = (
    "hidden_size",
    "intermediate_size",
    "num_hidden_layers",
    "num_attention_heads",
    "num_key_value_heads",
    "head_dim",
)
_VISION_FIELDS = (
    "hidden_size",
    "intermediate_size",
    "depth",
    "num_hidden_layers",
    "num_heads",
    "num_attention_heads",
    "patch_size",
    "spatial_merge_size",
    "temporal_patch_size",
    "out_hidden_size",
    "num_position_embeddings",
    "deepstack_visual_indexes",
    "image_size",
)


class AssembleError(ValueError):
    """The base checkpoints do not fit the preset (one line naming what differs)."""


def architecture_differences(expected: PretrainedConfig, found: PretrainedConfig) -> list[str]:
    """``"text_config.hidden_size: preset 4096, checkpoint 3584"`` for every architecture field that differs."""
    if expected.model_type != found.model_type:
        return [f"model_type: preset {expected.model_type!r}, checkpoint {found.model_type!r}"]
    out = []
    for sub, fields in (("text_config", _TEXT_FIELDS), ("vision_config", _VISION_FIELDS)):
        a, b = getattr(expected, sub, None), getattr(found, sub, None)
        if a is None or b is None:
            continue
        for field in fields:
            if field in a.to_dict() and field in b.to_dict():
                x, y = getattr(a, field), getattr(b, field)
                if (list(x) if isinstance(x, (list, tuple)) else x) != (
                    list(y) if isinstance(y, (list, tuple)) else y
                ):
                    out.append(f"{sub}.{field}: preset {x}, checkpoint {y}")
    return out


def assemble(
    preset: str | MoRAConfig,
    vlm: str | os.PathLike,
    mask_engine: str | os.PathLike,
    out: str | os.PathLike | None = None,
    *,
    dtype: str = "bfloat16",
    preset_kwargs: dict[str, Any] | None = None,
) -> MoRAForVideoGrounding:
    """Build preset ``preset`` around the base weights in ``vlm`` and ``mask_engine`` (folders or Hub ids).

    Args:
        preset: a real preset of `mora.presets.PRESETS` (e.g. ``"qwen3_vl_8b_sam2_1_large"``), or a
            `MoRAConfig` (e.g. a tiny one in tests).
        vlm: transformers checkpoint of the preset's VLM class, with its tokenizer.
        mask_engine: transformers ``Sam2VideoModel`` / ``Sam2Model`` (SAM2 presets) or ``SamModel`` folder.
        out: write the MoRA folder here (atomically) when given.
        dtype: ``"float32"``, ``"bfloat16"`` or ``"float16"`` for the whole model.
        preset_kwargs: keyword arguments of the preset function (e.g. ``num_frames``).

    Raises:
        AssembleError: unknown preset or dtype, or an architecture that differs from the preset's.
    """
    if dtype not in DTYPES:
        raise AssembleError(f"dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
    if isinstance(preset, MoRAConfig):
        config, preset = MoRAConfig.from_dict(preset.to_dict()), "given config"
    elif preset in PRESETS and preset not in ("tiny", "small"):
        config = PRESETS[preset](**(preset_kwargs or {}))
    else:
        real = sorted(p for p in PRESETS if p not in ("tiny", "small"))
        raise AssembleError(f"unknown real preset {preset!r}; expected one of {real}")
    vlm_class = _VLM_CLASSES[config.vlm_config.model_type]
    logger.info("loading %s from %s", vlm_class.__name__, vlm)
    vlm_model = vlm_class.from_pretrained(str(vlm), dtype=DTYPES[dtype])
    if diff := architecture_differences(config.vlm_config, vlm_model.config):
        raise AssembleError(f"{vlm} is not the {preset} backbone: {'; '.join(diff)}")
    config.vlm_config = vlm_model.config
    engine_class = SamMaskEngine if config.mask_engine_kind == "sam" else Sam2MaskEngine
    logger.info("loading %s from %s", engine_class.model_class.__name__, mask_engine)
    engine = engine_class.from_pretrained(str(mask_engine), dtype=DTYPES[dtype])
    expected = mask_engine_frame_settings(config.mask_engine_config).image_size
    if engine.image_size != expected:
        raise AssembleError(
            f"{mask_engine} works at {engine.image_size} px but the {preset} mask engine at {expected} px"
        )
    config.mask_engine_config = engine.config
    tokenizer = AutoTokenizer.from_pretrained(str(vlm), trust_remote_code=False)
    processor = MoRAProcessor.from_config(config, tokenizer)
    processor.apply_token_ids(config)
    model = MoRAForVideoGrounding(config, vlm=vlm_model, mask_engine=engine)
    if len(tokenizer) > model.get_input_embeddings().weight.shape[0]:
        model.resize_token_embeddings(len(tokenizer))
    model.to(DTYPES[dtype])
    model.processor = processor
    if out is not None:
        out = Path(out)
        with atomic_path(out) as tmp:
            model.save_pretrained(tmp)
        logger.info("wrote %s (%s + %s) to %s", preset, vlm, mask_engine, out)
    return model
