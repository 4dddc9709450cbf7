"""Model presets as functions returning a validated `MoRAConfig`.

* ``tiny(backbone, mask_engine)``: seconds on CPU (tests, the learning benchmark, ``bash run.sh``).
* ``small()``: a mid-size random model for step-time benchmarks.
* ``lisa_7b_sam_vit_h()``: the paper's setting: LISA-7B (Llama-7B, CLIP ViT-L/14 224) + SAM ViT-H.
* ``qwen2_5_vl_7b_sam2_1_large()``: Qwen2.5-VL-7B-Instruct + SAM2.1 Hiera-L.
* ``qwen3_vl_8b_sam2_1_large()``: Qwen3-VL-8B-Instruct (DeepStack, timestamped video) + SAM2.1 Hiera-L.

Real presets name the Hub ids of their weights in ``WEIGHT_SOURCES``; they build configs only (weights
are loaded or converted separately). Tiny presets carry the ids of the offline tiny tokenizer; real ones
get theirs from the processor (`MoRAProcessor.apply_token_ids`).
"""

from __future__ import annotations

from transformers import (
    CLIPVisionConfig,
    LlamaConfig,
    LlavaConfig,
    PreTrainedTokenizerBase,
    Qwen2_5_VLConfig,
    Qwen3VLConfig,
)

from mora.configuration_mora import MoRAConfig
from mora.model.mask_engines.configs import (
    sam2_1_hiera_large_config,
    sam_vit_h_config,
    tiny_sam2_config,
    tiny_sam_config,
)
from mora.processing.chat import PromptTemplate
from mora.processing.tokenizer import add_mora_tokens, build_tiny_tokenizer

# preset name -> component -> Hugging Face Hub id of the published weights
WEIGHT_SOURCES = {
    "lisa_7b_sam_vit_h": {"vlm": "xinlai/LISA-7B-v1", "mask_engine": "facebook/sam-vit-huge"},
    "qwen2_5_vl_7b_sam2_1_large": {
        "vlm": "Qwen/Qwen2.5-VL-7B-Instruct",
        "mask_engine": "facebook/sam2.1-hiera-large",
    },
    "qwen3_vl_8b_sam2_1_large": {
        "vlm": "Qwen/Qwen3-VL-8B-Instruct",
        "mask_engine": "facebook/sam2.1-hiera-large",
    },
}
TINY_IMAGE_SIZE = 64
BACKBONES = ("llava", "qwen2_5_vl", "qwen3_vl")
# Qwen3-VL's image processor normalises with mean = std = 0.5 (transformers' IMAGENET_STANDARD_*)
QWEN3_VL_IMAGE_STATS = {"backbone_image_mean": (0.5, 0.5, 0.5), "backbone_image_std": (0.5, 0.5, 0.5)}


def _tiny_mask_engine(mask_engine: str, image_size: int, decoder_layers: int = 2):
    if mask_engine == "sam2":
        return tiny_sam2_config(image_size, decoder_layers)
    if mask_engine == "sam":
        return tiny_sam_config(image_size, decoder_layers)
    raise ValueError(f"mask_engine must be 'sam2' or 'sam', got {mask_engine!r}")


def _llava_config(*, vision: dict, text: dict, feature_layer: int, act: str = "gelu") -> LlavaConfig:
    return LlavaConfig(
        vision_config=CLIPVisionConfig(**vision),
        text_config=LlamaConfig(**text),
        vision_feature_layer=feature_layer,
        vision_feature_select_strategy="default",
        projector_hidden_act=act,
    )


def _qwen_config(*, vision: dict, text: dict) -> Qwen2_5_VLConfig:
    return Qwen2_5_VLConfig(vision_config=vision, text_config=text)


def _qwen3_config(*, vision: dict, text: dict) -> Qwen3VLConfig:
    return Qwen3VLConfig(vision_config=vision, text_config=text)


