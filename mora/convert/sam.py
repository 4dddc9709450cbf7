"""Meta's segment-anything (SAM v1) checkpoints -> a transformers ``SamModel`` folder.

Sizes come from the tensors: ViT width (``pos_embed``), depth (number of ``blocks``), heads (width over the
relative-position width), patch and image size, MLP width, window size and global-attention blocks (the
relative-position tables of windowed blocks span ``2 * window - 1`` positions, global ones ``2 * grid - 1``),
and every prompt-encoder and mask-decoder width. Only the mask decoder's attention heads are not stored in
any shape: Meta builds every SAM with 8 (``DECODER_HEADS``).

Key layout (Meta -> transformers): ``image_encoder.blocks.i`` -> ``vision_encoder.layers.i`` (``norm`` ->
``layer_norm``), the ``neck`` and ``mask_downscaling`` Sequentials -> named convs and norms, SAM's MLPs
(``layers.0..n-1``) -> ``proj_in``/``layers``/``proj_out``, ``pe_layer`` -> the prompt encoder's
``shared_embedding`` and the model's ``shared_image_embedding`` (one tensor, used twice).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

import torch
from transformers import SamConfig, SamMaskDecoderConfig, SamModel, SamPromptEncoderConfig, SamVisionConfig
from transformers.utils.constants import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

from mora.convert.checkpoint_io import (
    ConversionError,
    Rule,
    expected_shapes,
    load_state_dict,
    mlp_layer_name,
    remap_state_dict,
    resolve_dtype,
    save_converted,
)
from mora.utils.logging import get_logger

logger = get_logger(__name__)

DECODER_HEADS = 8  # the two-way transformer's heads in every Meta SAM / SAM2 build (not in any shape)

# (width, depth) -> (name, heads, global-attention blocks) of the published ViT variants; used only when
# the checkpoint has no relative-position tables to read heads and global blocks from.
KNOWN_VIT_VARIANTS = {
    (768, 12): ("vit_b", 12, (2, 5, 8, 11)),
    (1024, 24): ("vit_l", 16, (5, 11, 17, 23)),
    (1280, 32): ("vit_h", 16, (7, 15, 23, 31)),
}
_KNOWN_WINDOW = 14

# Non-persistent buffers in segment-anything's Sam; checked (ImageNet statistics) and dropped if saved.
IGNORED_SAM_KEYS = (r"pixel_mean", r"pixel_std")


def indexes(state: Mapping[str, torch.Tensor], prefix: str) -> set[int]:
    """The ``i`` of every ``{prefix}{i}.`` key group in ``state``."""
    return {int(m.group(1)) for k in state if (m := re.match(re.escape(prefix) + r"(\d+)\.", k))}


def count_indexed(state: Mapping[str, torch.Tensor], prefix: str) -> int:
    """Number of consecutive ``{prefix}{i}.`` groups in ``state`` (0 when there are none)."""
    found = indexes(state, prefix)
    if found != set(range(len(found))):
        raise ConversionError(f"{prefix}N indexes are not consecutive from 0: {sorted(found)}")
    return len(found)


def need(state: Mapping[str, torch.Tensor], key: str) -> torch.Tensor:
    """``state[key]``; a missing key is a ``ConversionError`` naming it."""
    if key not in state:
        raise ConversionError(f"missing key {key} (is this the right kind of checkpoint?)")
    return state[key]


def sam_config_from_state_dict(state: Mapping[str, torch.Tensor], prefix: str = "") -> SamConfig:
    """The ``SamConfig`` of a segment-anything state dict (keys under ``prefix``, e.g. ``model.visual_model.``)."""
    vision = _vision_config(state, prefix + "image_encoder.")
    hidden = int(need(state, prefix + "prompt_encoder.no_mask_embed.weight").shape[1])
    prompt = SamPromptEncoderConfig(
        hidden_size=hidden,
        image_size=vision.image_size,
        patch_size=vision.patch_size,
        mask_input_channels=int(need(state, prefix + "prompt_encoder.mask_downscaling.3.weight").shape[0]),
    )
    vision.num_pos_feats = int(
        need(state, prefix + "prompt_encoder.pe_layer.positional_encoding_gaussian_matrix").shape[1]
    )
    decoder = sam_decoder_config_kwargs(state, prefix + "mask_decoder.", first_mlp="mlp.lin1")
    return SamConfig(
        vision_config=vision,
        prompt_encoder_config=prompt,
        mask_decoder_config=SamMaskDecoderConfig(**decoder),
    )


def sam_decoder_config_kwargs(state: Mapping[str, torch.Tensor], prefix: str, *, first_mlp: str) -> dict:
    """Mask-decoder sizes (SAM and SAM2 share the two-way transformer); ``first_mlp`` names the first layer
    of a transformer block's MLP (``mlp.lin1`` in SAM, ``mlp.layers.0`` in SAM2)."""
    hidden = int(need(state, prefix + "iou_token.weight").shape[1])
    cross_dim = int(
        need(state, prefix + "transformer.layers.0.cross_attn_token_to_image.q_proj.weight").shape[0]
    )
    return dict(
        hidden_size=hidden,
        mlp_dim=int(need(state, f"{prefix}transformer.layers.0.{first_mlp}.weight").shape[0]),
        num_hidden_layers=count_indexed(state, prefix + "transformer.layers."),
        num_attention_heads=DECODER_HEADS,
        attention_downsample_rate=hidden // cross_dim,
        num_multimask_outputs=int(need(state, prefix + "mask_tokens.weight").shape[0]) - 1,
        iou_head_depth=count_indexed(state, prefix + "iou_prediction_head.layers."),
        iou_head_hidden_dim=int(need(state, prefix + "iou_prediction_head.layers.0.weight").shape[0]),
    )


