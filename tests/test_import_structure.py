"""One-way dependencies: processing never imports the model; its mask-engine frame settings come from the config."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mora.model.mask_engines import build_mask_engine
from mora.presets import lisa_7b_sam_vit_h, qwen2_5_vl_7b_sam2_1_large, qwen3_vl_8b_sam2_1_large, tiny
from mora.processing.image_ops import mask_engine_frame_settings

REPO = Path(__file__).resolve().parents[1]


def test_processing_does_not_import_the_model():
    code = (
        "import sys, mora.processing, mora.processing.processing_mora, mora.processing.image_ops; "
        "print(sorted(m for m in sys.modules if m.startswith(('mora.model', 'mora.presets', 'mora.training'))))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"


@pytest.mark.parametrize(
    "make_config",
    [
        lambda: tiny("llava", "sam2"),
        lambda: tiny("llava", "sam"),
        lambda: tiny("llava", "sam2", mask_image_size=128),
        lisa_7b_sam_vit_h,
        qwen2_5_vl_7b_sam2_1_large,
        qwen3_vl_8b_sam2_1_large,
    ],
    ids=[
        "tiny_sam2",
        "tiny_sam",
        "tiny_sam2_128",
        "lisa_sam_vit_h",
        "qwen_sam2_1_large",
        "qwen3_sam2_1_large",
    ],
)
def test_mask_engine_frame_settings_match_the_engine(make_config):
    config = make_config()
    settings = mask_engine_frame_settings(config.mask_engine_config)
    with torch.device("meta"):
        engine = build_mask_engine(config.mask_engine_config)
    assert settings.image_size == engine.image_size
    assert settings.resize_mode == engine.resize_mode
    assert settings.image_mean == engine.image_mean and settings.image_std == engine.image_std