def _tiny_vlm(backbone: str, text: dict):
    """Tiny backbone config (64-px frames, patch 8) and its chat template."""
    if backbone == "llava":
        vision = dict(
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=2,
            num_attention_heads=2,
            image_size=TINY_IMAGE_SIZE,
            patch_size=8,
        )
        return _llava_config(vision=vision, text=text, feature_layer=-1), "vicuna_v1"
    # the two Qwen families share the tiny vision tower's sizes (patch 8, 2x2 merge, 2-frame patches)
    vision = dict(
        depth=2,
        hidden_size=64,
        intermediate_size=128,
        num_heads=2,
        patch_size=8,
        spatial_merge_size=2,
        temporal_patch_size=2,
        out_hidden_size=128,
    )
    text = {**text, "num_key_value_heads": 2}
    if backbone == "qwen2_5_vl":
        vision.update(window_size=32, fullatt_block_indexes=[1], tokens_per_second=2)
        text["rope_parameters"] = {"rope_type": "default", "mrope_section": [4, 6, 6]}
        return _qwen_config(vision=vision, text=text), "chatml"
    if backbone == "qwen3_vl":
        vision.update(
            num_position_embeddings=64,  # an 8 x 8 learned grid: the 64-px frame's patches
            deepstack_visual_indexes=[0, 1],  # features of both blocks join LM layers 0 and 1
        )
        text["head_dim"] = 32
        text["rope_parameters"] = {
            "rope_type": "default",
            "mrope_section": [6, 5, 5],
            "mrope_interleaved": True,
        }
        return _qwen3_config(vision=vision, text=text), "chatml"
    raise ValueError(f"backbone must be one of {BACKBONES}, got {backbone!r}")


