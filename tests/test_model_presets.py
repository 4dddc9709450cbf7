"""Real presets (config + meta-device parameter counts), config validation, no torchvision imports."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch

from mora import presets
from mora.configuration_mora import MoRAConfig
from mora.model.mask_engines import PUBLISHED_NUM_PARAMETERS
from mora.model.modeling_mora import MoRAForVideoGrounding


def _meta_model(config):
    with torch.device("meta"):
        return MoRAForVideoGrounding(config)


def _count(modules):
    return sum(p.numel() for m in modules for p in m.parameters())


def test_lisa_7b_sam_vit_h_parameter_counts():
    config = presets.lisa_7b_sam_vit_h()
    assert presets.WEIGHT_SOURCES["lisa_7b_sam_vit_h"]["vlm"] == "xinlai/LISA-7B-v1"
    assert config.seg_hidden_offset == -1 and config.mask_engine_kind == "sam" and not config.frame_prompts
    model = _meta_model(config)
    lm = _count([model.adapter.language_model, model.adapter.lm_head])
    assert lm == pytest.approx(6.74e9, rel=0.01)  # Llama-7B
    assert _count([model.vlm.model.vision_tower]) == pytest.approx(303.5e6, rel=0.01)  # CLIP ViT-L/14
    assert _count([model.mask_engine]) == pytest.approx(
        PUBLISHED_NUM_PARAMETERS["facebook/sam-vit-huge"], rel=0.01
    )
    assert model.seg_projector[2].out_features == 256


def test_qwen2_5_vl_7b_sam2_1_large_parameter_counts():
    config = presets.qwen2_5_vl_7b_sam2_1_large()
    model = _meta_model(config)
    assert _count([model.vlm]) == pytest.approx(8.29e9, rel=0.01)  # Qwen2.5-VL-7B-Instruct
    engine = PUBLISHED_NUM_PARAMETERS["facebook/sam2.1-hiera-large"]
    assert _count([model.mask_engine]) == pytest.approx(engine, rel=0.01)
    assert config.propagation == "memory"


def test_qwen3_vl_8b_sam2_1_large_parameter_counts():
    config = presets.qwen3_vl_8b_sam2_1_large()
    assert presets.WEIGHT_SOURCES["qwen3_vl_8b_sam2_1_large"]["vlm"] == "Qwen/Qwen3-VL-8B-Instruct"
    model = _meta_model(config)
    assert _count([model.vlm]) == pytest.approx(8.77e9, rel=0.01)  # Qwen3-VL-8B-Instruct
    assert _count([model.vlm.model.visual]) == pytest.approx(0.58e9, rel=0.02)  # ViT + mergers (DeepStack)
    assert len(model.vlm.model.visual.deepstack_merger_list) == 3
    engine = PUBLISHED_NUM_PARAMETERS["facebook/sam2.1-hiera-large"]
    assert _count([model.mask_engine]) == pytest.approx(engine, rel=0.01)
    assert config.propagation == "memory" and config.backbone_image_mean == (0.5, 0.5, 0.5)
    assert config.backbone_image_size % 32 == 0  # patch 16 x merge 2


def test_config_validation_names_the_bad_value():
    base = presets.tiny().to_dict()
    with pytest.raises(ValueError, match="propagation"):
        MoRAConfig.from_dict({**base, "propagation": "optical_flow"})
    with pytest.raises(ValueError, match="seg_hidden_offset"):
        MoRAConfig.from_dict({**base, "seg_hidden_offset": 3})
    with pytest.raises(ValueError, match="needs a vlm_config of model_type 'qwen2_5_vl', got 'llava'"):
        MoRAConfig.from_dict({**base, "backbone_family": "qwen2_5_vl"})
    with pytest.raises(ValueError, match="needs a vlm_config of model_type 'qwen3_vl', got 'qwen2_5_vl'"):
        MoRAConfig.from_dict({**presets.tiny("qwen2_5_vl").to_dict(), "backbone_family": "qwen3_vl"})


def test_no_module_imports_torchvision():
    root = Path(__file__).resolve().parents[1] / "mora"
    offenders = []
    for path in root.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            if any(n == "torchvision" or n.startswith("torchvision.") for n in names):
                offenders.append(str(path))
    assert not offenders


@pytest.mark.parametrize(("engine", "grid_stride"), [("sam2", 16), ("sam", 8)])
def test_tiny_mask_image_size_sets_the_engine_resolution(engine, grid_stride):
    from mora.processing.processing_mora import MoRAProcessor
    from mora.processing.tokenizer import build_tiny_tokenizer

    config = presets.tiny(mask_engine=engine, mask_image_size=128)
    assert config.backbone_image_size == presets.TINY_IMAGE_SIZE
    model = _meta_model(config)
    assert model.mask_engine.image_size == 128 and model.mask_engine.embedding_size == 128 // grid_stride
    processor = MoRAProcessor.from_config(config, build_tiny_tokenizer())
    pixel_values, mask_pixel_values, _ = processor.prepare_frames(
        torch.zeros(3, 48, 80, 3, dtype=torch.uint8).numpy()
    )
    assert pixel_values.shape[-2:] == (64, 64) and mask_pixel_values.shape[-2:] == (128, 128)
    with pytest.raises(ValueError, match="multiple of 32"):
        presets.tiny(mask_engine="sam2", mask_image_size=80)


@pytest.mark.parametrize("engine", ["sam", "sam2"])
def test_tiny_mask_decoder_layers(engine):
    default, one = presets.tiny(mask_engine=engine), presets.tiny(mask_engine=engine, mask_decoder_layers=1)
    assert default.mask_engine_config.mask_decoder_config.num_hidden_layers == 2  # the released models' depth
    model = _meta_model(one)
    decoder = model.mask_engine.model.mask_decoder
    assert len(decoder.transformer.layers) == 1
    assert not any(".transformer.layers.1." in n for n, _ in model.named_parameters())
    with pytest.raises(ValueError, match="mask_decoder_layers"):
        presets.tiny(mask_engine=engine, mask_decoder_layers=0)
