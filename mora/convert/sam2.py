"""Meta's SAM2 / SAM2.1 checkpoints (``{"model": state_dict}``) -> a transformers ``Sam2VideoModel`` folder.

Read from the tensors: Hiera's width, blocks per stage (a stage starts at each block with a ``proj``),
windowed positional-embedding sizes; the FPN, prompt-encoder, mask-decoder, memory-attention,
memory-encoder and fuser widths, depths and kernels; the number of memory frames; SAM2.1's extras
(``obj_ptr_tpos_proj``, ``no_obj_embed_spatial``) versus SAM2.0.

Not stored in any shape, taken from the published variants (``KNOWN_HIERA_VARIANTS``, keyed by width and
blocks per stage): Hiera's heads, global-attention blocks and window sizes. A checkpoint of another layout
needs an explicit ``HieraLayout``; the input size (1024 for every published model) is a parameter.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import (
    Sam2HieraDetConfig,
    Sam2VideoConfig,
    Sam2VideoMaskDecoderConfig,
    Sam2VideoModel,
    Sam2VideoPromptEncoderConfig,
    Sam2VisionConfig,
)

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
from mora.convert.sam import (
    count_indexed,
    indexes,
    mask_decoder_rules,
    need,
    prompt_encoder_rules,
    sam_decoder_config_kwargs,
)
from mora.utils.logging import get_logger

logger = get_logger(__name__)

IMAGE_SIZE = 1024  # every published SAM2 / SAM2.1 model
_BACKBONE_STRIDE = 16  # the image embedding is image_size / 16
_MEMORY_ATTENTION_HEADS = 1  # every published config (RoPE attention, one head)
_MASK_DOWNSAMPLER_STRIDE = 2


@dataclass(frozen=True)
class HieraLayout:
    """What a Hiera checkpoint does not store: initial heads (doubled per stage), global-attention blocks,
    window size per stage."""

    num_heads: int
    global_attention_blocks: tuple[int, ...]
    window_sizes: tuple[int, ...]


# (width, blocks per stage) -> (name, layout) of the published SAM2 / SAM2.1 image encoders.
KNOWN_HIERA_VARIANTS = {
    (96, (1, 2, 7, 2)): ("hiera_tiny", HieraLayout(1, (5, 7, 9), (8, 4, 14, 7))),
    (96, (1, 2, 11, 2)): ("hiera_small", HieraLayout(1, (7, 10, 13), (8, 4, 14, 7))),
    (112, (2, 3, 16, 3)): ("hiera_base_plus", HieraLayout(2, (12, 16, 20), (8, 4, 14, 7))),
    (144, (2, 6, 36, 4)): ("hiera_large", HieraLayout(2, (23, 33, 43), (8, 4, 16, 8))),
}

_TRUNK = "image_encoder.trunk."


def hiera_stages(state: Mapping[str, torch.Tensor]) -> tuple[int, tuple[int, ...]]:
    """``(width, blocks per stage)``: a new stage starts at every block with a ``proj`` (width change)."""
    width = int(need(state, _TRUNK + "patch_embed.proj.weight").shape[0])
    depth = count_indexed(state, _TRUNK + "blocks.")
    starts = [0] + [i for i in range(depth) if f"{_TRUNK}blocks.{i}.proj.weight" in state]
    ends = [*starts[1:], depth]
    return width, tuple(end - start for start, end in zip(starts, ends))


def sam2_config_from_state_dict(
    state: Mapping[str, torch.Tensor], *, image_size: int = IMAGE_SIZE, hiera: HieraLayout | None = None
) -> Sam2VideoConfig:
    """The ``Sam2VideoConfig`` of a SAM2 / SAM2.1 state dict (see the module docstring)."""
    if image_size % 32:
        raise ConversionError(f"image_size must be a multiple of 32, got {image_size}")
    vision = _vision_config(state, image_size, hiera)
    hidden = vision.fpn_hidden_size
    grid = image_size // _BACKBONE_STRIDE
    prompt = Sam2VideoPromptEncoderConfig(
        hidden_size=hidden,
        image_size=image_size,
        patch_size=_BACKBONE_STRIDE,
        mask_input_channels=int(need(state, "sam_prompt_encoder.mask_downscaling.3.weight").shape[0]),
        num_point_embeddings=count_indexed(state, "sam_prompt_encoder.point_embeddings."),
    )
    decoder = Sam2VideoMaskDecoderConfig(
        **sam_decoder_config_kwargs(state, "sam_mask_decoder.", first_mlp="mlp.layers.0")
    )
    attention = "memory_attention.layers.0."
    final = _final_downsampler(state)  # (conv, norm, act) per stride-2 layer, then the final conv
    fuser = "memory_encoder.fuser.layers.0."
    fuser_kernel = int(need(state, fuser + "dwconv.weight").shape[-1])
    down_kernel = int(need(state, "memory_encoder.mask_downsampler.encoder.0.weight").shape[-1])
    return Sam2VideoConfig(
        vision_config=vision,
        prompt_encoder_config=prompt,
        mask_decoder_config=decoder,
        image_size=image_size,
        num_maskmem=int(need(state, "maskmem_tpos_enc").shape[0]),
        enable_occlusion_spatial_embedding="no_obj_embed_spatial" in state,
        enable_temporal_pos_encoding_for_object_pointers="obj_ptr_tpos_proj.weight" in state,
        memory_attention_hidden_size=hidden,
        memory_attention_num_layers=count_indexed(state, "memory_attention.layers."),
        memory_attention_num_attention_heads=_MEMORY_ATTENTION_HEADS,
        memory_attention_downsample_rate=hidden
        // int(need(state, attention + "self_attn.q_proj.weight").shape[0]),
        memory_attention_feed_forward_hidden_size=int(need(state, attention + "linear1.weight").shape[0]),
        memory_attention_rope_feat_sizes=[grid, grid],
        memory_encoder_hidden_size=int(need(state, "memory_encoder.pix_feat_proj.weight").shape[0]),
        memory_encoder_output_channels=int(need(state, "memory_encoder.out_proj.weight").shape[0]),
        mask_downsampler_embed_dim=int(
            need(state, f"memory_encoder.mask_downsampler.encoder.{final}.weight").shape[0]
        ),
        mask_downsampler_kernel_size=down_kernel,
        mask_downsampler_stride=_MASK_DOWNSAMPLER_STRIDE,
        mask_downsampler_padding=down_kernel // 2,
        mask_downsampler_total_stride=_MASK_DOWNSAMPLER_STRIDE ** (final // 3),
        memory_fuser_num_layers=count_indexed(state, "memory_encoder.fuser.layers."),
        memory_fuser_embed_dim=int(need(state, fuser + "dwconv.weight").shape[0]),
        memory_fuser_intermediate_dim=int(need(state, fuser + "pwconv1.weight").shape[0]),
        memory_fuser_kernel_size=fuser_kernel,
        memory_fuser_padding=fuser_kernel // 2,
    )


def _vision_config(
    state: Mapping[str, torch.Tensor], image_size: int, hiera: HieraLayout | None
) -> Sam2VisionConfig:
    width, stages = hiera_stages(state)
    if hiera is None:
        known = KNOWN_HIERA_VARIANTS.get((width, stages))
        if known is None:
            raise ConversionError(
                f"Hiera width {width} with blocks per stage {list(stages)} is not a published SAM2 layout "
                f"(known: {sorted((w, list(s)) for w, s in KNOWN_HIERA_VARIANTS)}); give its HieraLayout"
            )
        name, hiera = known
        logger.info("SAM2 image encoder: %s (width %d, blocks %s)", name, width, list(stages))
    if len(hiera.window_sizes) != len(stages):
        raise ConversionError(
            f"HieraLayout has {len(hiera.window_sizes)} window sizes for {len(stages)} stages"
        )
    window = int(need(state, _TRUNK + "pos_embed_window").shape[-1])
    if window != hiera.window_sizes[0]:
        raise ConversionError(
            f"pos_embed_window is {window} wide but the first stage's window is {hiera.window_sizes[0]}"
        )
    dims = [width * 2**i for i in range(len(stages))]
    kernel = need(state, _TRUNK + "patch_embed.proj.weight").shape[-1]
    backbone = Sam2HieraDetConfig(
        hidden_size=width,
        num_attention_heads=hiera.num_heads,
        image_size=[image_size, image_size],
        patch_kernel_size=[int(kernel)] * 2,
        patch_padding=[int(kernel) // 2] * 2,
        window_positional_embedding_background_size=list(need(state, _TRUNK + "pos_embed").shape[-2:]),
        num_query_pool_stages=len(stages) - 1,
        blocks_per_stage=list(stages),
        embed_dim_per_stage=dims,
        num_attention_heads_per_stage=[hiera.num_heads * 2**i for i in range(len(stages))],
        window_size_per_stage=list(hiera.window_sizes),
        global_attention_blocks=list(hiera.global_attention_blocks),
    )
    fpn = int(need(state, "image_encoder.neck.convs.0.conv.weight").shape[0])
    return Sam2VisionConfig(
        backbone_config=backbone,
        backbone_channel_list=dims[::-1],
        backbone_feature_sizes=[[image_size // s] * 2 for s in (4, 8, 16)],
        fpn_hidden_size=fpn,
    )


# ------------------------------------------------------------------------------------------------ keys
_RENAMED = {
    "maskmem_tpos_enc": "memory_temporal_positional_encoding",
    "no_mem_embed": "no_memory_embedding",
    "no_mem_pos_enc": "no_memory_positional_encoding",
    "no_obj_ptr": "no_object_pointer",
    "no_obj_embed_spatial": "occlusion_spatial_embedding_parameter",
    "mask_downsample.weight": "mask_downsample.weight",
    "mask_downsample.bias": "mask_downsample.bias",
    "obj_ptr_tpos_proj.weight": "temporal_positional_encoding_projection_layer.weight",
    "obj_ptr_tpos_proj.bias": "temporal_positional_encoding_projection_layer.bias",
}
_FUSER = {
    "gamma": "scale",
    "dwconv": "depthwise_conv",
    "norm": "layer_norm",
    "pwconv1": "pointwise_conv1",
    "pwconv2": "pointwise_conv2",
}
_P = r"(weight|bias)"


def _final_downsampler(state: Mapping[str, torch.Tensor]) -> int:
    found = indexes(state, "memory_encoder.mask_downsampler.encoder.")
    if not found:
        raise ConversionError("missing keys memory_encoder.mask_downsampler.encoder.*")
    return max(found)


def _downsampler_name(index: int, final: int) -> str:
    """The mask downsampler's Sequential (conv, norm, act) x n + final conv -> transformers' names."""
    if index == final:
        return "final_conv"
    kind = {0: "conv", 1: "layer_norm"}.get(index % 3)
    if kind is None:
        raise ConversionError(
            f"memory_encoder.mask_downsampler.encoder.{index} is an activation, not a weight"
        )
    return f"layers.{index // 3}.{kind}"


def sam2_rules(config: Sam2VideoConfig, final_downsampler: int) -> list[Rule]:
    """Rules from SAM2 keys to ``Sam2VideoModel`` keys (``final_downsampler``: index of the last conv)."""
    vision = "vision_encoder.backbone"
    transformer_mlp = Rule(
        rf"sam_mask_decoder\.transformer\.layers\.(\d+)\.mlp\.layers\.([01])\.{_P}",
        lambda m: (
            f"mask_decoder.transformer.layers.{m.group(1)}.mlp.{mlp_layer_name(int(m.group(2)), 2)}.{m.group(3)}"
        ),
    )
    return [
        Rule("|".join(re.escape(k) for k in _RENAMED), lambda m: _RENAMED[m.group(0)]),
        Rule(r"image_encoder\.trunk\.(pos_embed|pos_embed_window)", rf"{vision}.\1"),
        Rule(rf"image_encoder\.trunk\.patch_embed\.proj\.{_P}", rf"{vision}.patch_embed.projection.\1"),
        Rule(
            rf"image_encoder\.trunk\.blocks\.(\d+)\.norm([12])\.{_P}", rf"{vision}.blocks.\1.layer_norm\2.\3"
        ),
        Rule(
            rf"image_encoder\.trunk\.blocks\.(\d+)\.((?:attn\.)?(?:qkv|proj))\.{_P}",
            rf"{vision}.blocks.\1.\2.\3",
        ),
        Rule(
            rf"image_encoder\.trunk\.blocks\.(\d+)\.mlp\.layers\.(\d)\.{_P}",
            lambda m: f"{vision}.blocks.{m.group(1)}.mlp.{mlp_layer_name(int(m.group(2)), 2)}.{m.group(3)}",
        ),
        Rule(rf"image_encoder\.neck\.convs\.(\d)\.conv\.{_P}", r"vision_encoder.neck.convs.\1.\2"),
        Rule(
            rf"memory_attention\.layers\.(\d+)\.(self_attn|cross_attn_image)\.([qkv]_proj|out_proj)\.{_P}",
            lambda m: (
                f"memory_attention.layers.{m.group(1)}.{m.group(2)}.{m.group(3).replace('out', 'o')}.{m.group(4)}"
            ),
        ),
        Rule(rf"memory_attention\.layers\.(\d+)\.(linear[12])\.{_P}", r"memory_attention.layers.\1.\2.\3"),
        Rule(
            rf"memory_attention\.layers\.(\d+)\.norm([123])\.{_P}",
            r"memory_attention.layers.\1.layer_norm\2.\3",
        ),
        Rule(rf"memory_attention\.norm\.{_P}", r"memory_attention.layer_norm.\1"),
        Rule(
            rf"memory_encoder\.mask_downsampler\.encoder\.(\d+)\.{_P}",
            lambda m: (
                f"memory_encoder.mask_downsampler.{_downsampler_name(int(m.group(1)), final_downsampler)}.{m.group(2)}"
            ),
        ),
        Rule(rf"memory_encoder\.pix_feat_proj\.{_P}", r"memory_encoder.feature_projection.\1"),
        Rule(rf"memory_encoder\.out_proj\.{_P}", r"memory_encoder.projection.\1"),
        Rule(
            r"memory_encoder\.fuser\.layers\.(\d+)\.(gamma|dwconv|norm|pwconv[12])((?:\.weight|\.bias)?)",
            lambda m: f"memory_encoder.memory_fuser.layers.{m.group(1)}.{_FUSER[m.group(2)]}{m.group(3)}",
        ),
        Rule(
            rf"obj_ptr_proj\.layers\.(\d+)\.{_P}",
            lambda m: f"object_pointer_proj.{mlp_layer_name(int(m.group(1)), 3)}.{m.group(2)}",
        ),
        *prompt_encoder_rules("sam_prompt_encoder"),
        *mask_decoder_rules(
            "sam_mask_decoder", config.mask_decoder_config, transformer_mlp=transformer_mlp, out_proj="o_proj"
        ),
    ]


def _stack_point_embeddings(state: dict[str, torch.Tensor], count: int) -> dict[str, torch.Tensor]:
    """SAM2's point embeddings are separate ``[1, C]`` tables; transformers keeps one ``[count, C]`` table."""
    names = [f"prompt_encoder.point_embed.{i}.weight" for i in range(count)]
    state["prompt_encoder.point_embed.weight"] = torch.cat([state.pop(n) for n in names])
    return state