def tiny(
    backbone: str = "llava",
    mask_engine: str = "sam2",
    *,
    num_frames: int = 8,
    mask_image_size: int | None = None,
    mask_decoder_layers: int = 2,
) -> MoRAConfig:
    """A tiny random MoRA (LM hidden 128, 4 layers; 64-px frames) matching `build_tiny_tokenizer`.

    ``mask_image_size``: side of the mask engine's frames (default: the backbone's 64 px); SAM2's image
    embedding is a ``mask_image_size / 16`` grid. ``mask_decoder_layers``: two-way transformer layers of the
    mask decoder (2, as in the released SAM / SAM2).
    """
    if mask_decoder_layers < 1:
        raise ValueError(f"mask_decoder_layers must be >= 1, got {mask_decoder_layers}")
    tokenizer = build_tiny_tokenizer()
    vocab = len(tokenizer)
    text = dict(
        hidden_size=128,
        intermediate_size=256,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=4,
        vocab_size=vocab,
        max_position_embeddings=2048,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    vlm, template = _tiny_vlm(backbone, text)
    config = MoRAConfig(
        vlm_config=vlm,
        mask_engine_config=_tiny_mask_engine(
            mask_engine, mask_image_size or TINY_IMAGE_SIZE, mask_decoder_layers
        ),
        backbone_family=backbone,
        num_frames=num_frames,
        motion_grid=4,
        temporal_head_dim=64,
        backbone_image_size=TINY_IMAGE_SIZE,
        chat_template=template,
        propagation="per_frame",
        max_new_tokens=24,
        # a model trained from scratch in minutes (train/README.md, "What the tiny default learns"): every
        # frame's grid (with its differences to the neighbouring frames) mixed across space and time before
        # the language model, which reads 2x2 pooled grids of its frames; [SEG]/[LOC] read the full grids;
        # the decoder gets the grid as a dense prompt, and masks get a per-pixel path at the full 64 px; the
        # span is scored from what lies under the predicted mask
        use_motion_tokens=False,
        use_motion_dense_prompt=False,
        video_pooling="frame_grid" if backbone == "llava" else "videochatgpt",
        video_pool_grid=2,
        video_adapter_layers=2,
        video_adapter_dim=96,
        video_adapter_heads=4,
        video_adapter_differences=True,
        grounding_reader_layers=3,
        grounding_reader_heads=4,
        use_video_dense_prompt=True,
        pixel_mask_dim=32,
        span_head="mask_pooled",
        **(QWEN3_VL_IMAGE_STATS if backbone == "qwen3_vl" else {}),
    )
    _apply_tiny_token_ids(config, tokenizer)
    return config


def _apply_tiny_token_ids(config: MoRAConfig, tokenizer: PreTrainedTokenizerBase) -> None:
    """The tiny tokenizer's special-token ids into ``config`` (the ids `MoRAProcessor` would copy)."""
    ids = add_mora_tokens(tokenizer)
    eos = PromptTemplate(config.chat_template, tokenizer).eos_id
    config.set_token_ids(seg=ids.seg, loc=ids.loc, video=ids.video, motion=ids.motion, pad=ids.pad, eos=eos)


def small(mask_engine: str = "sam2") -> MoRAConfig:
    """A mid-size random LLaVA-family model for benchmarks (LM hidden 512, 8 layers; CLIP 112 px)."""
    tokenizer = build_tiny_tokenizer()
    vision = dict(
        hidden_size=256,
        intermediate_size=1024,
        num_hidden_layers=6,
        num_attention_heads=4,
        image_size=112,
        patch_size=14,
    )
    text = dict(
        hidden_size=512,
        intermediate_size=1408,
        num_hidden_layers=8,
        num_attention_heads=8,
        num_key_value_heads=8,
        vocab_size=len(tokenizer),
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    engine = tiny_sam2_config(256) if mask_engine == "sam2" else tiny_sam_config(256)
    config = MoRAConfig(
        vlm_config=_llava_config(vision=vision, text=text, feature_layer=-2),
        mask_engine_config=engine,
        backbone_family="llava",
        num_frames=8,
        backbone_image_size=112,
        propagation="per_frame",
    )
    _apply_tiny_token_ids(config, tokenizer)
    return config


def lisa_7b_sam_vit_h(*, num_frames: int = 20) -> MoRAConfig:
    """The paper's model: LISA-7B-v1 (Vicuna-7B, CLIP ViT-L/14 at 224 px, penultimate layer) + SAM ViT-H.

    LISA's projector is one Linear layer; transformers' LLaVA projector is Linear-act-Linear, so the
    conversion uses ``projector_hidden_act="linear"`` and an identity second layer (exact).
    ``seg_hidden_offset=-1`` reproduces LISA's use of the state before ``[SEG]``, and the mask decoder gets
    the ``[SEG]`` prompt alone (``frame_prompts=False``) as in LISA/MoRA. Vocabulary: LLaMA's
    32000 + LISA's 4 added tokens + [LOC], <video>, <motion> (resized to the tokenizer at conversion).
    """
    vision = dict(
        hidden_size=1024,
        intermediate_size=4096,
        num_hidden_layers=24,
        num_attention_heads=16,
        image_size=224,
        patch_size=14,
        projection_dim=768,
    )
    text = dict(
        hidden_size=4096,
        intermediate_size=11008,
        num_hidden_layers=32,
        num_attention_heads=32,
        num_key_value_heads=32,
        vocab_size=32000 + 4 + 3,
        max_position_embeddings=2048,
    )
    return MoRAConfig(
        vlm_config=_llava_config(vision=vision, text=text, feature_layer=-2, act="linear"),
        mask_engine_config=sam_vit_h_config(),
        backbone_family="llava",
        num_frames=num_frames,
        backbone_image_size=224,
        frame_prompts=False,  # LISA's decoder sees the [SEG] prompt alone
        seg_hidden_offset=-1,
        chat_template="vicuna_v1",
        propagation="per_frame",
    )


def qwen2_5_vl_7b_sam2_1_large(*, num_frames: int = 16) -> MoRAConfig:
    """Qwen2.5-VL-7B-Instruct (native video, 448-px frames) + SAM2.1 Hiera-L with memory propagation."""
    vision = dict(
        depth=32,
        hidden_size=1280,
        intermediate_size=3420,
        num_heads=16,
        patch_size=14,
        spatial_merge_size=2,
        temporal_patch_size=2,
        window_size=112,
        out_hidden_size=3584,
        fullatt_block_indexes=[7, 15, 23, 31],
        tokens_per_second=2,
    )
    text = dict(
        hidden_size=3584,
        intermediate_size=18944,
        num_hidden_layers=28,
        num_attention_heads=28,
        num_key_value_heads=4,
        vocab_size=152064,
        max_position_embeddings=128000,
        rope_parameters={"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": [16, 24, 24]},
        tie_word_embeddings=False,
    )
    return _qwen_sam2_1_large(_qwen_config(vision=vision, text=text), num_frames)


def _qwen_sam2_1_large(vlm_config, num_frames: int, **fields) -> MoRAConfig:
    """A Qwen backbone with SAM2.1 Hiera-L and memory propagation, 448-px backbone frames, ChatML."""
    return MoRAConfig(
        vlm_config=vlm_config,
        mask_engine_config=sam2_1_hiera_large_config(),
        backbone_family=vlm_config.model_type,
        num_frames=num_frames,
        backbone_image_size=448,
        chat_template="chatml",
        propagation="memory",
        **fields,
    )


def qwen3_vl_8b_sam2_1_large(*, num_frames: int = 16) -> MoRAConfig:
    """Qwen3-VL-8B-Instruct (native video with timestamps, DeepStack, 448-px frames) + SAM2.1 Hiera-L with
    memory propagation.

    Sizes: the ``config.json`` of Qwen/Qwen3-VL-8B-Instruct as published (read from copies of it in
    fine-tunes that name it as their base; the Hub cannot be reached here): text 36 layers, hidden 4096,
    MLP 12288, 32 heads / 8 KV heads of 128, vocabulary 151936, M-RoPE sections [24, 20, 20] interleaved,
    theta 5e6, 262144 positions, untied head; vision 27 blocks of 1152 (MLP 4304, 16 heads), patch 16,
    learned 48 x 48 position grid, DeepStack after blocks 8, 16, 24, output 4096. 8.77e9 parameters.
    """
    vision = dict(
        depth=27,
        hidden_size=1152,
        hidden_act="gelu_pytorch_tanh",
        intermediate_size=4304,
        num_heads=16,
        in_channels=3,
        patch_size=16,
        spatial_merge_size=2,
        temporal_patch_size=2,
        out_hidden_size=4096,
        num_position_embeddings=2304,
        deepstack_visual_indexes=[8, 16, 24],
    )
    text = dict(
        hidden_size=4096,
        intermediate_size=12288,
        num_hidden_layers=36,
        num_attention_heads=32,
        num_key_value_heads=8,
        head_dim=128,
        hidden_act="silu",
        rms_norm_eps=1e-6,
        vocab_size=151936,
        max_position_embeddings=262144,
        rope_parameters={
            "rope_type": "default",
            "rope_theta": 5000000.0,
            "mrope_section": [24, 20, 20],
            "mrope_interleaved": True,
        },
    )
    return _qwen_sam2_1_large(_qwen3_config(vision=vision, text=text), num_frames, **QWEN3_VL_IMAGE_STATS)


PRESETS = {
    "tiny": tiny,
    "small": small,
    "lisa_7b_sam_vit_h": lisa_7b_sam_vit_h,
    "qwen2_5_vl_7b_sam2_1_large": qwen2_5_vl_7b_sam2_1_large,
    "qwen3_vl_8b_sam2_1_large": qwen3_vl_8b_sam2_1_large,
}
