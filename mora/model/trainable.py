"""Which parameters train: LoRA on the language model, new token rows, heads, mask decoder.

Default (MoRA/LISA): LoRA (r=8, alpha=16, dropout 0.05, q_proj/v_proj) on the language model only; the
rows of the new special tokens in the input embeddings and lm_head (a gradient mask keeps the other rows
fixed); the seg projector, temporal head, motion tokenizer, motion dense prompt and mask decoder.
Frozen: vision tower, multimodal projector, mask-engine image encoder. `TrainableSettings.everything()`
is the from-scratch recipe of tiny models.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
from peft import LoraConfig, inject_adapter_in_model
from peft.tuners.lora import LoraLayer
from torch import nn

from mora.utils.logging import get_logger

logger = get_logger("trainable")


@dataclass
class LoraSettings:
    """peft LoRA on the language model (module names matched inside the language model only)."""

    r: int = 8
    alpha: int = 16
    dropout: float = 0.05
    target_modules: tuple[str, ...] = ("q_proj", "v_proj")

    def __post_init__(self) -> None:
        self.target_modules = tuple(self.target_modules)
        if self.r < 1 or not self.target_modules:
            raise ValueError(f"LoRA needs r >= 1 and target modules, got r={self.r}, {self.target_modules}")

    @property
    def target_regex(self) -> str:
        """Full-name regex: a listed projection inside a decoder layer of the language model."""
        names = "|".join(self.target_modules)
        return rf".*layers\.\d+\..*\.({names})$"


@dataclass
class TrainableSettings:
    """Switches for `configure_trainable`."""

    lora: bool = True
    lora_settings: LoraSettings = field(default_factory=LoraSettings)
    train_language_model_full: bool = False
    train_new_token_rows: bool = True
    train_vision_tower: bool = False
    train_projector: bool = False
    train_mask_image_encoder: bool = False
    train_mask_decoder: bool = True
    # seg projector, temporal head, motion tokenizer, frame prompt reader, motion dense prompt
    train_heads: bool = True

    @classmethod
    def everything(cls) -> TrainableSettings:
        """Train all parameters (tiny models trained from scratch); no LoRA."""
        return cls(
            lora=False,
            train_language_model_full=True,
            train_vision_tower=True,
            train_projector=True,
            train_mask_image_encoder=True,
        )


def inject_lora(model: nn.Module, settings: LoraSettings) -> None:
    """Add LoRA layers to the language model of ``model`` (a `MoRAForVideoGrounding`) and record them."""
    lora_config = LoraConfig(
        r=settings.r,
        lora_alpha=settings.alpha,
        lora_dropout=settings.dropout,
        target_modules=settings.target_regex,
        bias="none",
    )
    inject_adapter_in_model(lora_config, model.adapter.language_model)
    model.config.lora = asdict(settings) | {"target_modules": list(settings.target_modules)}


def _has_lora(model: nn.Module) -> bool:
    return any("lora_" in name for name, _ in model.adapter.language_model.named_parameters())


def configure_trainable(model: nn.Module, settings: TrainableSettings) -> dict[str, int]:
    """Set ``requires_grad`` on ``model`` per ``settings``; inject LoRA when asked. Returns the counts."""
    model.requires_grad_(False)
    lm = model.adapter.language_model
    if settings.lora and not _has_lora(model):
        inject_lora(model, settings.lora_settings)
    if settings.lora:
        for name, param in lm.named_parameters():
            if "lora_" in name:
                param.requires_grad_(True)
    if settings.train_language_model_full:
        for name, param in lm.named_parameters():
            if "lora_" not in name:
                param.requires_grad_(True)
        model.adapter.lm_head.requires_grad_(True)
    _set_new_token_rows(model, settings.train_new_token_rows and not settings.train_language_model_full)
    for flag, modules in (
        (settings.train_vision_tower, model.adapter.vision_modules()),
        (settings.train_projector, model.adapter.projector_modules()),
        (settings.train_mask_image_encoder, model.mask_engine.image_encoder_modules()),
        (settings.train_mask_decoder, model.mask_engine.mask_decoder_modules()),
        (settings.train_heads, _head_modules(model)),
    ):
        if flag:
            for module in modules:
                module.requires_grad_(True)
    counts = trainable_parameter_counts(model)
    logger.info("trainable parameters: %s", counts)
    return counts


def _head_modules(model: nn.Module) -> list[nn.Module]:
    heads = [
        model.seg_projector,
        model.temporal_head,
        model.motion_tokenizer,
        model.frame_prompt_reader,
        getattr(model, "motion_dense_prompt", None),
        model.video_adapter,
        model.grounding_reader,
        model.video_dense_prompt,
        model.pixel_mask_path,
    ]
    return [h for h in heads if h is not None]


def new_token_ids(model: nn.Module) -> list[int]:
    """Ids of the rows MoRA adds to a pretrained vocabulary ([SEG], [LOC])."""
    cfg = model.config
    return sorted({i for i in (cfg.seg_token_id, cfg.loc_token_id) if i is not None})


def _set_new_token_rows(model: nn.Module, enabled: bool) -> None:
    """Train only the new-token rows of the input embeddings and lm_head via a gradient mask."""
    for handle in getattr(model, "_row_mask_handles", []):
        handle.remove()
    model._row_mask_handles = []
    model._row_mask_params = set()
    if not enabled:
        return
    rows = new_token_ids(model)
    for weight in {id(w): w for w in (_embedding_weight(model), model.adapter.lm_head.weight)}.values():
        mask = torch.zeros(weight.shape[0], 1, dtype=weight.dtype, device=weight.device)
        mask[rows] = 1
        weight.requires_grad_(True)
        model._row_mask_handles.append(weight.register_hook(lambda grad, m=mask: grad * m.to(grad.device)))
        model._row_mask_params.add(id(weight))


def _embedding_weight(model: nn.Module) -> nn.Parameter:
    return model.adapter.vlm.get_input_embeddings().weight


def trainable_parameter_counts(model: nn.Module) -> dict[str, int]:
    """Trainable parameter counts by group (row-masked embeddings count their trainable rows only)."""
    groups: dict[str, list[nn.Module]] = {
        "vision_tower": model.adapter.vision_modules(),
        "projector": model.adapter.projector_modules(),
        "mask_image_encoder": model.mask_engine.image_encoder_modules(),
        "mask_decoder": model.mask_engine.mask_decoder_modules(),
        "seg_projector": [model.seg_projector],
        "temporal_head": [model.temporal_head],
        "motion_tokenizer": [model.motion_tokenizer] if model.motion_tokenizer is not None else [],
        "frame_prompt_reader": [model.frame_prompt_reader] if model.frame_prompt_reader is not None else [],
        "motion_dense_prompt": [m] if (m := getattr(model, "motion_dense_prompt", None)) is not None else [],
        **{
            name: [m] if (m := getattr(model, name)) is not None else []
            for name in ("video_adapter", "grounding_reader", "video_dense_prompt", "pixel_mask_path")
        },
    }
    counts: dict[str, int] = {}
    seen: set[int] = set()
    masked = getattr(model, "_row_mask_params", set())
    n_rows = len(new_token_ids(model))
    for group, modules in groups.items():
        counts[group] = _count(modules, seen)
    lm_params = list(model.adapter.language_model.named_parameters()) + [
        ("lm_head", model.adapter.lm_head.weight)
    ]
    counts["lora"] = counts["language_model"] = counts["new_token_rows"] = 0
    for name, param in lm_params:
        if id(param) in seen or not param.requires_grad:
            continue
        seen.add(id(param))
        if id(param) in masked:
            counts["new_token_rows"] += n_rows * param.shape[1]
        elif "lora_" in name:
            counts["lora"] += param.numel()
        else:
            counts["language_model"] += param.numel()
    other = sum(p.numel() for p in model.parameters() if p.requires_grad and id(p) not in seen)
    counts["other"] = other
    counts["total"] = sum(v for k, v in counts.items() if k != "total")
    return counts


def _count(modules: list[nn.Module], seen: set[int]) -> int:
    total = 0
    for module in modules:
        for param in module.parameters():
            if id(param) not in seen:
                seen.add(id(param))
                total += param.numel() if param.requires_grad else 0
    return total


def merge_lora(model: nn.Module) -> nn.Module:
    """Fold LoRA into the base weights (for export); the model keeps plain Linear layers afterwards."""
    lm = model.adapter.language_model
    replacements = [(name, module) for name, module in lm.named_modules() if isinstance(module, LoraLayer)]
    for name, module in replacements:
        module.merge()
        parent_name, _, child = name.rpartition(".")
        parent = lm.get_submodule(parent_name) if parent_name else lm
        setattr(parent, child, module.get_base_layer())
    model.config.lora = None
    return model
