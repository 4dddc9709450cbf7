"""LISA / MoRA-original checkpoints (``xinlai/LISA-7B-v1``, ``groundmore/mora-zs-lisa7b``) -> a mora folder.

The result is a ``MoRAForVideoGrounding`` checkpoint of the ``lisa_7b_sam_vit_h`` preset (its MoRA-level
settings: the state before ``[SEG]`` feeds the projector, the ``[SEG]`` prompt alone reaches SAM, Vicuna
template, SAM per frame) with the sizes read from the tensors, plus its processor and tokenizer, which
``mora.load_model``, ``mora predict``, the evaluators and the training recipes load.

Source layout (LISA's ``LISAForCausalLM`` state dict, saved with ``save_pretrained`` as ``.bin`` shards or
safetensors) -> mora:

* ``model.embed_tokens`` / ``model.layers.N.*`` / ``model.norm`` / ``lm_head`` (LLaVA-v1 Llama)
  -> ``vlm.model.language_model.*`` / ``vlm.lm_head``;
* ``model.mm_projector`` (one Linear) -> ``vlm.model.multi_modal_projector.linear_1``, with an identity
  ``linear_2`` and ``projector_hidden_act="linear"`` (exact); a two-layer ``mm_projector.{0,2}`` (LLaVA-1.5)
  -> ``linear_1``/``linear_2`` with GELU;
* ``model.vision_tower.vision_tower.vision_model.*`` (CLIP) -> ``vlm.model.vision_tower.*``; LISA's merge
  script drops the CLIP tower, so it usually comes from ``--clip`` (a transformers ``CLIPVisionModel`` or
  ``CLIPModel`` folder or Hub id, default ``openai/clip-vit-large-patch14``);
* ``model.visual_model.*`` (segment-anything SAM) -> ``mask_engine.model.*`` via `convert_sam_state_dict`, or
  Meta's SAM from ``--sam`` instead (what the released MoRA training started from: it rebuilt SAM from
  ``sam_vit_h_4b8939.pth``);
* ``model.text_hidden_fcs.0.{0,2}`` -> ``seg_projector.{0,2}`` (same Linear-ReLU-Linear-Dropout).

Every source key is consumed or on ``IGNORED_KEYS`` (with the reason); mora modules LISA has no weights for
are listed in ``FRESH_MODULES`` (with the reason) and initialised as a new model would initialise them.
Missing or unknown keys and shape mismatches are `ConversionError`s naming the keys.

Vocabulary: the source tokenizer (LLaMA + LISA's ``<im_patch>``, ``<im_start>``, ``<im_end>``, ``[SEG]``) must
have one row per token in ``embed_tokens``; mora adds ``[LOC]``, ``<video>``, ``<motion>``, whose new
embedding and output rows start at the mean of the existing rows (LLaVA's rule). ``[SEG]`` keeps LISA's
trained row; its id is read with ``convert_tokens_to_ids``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch
from transformers import (
    CLIPVisionConfig,
    LlamaConfig,
    LlavaConfig,
    PreTrainedTokenizerBase,
    SamConfig,
)

from mora.constants import SEG_TOKEN
from mora.convert.checkpoint_io import (
    ConversionError,
    Rule,
    cast_floating,
    load_state_dict,
    remap_state_dict,
    resolve_dtype,
)
from mora.convert.lisa_sources import (
    load_clip,
    load_sam,
    load_source_tokenizer,
    read_source_config,
    resolve_source,
    source_folder,
)
from mora.convert.sam import convert_sam_state_dict, count_indexed, need
from mora.utils.io import atomic_path, write_json_atomic
from mora.utils.logging import get_logger

logger = get_logger(__name__)

PRESET = "lisa_7b_sam_vit_h"
DEFAULT_CLIP = "openai/clip-vit-large-patch14"
SAM_PREFIX = "model.visual_model."
CLIP_PREFIX = "model.vision_tower.vision_tower."
CLIP_HEAD_DIM = 64  # every OpenAI CLIP ViT (B/32, B/16, L/14, L/14-336): heads are not stored in any shape
PROVENANCE_NAME = "conversion.json"

# Source keys with no place in mora's architecture (regex -> reason). Anything else must be converted.
IGNORED_KEYS = {
    r"model\.layers\.\d+\.self_attn\.rotary_emb\.inv_freq": (
        "rotary frequencies saved as a buffer by transformers < 4.32; recomputed from rope_theta "
        "(checked equal before they are dropped)"
    ),
    re.escape(CLIP_PREFIX) + r"vision_model\.embeddings\.position_ids": (
        "CLIP's position-id buffer (0..N-1), recomputed by transformers"
    ),
}
# Keys of a --clip folder that are not the vision tower (a full CLIPModel holds the text side too).
IGNORED_CLIP_KEYS = {
    r"text_model\..*": "CLIP's text tower: LLaVA reads the vision tower's hidden states only",
    r"(visual_projection|text_projection)\.weight": "CLIP's contrastive projections: not used by LLaVA",
    r"logit_scale": "CLIP's contrastive temperature: not used by LLaVA",
    r"vision_model\.embeddings\.position_ids": "CLIP's position-id buffer (0..N-1), recomputed by transformers",
}
# mora modules LISA has no weights for (module -> reason); initialised fresh.
FRESH_MODULES = {
    "temporal_head": "the [LOC] span head: LISA and the released MoRA have no [LOC] token",
    "motion_tokenizer": "mora's motion tokens (frame differences): not in LISA (no tokens for one image)",
    "motion_dense_prompt": "mora's dense motion prompt for SAM: zero-initialised output, masks unchanged",
}
_LLAMA_PARAMS = (
    r"self_attn\.[qkvo]_proj\.weight|mlp\.(?:gate|up|down)_proj\.weight|"
    r"input_layernorm\.weight|post_attention_layernorm\.weight"
)


@dataclass
class LisaParts:
    """What the source provides besides its tensors: its ``config.json`` (may be empty) and tokenizer, and the
    CLIP tower to use when the checkpoint has none (``clip_state`` keys as in a CLIPVisionModel/CLIPModel)."""

    source_config: dict
    tokenizer: PreTrainedTokenizerBase
    clip_state: Mapping[str, torch.Tensor] | None = None
    clip_config: CLIPVisionConfig | None = None
    sam: tuple[SamConfig, dict[str, torch.Tensor]] | None = None  # --sam: replaces LISA's SAM
    notes: dict = field(default_factory=dict)


# ------------------------------------------------------------------------------------------ configs
def llama_config_from_state_dict(state: Mapping[str, torch.Tensor], source_config: dict) -> LlamaConfig:
    """Sizes from the tensors; heads, norm epsilon, rope and context from ``config.json`` (checked against
    the saved rotary frequencies when present)."""
    embed = need(state, "model.embed_tokens.weight")  # [vocab, hidden]
    vocab, hidden = (int(s) for s in embed.shape)
    layers = count_indexed(state, "model.layers.")
    if layers == 0:
        raise ConversionError("no model.layers.N.* keys: not a LLaVA/LISA language model")
    inv_freq = state.get("model.layers.0.self_attn.rotary_emb.inv_freq")
    heads = source_config.get("num_attention_heads")
    if heads is None:
        if inv_freq is None:
            raise ConversionError(
                "config.json has no num_attention_heads and the checkpoint no rotary_emb.inv_freq to read "
                "the head size from"
            )
        heads = hidden // (2 * int(inv_freq.numel()))
    heads = int(heads)
    if hidden % heads:
        raise ConversionError(f"hidden size {hidden} is not divisible by num_attention_heads {heads}")
    head_dim = hidden // heads
    kv_out = int(need(state, "model.layers.0.self_attn.k_proj.weight").shape[0])
    theta = float(source_config.get("rope_theta", 10000.0))
    if inv_freq is not None:
        expected = 1.0 / theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)
        if inv_freq.numel() != expected.numel() or not torch.allclose(
            inv_freq.float(), expected, rtol=1e-2, atol=0
        ):
            raise ConversionError(
                f"model.layers.0.self_attn.rotary_emb.inv_freq does not match rope_theta {theta} with head "
                f"size {head_dim}: the checkpoint uses another rotary scheme"
            )
    if source_config.get("rope_scaling"):
        raise ConversionError(f"config.json sets rope_scaling {source_config['rope_scaling']}: not supported")
    config = LlamaConfig(
        vocab_size=vocab,
        hidden_size=hidden,
        intermediate_size=int(need(state, "model.layers.0.mlp.gate_proj.weight").shape[0]),
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv_out // head_dim,
        max_position_embeddings=int(source_config.get("max_position_embeddings", 2048)),
        rms_norm_eps=float(source_config.get("rms_norm_eps", 1e-6)),
        rope_parameters={"rope_type": "default", "rope_theta": theta},
        tie_word_embeddings=False,
    )
    for key in ("hidden_size", "intermediate_size", "num_hidden_layers"):
        if key in source_config and int(source_config[key]) != getattr(config, key):
            raise ConversionError(
                f"config.json {key}={source_config[key]} but the tensors say {getattr(config, key)}"
            )
    return config


def clip_config_from_state_dict(state: Mapping[str, torch.Tensor], prefix: str) -> CLIPVisionConfig:
    """A CLIP vision config from the tower's tensors; heads assume OpenAI's head size of 64."""
    patch = need(state, prefix + "embeddings.patch_embedding.weight")  # [width, 3, p, p]
    width, size = int(patch.shape[0]), int(patch.shape[-1])
    positions = int(need(state, prefix + "embeddings.position_embedding.weight").shape[0])
    grid = math.isqrt(positions - 1)
    if grid * grid != positions - 1:
        raise ConversionError(f"{prefix}embeddings.position_embedding has {positions} rows, not 1 + a square")
    if width % CLIP_HEAD_DIM:
        raise ConversionError(f"CLIP width {width} is not a multiple of OpenAI's head size {CLIP_HEAD_DIM}")
    return CLIPVisionConfig(
        hidden_size=width,
        intermediate_size=int(need(state, prefix + "encoder.layers.0.mlp.fc1.weight").shape[0]),
        num_hidden_layers=count_indexed(state, prefix + "encoder.layers."),
        num_attention_heads=width // CLIP_HEAD_DIM,
        image_size=grid * size,
        patch_size=size,
    )


# ------------------------------------------------------------------------------------------- state
def _llm_rules() -> list[Rule]:
    return [
        Rule(r"model\.embed_tokens\.weight", "vlm.model.language_model.embed_tokens.weight"),
        Rule(rf"model\.layers\.(\d+)\.({_LLAMA_PARAMS})", r"vlm.model.language_model.layers.\1.\2"),
        Rule(r"model\.norm\.weight", "vlm.model.language_model.norm.weight"),
        Rule(r"lm_head\.weight", "vlm.lm_head.weight"),
        Rule(r"model\.mm_projector\.(weight|bias)", r"vlm.model.multi_modal_projector.linear_1.\1"),
        Rule(r"model\.mm_projector\.0\.(weight|bias)", r"vlm.model.multi_modal_projector.linear_1.\1"),
        Rule(r"model\.mm_projector\.2\.(weight|bias)", r"vlm.model.multi_modal_projector.linear_2.\1"),
        Rule(r"model\.text_hidden_fcs\.0\.([02])\.(weight|bias)", r"seg_projector.\1.\2"),
    ]


def _clip_rules(prefix: str) -> list[Rule]:
    # (rules come before the ignore list: the position-id buffer is left to IGNORED_KEYS)
    return [
        Rule(
            re.escape(prefix) + r"vision_model\.(?!embeddings\.position_ids$)(.+)",
            r"vlm.model.vision_tower.\1",
        )
    ]


def _one_linear_projector(state: Mapping[str, torch.Tensor]) -> bool:
    if "model.mm_projector.weight" in state:
        return True
    if "model.mm_projector.0.weight" in state and "model.mm_projector.2.weight" in state:
        return False
    raise ConversionError(
        "no multimodal projector: expected model.mm_projector.weight (LISA's one Linear) or "
        "model.mm_projector.{0,2}.weight (a two-layer MLP)"
    )


def _grow_vocabulary(weight: torch.Tensor, rows: int) -> torch.Tensor:
    """``weight [V, D]`` with ``rows - V`` new rows at the mean of the existing ones (LLaVA's rule)."""
    extra = rows - weight.shape[0]
    if extra <= 0:
        return weight
    mean = weight.float().mean(dim=0, keepdim=True).to(weight.dtype)
    return torch.cat([weight, mean.expand(extra, -1)], dim=0)


def _check_tokenizer(tokenizer: PreTrainedTokenizerBase, rows: int) -> None:
    if len(tokenizer) != rows:
        raise ConversionError(
            f"the tokenizer has {len(tokenizer)} tokens but model.embed_tokens has {rows} rows: "
            "the tokenizer saved beside the weights does not belong to them"
        )
    seg = tokenizer.convert_tokens_to_ids(SEG_TOKEN)
    if seg is None or seg == tokenizer.unk_token_id:
        raise ConversionError(f"the tokenizer has no {SEG_TOKEN} token: not a LISA tokenizer")


def convert_lisa_state_dict(state: Mapping[str, torch.Tensor], parts: LisaParts):
    """``(MoRAConfig, converted tensors, tokenizer)`` for a LISA state dict (the tokenizer gains mora's tokens).

    The converted tensors hold every key of the MoRA model except those of ``FRESH_MODULES``.
    """
    from mora.presets import lisa_7b_sam_vit_h
    from mora.processing.tokenizer import add_mora_tokens

    sam_keys = [k for k in state if k.startswith(SAM_PREFIX)]
    if parts.sam is not None:
        sam_config, sam_state = parts.sam
        if sam_keys:
            logger.info("%d keys under %s: replaced by --sam", len(sam_keys), SAM_PREFIX)
    elif not sam_keys:
        raise ConversionError(
            f"a LISA checkpoint without its SAM keys: no {SAM_PREFIX}* tensors (LISA's SAM ViT-H with its "
            "fine-tuned mask decoder). Convert the full LISA checkpoint, or name a SAM with --sam"
        )
    else:
        try:
            sam_config, sam_state = convert_sam_state_dict(state, prefix=SAM_PREFIX)
        except ConversionError as err:
            raise ConversionError(f"SAM under {SAM_PREFIX}: {err}") from None
    rest = {k: v for k, v in state.items() if not k.startswith(SAM_PREFIX)}

    text = llama_config_from_state_dict(rest, parts.source_config)
    in_checkpoint = any(k.startswith(CLIP_PREFIX) for k in rest)
    if in_checkpoint:
        clip_state, clip_prefix, clip_ignore = rest, CLIP_PREFIX, {}
        vision = clip_config_from_state_dict(rest, CLIP_PREFIX + "vision_model.")
        parts.notes["clip"] = "from the checkpoint"
    else:
        if parts.clip_state is None or parts.clip_config is None:
            raise ConversionError(
                f"the checkpoint has no CLIP tower ({CLIP_PREFIX}*): pass --clip (default {DEFAULT_CLIP})"
            )
        clip_state, clip_prefix = parts.clip_state, ""
        clip_ignore = {
            r"vision_model\.embeddings\.position_ids": IGNORED_CLIP_KEYS[
                r"vision_model\.embeddings\.position_ids"
            ]
        }
        vision = parts.clip_config
    one_linear = _one_linear_projector(rest)
    layer = int(parts.source_config.get("mm_vision_select_layer", -2))
    if parts.source_config.get("mm_vision_select_feature", "patch") != "patch":
        raise ConversionError("config.json mm_vision_select_feature is not 'patch' (LLaVA-v1 drops CLS)")

    tokenizer = parts.tokenizer
    _check_tokenizer(tokenizer, text.vocab_size)
    ids = add_mora_tokens(tokenizer)
    text.vocab_size = len(tokenizer)
    text.pad_token_id, text.eos_token_id = ids.pad, ids.eos
    text.bos_token_id = tokenizer.bos_token_id

    vlm = LlavaConfig(
        vision_config=vision,
        text_config=text,
        vision_feature_layer=layer,
        vision_feature_select_strategy="default",
        projector_hidden_act="linear" if one_linear else "gelu",
    )
    config = lisa_7b_sam_vit_h()
    config.vlm_config, config.mask_engine_config = vlm, sam_config
    config.backbone_image_size = int(vision.image_size)
    config._validate()

    expected = _expected_shapes(config)
    fresh = tuple(f"{name}." for name in FRESH_MODULES)
    targets = {k: v for k, v in expected.items() if not k.startswith(("mask_engine.", *fresh))}
    if one_linear:
        targets.pop("vlm.model.multi_modal_projector.linear_2.weight")
        targets.pop("vlm.model.multi_modal_projector.linear_2.bias")
    grown = dict(rest)
    for key in ("model.embed_tokens.weight", "lm_head.weight"):
        grown[key] = _grow_vocabulary(need(rest, key), text.vocab_size)
    # the source's own keys (its CLIP tower included, when it has one) and the --clip tower's
    clip_only = (
        {} if in_checkpoint else {k: v for k, v in clip_state.items() if k.startswith("vision_model.")}
    )
    converted = remap_state_dict(
        {**grown, **clip_only},
        _llm_rules() + _clip_rules(clip_prefix),
        targets,
        ignore=[*IGNORED_KEYS, *clip_ignore],
        what="LISA checkpoint",
    )
    if not in_checkpoint:  # the rest of a --clip folder (a full CLIPModel's text side) must be on the list
        extra = {k: v for k, v in clip_state.items() if not k.startswith("vision_model.")}
        remap_state_dict(extra, [], {}, ignore=list(IGNORED_CLIP_KEYS), what="--clip")
    if one_linear:
        width = text.hidden_size
        dtype = converted["vlm.model.multi_modal_projector.linear_1.weight"].dtype
        converted["vlm.model.multi_modal_projector.linear_2.weight"] = torch.eye(width, dtype=dtype)
        converted["vlm.model.multi_modal_projector.linear_2.bias"] = torch.zeros(width, dtype=dtype)
    converted.update({f"mask_engine.model.{k}": v for k, v in sam_state.items()})
    parts.notes.update(
        seg_token_id=ids.seg,
        added_tokens=len(tokenizer) - need(rest, "model.embed_tokens.weight").shape[0],
        projector="one Linear (identity second layer)" if one_linear else "two-layer MLP (GELU)",
    )
    return config, converted, tokenizer


def _expected_shapes(config) -> dict[str, torch.Size]:
    from mora.model.modeling_mora import MoRAForVideoGrounding

    with torch.device("meta"):
        model = MoRAForVideoGrounding(config)
    return {k: v.shape for k, v in model.state_dict().items()}


# ---------------------------------------------------------------------------------------- building
def build_model(config, converted: Mapping[str, torch.Tensor], dtype: torch.dtype, seed: int = 0):
    """A ``MoRAForVideoGrounding`` holding ``converted``; ``FRESH_MODULES`` initialised as in a new model.

    The model is built on the meta device (no memory, no random initialisation of the large parts); the
    converted tensors are assigned, and the fresh modules are built again on the CPU.
    """
    from mora.model.modeling_mora import MoRAForVideoGrounding

    with torch.device("meta"):
        model = MoRAForVideoGrounding(config)
    fresh = [name for name in FRESH_MODULES if getattr(model, name, None) is not None]
    missing, unexpected = model.load_state_dict(cast_floating(converted, dtype), strict=False, assign=True)
    outside = sorted(k for k in missing if not k.startswith(tuple(f"{n}." for n in fresh)))
    # tied copies (SAM's prompt-encoder positional embedding) are restored by the tie, not by a key
    outside = [k for k in outside if k not in model.all_tied_weights_keys]
    if outside or unexpected:
        raise ConversionError(
            f"converted keys do not fit the model: missing {outside}, unexpected {unexpected}"
        )
    torch.manual_seed(seed)
    for name in fresh:
        module = _fresh_module(model, name, config)
        setattr(model, name, module.to(dtype))
        logger.info("%s: initialised fresh (%s)", name, FRESH_MODULES[name])
    model.tie_weights()
    return model.eval()


def _fresh_module(model, name: str, config) -> torch.nn.Module:
    """Module ``name`` built on the CPU with the arguments ``MoRAForVideoGrounding.__init__`` gives it (checked
    against the meta model's module key for key)."""
    from mora.model.heads import MaskPooledSpanHead, TemporalHead
    from mora.model.motion_prompt import MotionDensePrompt
    from mora.model.motion_tokens import MotionTokenizer

    hidden, engine = config.hidden_size, model.mask_engine
    builders = {
        "temporal_head": lambda: (
            TemporalHead(hidden, config.temporal_head_dim)
            if config.span_head == "tokens"
            else MaskPooledSpanHead(hidden, config.temporal_head_dim)
        ),
        "motion_tokenizer": lambda: MotionTokenizer(
            model.adapter.motion_input_dim, hidden, config.motion_grid
        ),
        "motion_dense_prompt": lambda: MotionDensePrompt(
            engine.prompt_dim, engine.embedding_size, engine.image_size, config.motion_dense_prompt_dim
        ),
    }
    module = builders[name]()
    expected = {k: v.shape for k, v in getattr(model, name).state_dict().items()}
    got = {k: v.shape for k, v in module.state_dict().items()}
    if expected != got:
        raise ConversionError(f"{name}: the fresh module does not match the model's ({sorted(expected)})")
    return module


# ------------------------------------------------------------------------------------------ public
def convert_lisa(
    checkpoint: str | Path,
    out: str | Path,
    *,
    clip: str | Path | None = None,
    sam: str | Path | None = None,
    dtype: str = "keep",
) -> Path:
    """Convert a LISA / MoRA-original checkpoint (folder, weights file or Hub id) into a mora folder ``out``.

    ``clip``: the CLIP tower when the checkpoint has none (folder or Hub id; default ``DEFAULT_CLIP``).
    ``sam``: replace LISA's SAM (``model.visual_model.*``) by Meta's SAM (a ``.pth`` or a transformers
    ``SamModel`` folder / Hub id), as the released MoRA training did; LISA's ``text_hidden_fcs`` is kept.
    """
    from mora.processing.processing_mora import MoRAProcessor

    source = resolve_source(
        checkpoint, "--checkpoint", ["*.json", "*.safetensors", "*.bin", "tokenizer*", "*.model"]
    )
    folder = source_folder(source)
    state = load_state_dict(source)
    parts = LisaParts(source_config=read_source_config(folder), tokenizer=load_source_tokenizer(folder))
    if not any(k.startswith(CLIP_PREFIX) for k in state):
        parts.clip_state, parts.clip_config = load_clip(clip or DEFAULT_CLIP)
        parts.notes["clip"] = str(clip or DEFAULT_CLIP)
    elif clip is not None:
        logger.info("the checkpoint holds its CLIP tower: --clip %s is not used", clip)
    if sam is not None:
        parts.sam = load_sam(sam)
        parts.notes["sam"] = str(sam)
    try:
        config, converted, tokenizer = convert_lisa_state_dict(state, parts)
        kept = {
            k: v
            for k, v in state.items()
            if not any(re.fullmatch(p, k) for p in IGNORED_KEYS) and not (sam and k.startswith(SAM_PREFIX))
        }
        out_dtype = resolve_dtype(kept, dtype)
    except ConversionError as err:
        raise ConversionError(f"{checkpoint}: {err}") from None
    config.dtype = out_dtype
    model = build_model(config, converted, out_dtype)
    model.processor = MoRAProcessor.from_config(config, tokenizer)
    model.processor.apply_token_ids(config)
    provenance = {
        "converter": "mora convert lisa",
        "preset": PRESET,
        "checkpoint": str(checkpoint),
        "clip": parts.notes.get("clip"),
        "sam": parts.notes.get("sam"),
        "dtype": str(out_dtype).removeprefix("torch."),
        "fresh_modules": FRESH_MODULES,
        "ignored_keys": {
            **IGNORED_KEYS,
            **(
                {re.escape(SAM_PREFIX) + ".*": f"LISA's SAM, replaced by --sam {sam}"}
                if sam is not None
                else {}
            ),
        },
        **{k: v for k, v in parts.notes.items() if k not in ("clip", "sam")},
    }
    with atomic_path(Path(out)) as tmp:
        model.save_pretrained(tmp)
        write_json_atomic(tmp / PROVENANCE_NAME, provenance)
    logger.info("wrote the %s model (%s) to %s", PRESET, provenance["dtype"], out)
    return Path(out)