def convert_sam2_state_dict(
    state: Mapping[str, torch.Tensor], *, image_size: int = IMAGE_SIZE, hiera: HieraLayout | None = None
) -> tuple[Sam2VideoConfig, dict[str, torch.Tensor]]:
    """``(Sam2VideoConfig, Sam2VideoModel state dict)`` for a SAM2 / SAM2.1 state dict."""
    config = sam2_config_from_state_dict(state, image_size=image_size, hiera=hiera)
    expected = dict(expected_shapes(Sam2VideoModel, config))
    points = config.prompt_encoder_config.num_point_embeddings
    table = expected.pop("prompt_encoder.point_embed.weight")
    expected.update(
        {f"prompt_encoder.point_embed.{i}.weight": torch.Size([1, table[1]]) for i in range(points)}
    )
    converted = remap_state_dict(
        state, sam2_rules(config, _final_downsampler(state)), expected, what="SAM2 checkpoint"
    )
    return config, _stack_point_embeddings(converted, points)


def convert_sam2(
    checkpoint: str | Path,
    out: str | Path,
    *,
    dtype: str = "keep",
    image_size: int = IMAGE_SIZE,
    hiera: HieraLayout | None = None,
) -> Path:
    """Convert Meta's SAM2 / SAM2.1 checkpoint (``sam2.1_hiera_*.pt``) into a ``Sam2VideoModel`` folder."""
    state = load_state_dict(checkpoint)
    try:
        config, converted = convert_sam2_state_dict(state, image_size=image_size, hiera=hiera)
    except ConversionError as err:
        raise ConversionError(f"{checkpoint}: {err}") from None
    return save_converted(Sam2VideoModel, config, converted, out, resolve_dtype(state, dtype))