def _vision_config(state: Mapping[str, torch.Tensor], prefix: str) -> SamVisionConfig:
    pos = need(state, prefix + "pos_embed")  # [1, grid, grid, width]
    _, grid, _, width = pos.shape
    patch = int(need(state, prefix + "patch_embed.proj.weight").shape[-1])
    depth = count_indexed(state, prefix + "blocks.")
    rel = [state.get(f"{prefix}blocks.{i}.attn.rel_pos_h") for i in range(depth)]  # [2 * size - 1, head_dim]
    if all(r is not None for r in rel):
        head_dim = int(rel[0].shape[1])
        sizes = [(int(r.shape[0]) + 1) // 2 for r in rel]
        global_blocks = [i for i, s in enumerate(sizes) if s == grid]
        windows = {s for s in sizes if s != grid}
        if len(windows) > 1:
            raise ConversionError(f"{prefix}blocks use several window sizes {sorted(windows)}")
        window = windows.pop() if windows else _KNOWN_WINDOW
        heads, use_rel_pos = width // head_dim, True
    else:
        variant = KNOWN_VIT_VARIANTS.get((int(width), depth))
        if variant is None:
            raise ConversionError(
                f"{prefix}blocks have no rel_pos tables and ({width}, {depth}) is not a known ViT variant"
            )
        _, heads, blocks = variant
        global_blocks, window, use_rel_pos = list(blocks), _KNOWN_WINDOW, False
    logger.info(
        "SAM ViT: width %d, depth %d, heads %d, %d px / patch %d, window %d, global blocks %s",
        width, depth, heads, grid * patch, patch, window, global_blocks,
    )  # fmt: skip
    return SamVisionConfig(
        hidden_size=int(width),
        output_channels=int(need(state, prefix + "neck.0.weight").shape[0]),
        num_hidden_layers=depth,
        num_attention_heads=heads,
        image_size=int(grid) * patch,
        patch_size=patch,
        mlp_dim=int(need(state, prefix + "blocks.0.mlp.lin1.weight").shape[0]),
        qkv_bias=prefix + "blocks.0.attn.qkv.bias" in state,
        use_rel_pos=use_rel_pos,
        window_size=window,
        global_attn_indexes=global_blocks,
    )


# ------------------------------------------------------------------------------------------------ keys
_NECK = {"0": "conv1", "1": "layer_norm1", "2": "conv2", "3": "layer_norm2"}
_MASK_DOWNSCALING = {"0": "conv1", "1": "layer_norm1", "3": "conv2", "4": "layer_norm2", "6": "conv3"}
_UPSCALING = {"0": "upscale_conv1", "1": "upscale_layer_norm", "3": "upscale_conv2"}
_PARAM = r"(weight|bias)"


def _mlp_rule(source: str, target: str, depth: int) -> Rule:
    """``{source}.layers.i.{param}`` -> ``{target}.{proj_in|layers.i-1|proj_out}.{param}``."""
    return Rule(
        rf"{source}\.layers\.(\d+)\.{_PARAM}",
        lambda m: f"{target}.{mlp_layer_name(int(m.group(1)), depth)}.{m.group(2)}",
    )


def prompt_encoder_rules(source: str) -> list[Rule]:
    """SAM / SAM2 prompt encoder under ``source`` (``prompt_encoder`` / ``sam_prompt_encoder``)."""
    return [
        Rule(
            rf"{source}\.pe_layer\.positional_encoding_gaussian_matrix",
            lambda m: (
                "prompt_encoder.shared_embedding.positional_embedding",
                "shared_image_embedding.positional_embedding",
            ),
        ),
        Rule(rf"{source}\.point_embeddings\.(\d+)\.weight", r"prompt_encoder.point_embed.\1.weight"),
        Rule(rf"{source}\.(not_a_point_embed|no_mask_embed)\.weight", r"prompt_encoder.\1.weight"),
        Rule(
            rf"{source}\.mask_downscaling\.(\d+)\.{_PARAM}",
            lambda m: (
                f"prompt_encoder.mask_embed.{_MASK_DOWNSCALING.get(m.group(1), '?' + m.group(1))}.{m.group(2)}"
            ),
        ),
    ]


def mask_decoder_rules(
    source: str, decoder: SamMaskDecoderConfig, *, transformer_mlp: Rule, out_proj: str = "out_proj"
) -> list[Rule]:
    """SAM / SAM2 mask decoder under ``source``; ``transformer_mlp`` renames the two-way blocks' MLPs and
    ``out_proj`` is transformers' name of the attention output projection."""
    return [
        transformer_mlp,
        Rule(
            rf"{source}\.transformer\.(layers\.\d+)\.norm(\d)\.{_PARAM}",
            r"mask_decoder.transformer.\1.layer_norm\2.\3",
        ),
        Rule(
            rf"{source}\.transformer\.norm_final_attn\.{_PARAM}",
            r"mask_decoder.transformer.layer_norm_final_attn.\1",
        ),
        Rule(
            rf"{source}\.transformer\.(.*)\.([qkv])_proj\.{_PARAM}", r"mask_decoder.transformer.\1.\2_proj.\3"
        ),
        Rule(
            rf"{source}\.transformer\.(.*)\.out_proj\.{_PARAM}", rf"mask_decoder.transformer.\1.{out_proj}.\2"
        ),
        Rule(rf"{source}\.(iou_token|mask_tokens|obj_score_token)\.weight", r"mask_decoder.\1.weight"),
        Rule(
            rf"{source}\.output_upscaling\.(\d)\.{_PARAM}",
            lambda m: f"mask_decoder.{_UPSCALING.get(m.group(1), '?' + m.group(1))}.{m.group(2)}",
        ),
        Rule(rf"{source}\.(conv_s[01])\.{_PARAM}", r"mask_decoder.\1.\2"),
        Rule(
            rf"{source}\.output_hypernetworks_mlps\.(\d+)\.layers\.(\d+)\.{_PARAM}",
            lambda m: (
                f"mask_decoder.output_hypernetworks_mlps.{m.group(1)}.{mlp_layer_name(int(m.group(2)), 3)}.{m.group(3)}"
            ),
        ),
        _mlp_rule(
            rf"{source}\.iou_prediction_head", "mask_decoder.iou_prediction_head", decoder.iou_head_depth
        ),
        _mlp_rule(rf"{source}\.pred_obj_score_head", "mask_decoder.pred_obj_score_head", 3),
    ]


def sam_rules(config: SamConfig, prefix: str = "") -> list[Rule]:
    """Rules from segment-anything keys (under ``prefix``) to ``SamModel`` keys."""
    p = re.escape(prefix)
    transformer_mlp = Rule(
        rf"{p}mask_decoder\.transformer\.layers\.(\d+)\.mlp\.(lin[12])\.{_PARAM}",
        r"mask_decoder.transformer.layers.\1.mlp.\2.\3",
    )
    return [
        Rule(rf"{p}image_encoder\.pos_embed", "vision_encoder.pos_embed"),
        Rule(rf"{p}image_encoder\.patch_embed\.proj\.{_PARAM}", r"vision_encoder.patch_embed.projection.\1"),
        Rule(
            rf"{p}image_encoder\.blocks\.(\d+)\.norm([12])\.{_PARAM}",
            r"vision_encoder.layers.\1.layer_norm\2.\3",
        ),
        Rule(
            rf"{p}image_encoder\.blocks\.(\d+)\.(attn\.(?:qkv|proj)\.(?:weight|bias)|attn\.rel_pos_[hw]|mlp\.lin[12]\.(?:weight|bias))",
            r"vision_encoder.layers.\1.\2",
        ),
        Rule(
            rf"{p}image_encoder\.neck\.(\d)\.{_PARAM}",
            lambda m: f"vision_encoder.neck.{_NECK.get(m.group(1), '?' + m.group(1))}.{m.group(2)}",
        ),
        *prompt_encoder_rules(f"{p}prompt_encoder"),
        *mask_decoder_rules(f"{p}mask_decoder", config.mask_decoder_config, transformer_mlp=transformer_mlp),
    ]


def check_pixel_statistics(state: Mapping[str, torch.Tensor], prefix: str = "") -> None:
    """Saved ``pixel_mean``/``pixel_std`` must be ImageNet's (x255): mora's engines normalise with those."""
    for name, reference in (("pixel_mean", IMAGENET_DEFAULT_MEAN), ("pixel_std", IMAGENET_DEFAULT_STD)):
        value = state.get(prefix + name)
        if value is not None and not torch.allclose(
            value.float().flatten(), torch.tensor(reference) * 255, atol=1e-3
        ):
            raise ConversionError(
                f"{prefix}{name} is {value.flatten().tolist()}, not ImageNet's statistics x255"
            )


def convert_sam_state_dict(state: Mapping[str, torch.Tensor], prefix: str = "") -> tuple[SamConfig, dict]:
    """``(SamConfig, SamModel state dict)`` for a segment-anything state dict whose keys start with ``prefix``.

    Keys outside ``prefix`` are not looked at (callers converting a larger checkpoint check those)."""
    state = {k: v for k, v in state.items() if k.startswith(prefix)}
    config = sam_config_from_state_dict(state, prefix)
    check_pixel_statistics(state, prefix)
    ignore = [re.escape(prefix) + k for k in IGNORED_SAM_KEYS]
    converted = remap_state_dict(
        state,
        sam_rules(config, prefix),
        expected_shapes(SamModel, config),
        ignore=ignore,
        what="SAM checkpoint",
    )
    return config, converted


def convert_sam(checkpoint: str | Path, out: str | Path, *, dtype: str = "keep") -> Path:
    """Convert Meta's SAM checkpoint (``sam_vit_{b,l,h}_*.pth``) into a ``SamModel`` folder at ``out``."""
    state = load_state_dict(checkpoint)
    try:
        config, converted = convert_sam_state_dict(state)
    except ConversionError as err:
        raise ConversionError(f"{checkpoint}: {err}") from None
    return save_converted(SamModel, config, converted, out, resolve_dtype(state, dtype))
