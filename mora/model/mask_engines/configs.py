"""Mask-engine configs: tiny ones for tests, real ones built offline from the published hyperparameters.

The real configs reproduce the architectures of the Hugging Face checkpoints, so their weights load with
``Sam2MaskEngine.from_pretrained`` / ``SamMaskEngine.from_pretrained`` (or ``load_state_dict``):

* ``sam2_1_hiera_large_config``: facebook/sam2.1-hiera-large (224.4M parameters published).
* ``sam2_1_hiera_tiny_config``: facebook/sam2.1-hiera-tiny (38.9M).
* ``sam_vit_h_config``: facebook/sam-vit-huge (641M on the Hub; 636M in the SAM paper).
"""

from __future__ import annotations

from transformers import (
    Sam2HieraDetConfig,
    Sam2VideoConfig,
    Sam2VisionConfig,
    SamConfig,
    SamMaskDecoderConfig,
    SamPromptEncoderConfig,
    SamVisionConfig,
)

# Published parameter counts of the real checkpoints, checked against meta-device builds in the tests.
PUBLISHED_NUM_PARAMETERS = {
    "facebook/sam2.1-hiera-large": 224.4e6,
    "facebook/sam2.1-hiera-tiny": 38.9e6,
    "facebook/sam-vit-huge": 641e6,
}


def tiny_sam2_config(image_size: int = 64, decoder_layers: int = 2) -> Sam2VideoConfig:
    """A ~1.5M-parameter SAM2 (Hiera 4 stages, FPN 128, memory 64 channels) for CPU tests.

    ``image_size`` must be a multiple of 32 (Hiera's total stride); the image embedding is S/16.
    ``decoder_layers``: two-way transformer layers of the mask decoder (2, as in the released models).
    """
    if image_size % 32:
        raise ValueError(f"tiny SAM2 image_size must be a multiple of 32, got {image_size}")
    hidden, memory = 128, 64  # memory channels 64 and hidden > 64 (object pointers are split by memory dim)
    backbone = Sam2HieraDetConfig(
        hidden_size=16,
        num_attention_heads=1,
        image_size=[image_size, image_size],
        blocks_per_stage=[1, 1, 2, 1],
        embed_dim_per_stage=[16, 32, 64, 128],
        num_attention_heads_per_stage=[1, 1, 2, 2],
        window_size_per_stage=[4, 4, 4, 2],
        global_attention_blocks=[3],
        window_positional_embedding_background_size=[4, 4],
    )
    top = image_size // 16
    vision = Sam2VisionConfig(
        backbone_config=backbone,
        backbone_channel_list=[128, 64, 32, 16],
        backbone_feature_sizes=[[image_size // 4] * 2, [image_size // 8] * 2, [top, top]],
        fpn_hidden_size=hidden,
    )
    return Sam2VideoConfig(
        vision_config=vision,
        prompt_encoder_config={"hidden_size": hidden, "image_size": image_size, "patch_size": 16},
        mask_decoder_config={
            "hidden_size": hidden,
            "mlp_dim": 256,
            "num_attention_heads": 4,
            "iou_head_hidden_dim": hidden,
            "num_hidden_layers": decoder_layers,
        },
        image_size=image_size,
        num_maskmem=3,
        memory_attention_hidden_size=hidden,
        memory_attention_num_layers=1,
        memory_attention_feed_forward_hidden_size=256,
        memory_attention_rope_feat_sizes=[top, top],
        memory_encoder_hidden_size=hidden,
        memory_encoder_output_channels=memory,
        mask_downsampler_embed_dim=hidden,
        memory_fuser_num_layers=1,
        memory_fuser_embed_dim=hidden,
        memory_fuser_intermediate_dim=256,
    )


def tiny_sam_config(image_size: int = 64, decoder_layers: int = 2) -> SamConfig:
    """A ~0.3M-parameter SAM (2-layer ViT, patch 8, prompt dim 64) for CPU tests.

    ``image_size`` must be a multiple of 8 (the patch size); the image embedding is S/8.
    ``decoder_layers``: two-way transformer layers of the mask decoder (2, as in the released models).
    """
    patch, hidden = 8, 64
    if image_size % patch:
        raise ValueError(f"tiny SAM image_size must be a multiple of {patch}, got {image_size}")
    vision = SamVisionConfig(
        hidden_size=64,
        output_channels=hidden,
        num_hidden_layers=2,
        num_attention_heads=4,
        image_size=image_size,
        patch_size=patch,
        mlp_dim=128,
        window_size=4,
        global_attn_indexes=[1],
        num_pos_feats=hidden // 2,
    )
    prompt = SamPromptEncoderConfig(
        hidden_size=hidden, image_size=image_size, patch_size=patch, mask_input_channels=8
    )
    decoder = SamMaskDecoderConfig(
        hidden_size=hidden,
        mlp_dim=128,
        num_attention_heads=2,
        iou_head_hidden_dim=hidden,
        num_hidden_layers=decoder_layers,
    )
    return SamConfig(vision_config=vision, prompt_encoder_config=prompt, mask_decoder_config=decoder)


def sam2_1_hiera_large_config() -> Sam2VideoConfig:
    """facebook/sam2.1-hiera-large: Hiera-L (144-dim, stages 2-6-36-4), 1024 px, SAM2.1 memory settings."""
    backbone = Sam2HieraDetConfig(
        hidden_size=144,
        num_attention_heads=2,
        embed_dim_per_stage=[144, 288, 576, 1152],
        num_attention_heads_per_stage=[2, 4, 8, 16],
        blocks_per_stage=[2, 6, 36, 4],
        global_attention_blocks=[23, 33, 43],
        window_positional_embedding_background_size=[7, 7],
        window_size_per_stage=[8, 4, 16, 8],
    )
    vision = Sam2VisionConfig(backbone_config=backbone, backbone_channel_list=[1152, 576, 288, 144])
    return _sam2_1_video_config(vision)


def sam2_1_hiera_tiny_config() -> Sam2VideoConfig:
    """facebook/sam2.1-hiera-tiny: Hiera-T (96-dim, stages 1-2-7-2), 1024 px, SAM2.1 memory settings."""
    backbone = Sam2HieraDetConfig(
        hidden_size=96,
        num_attention_heads=1,
        embed_dim_per_stage=[96, 192, 384, 768],
        num_attention_heads_per_stage=[1, 2, 4, 8],
        blocks_per_stage=[1, 2, 7, 2],
        global_attention_blocks=[5, 7, 9],
        window_positional_embedding_background_size=[7, 7],
        window_size_per_stage=[8, 4, 14, 7],
    )
    vision = Sam2VisionConfig(backbone_config=backbone, backbone_channel_list=[768, 384, 192, 96])
    return _sam2_1_video_config(vision)


def sam_vit_h_config() -> SamConfig:
    """facebook/sam-vit-huge: ViT-H/16 (1280-dim, 32 layers, global attention every 8th), 1024 px."""
    vision = SamVisionConfig(
        hidden_size=1280,
        num_hidden_layers=32,
        num_attention_heads=16,
        global_attn_indexes=[7, 15, 23, 31],
    )
    return SamConfig(vision_config=vision)


def _sam2_1_video_config(vision: Sam2VisionConfig) -> Sam2VideoConfig:
    # SAM2.1 (vs 2.0) adds temporal encodings on object pointers and the occlusion spatial embedding.
    return Sam2VideoConfig(
        vision_config=vision,
        enable_temporal_pos_encoding_for_object_pointers=True,
        enable_occlusion_spatial_embedding=True,
    )
