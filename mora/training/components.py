"""Build MoRA's model, processor, training data and export function from a `RunConfig`."""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from transformers import AutoTokenizer

from mora.configuration_mora import MoRAConfig
from mora.data import DatasetSpec, MixtureDataset, MoRACollator, build_dataset
from mora.model.modeling_mora import MoRAForVideoGrounding
from mora.model.trainable import LoraSettings, TrainableSettings, configure_trainable, merge_lora
from mora.presets import PRESETS
from mora.processing.processing_mora import MoRAProcessor
from mora.processing.tokenizer import build_tiny_tokenizer
from mora.training.config import ConfigError, RunConfig
from mora.training.trainer import TrainingComponents
from mora.utils.io import atomic_path
from mora.utils.logging import get_logger

logger = get_logger("training")

TRAINABLE_RECIPES = ("default", "everything")


def trainable_settings(raw: Mapping[str, Any]) -> Any:
    """`TrainableSettings` from ``model.trainable``: ``recipe`` (``default`` = MoRA/LISA: LoRA + heads +
    mask decoder; ``everything`` = all parameters, for tiny models from scratch), then field overrides;
    ``lora_settings`` holds the `LoraSettings` fields (r, alpha, dropout, target_modules)."""
    raw = dict(raw)
    recipe = raw.pop("recipe", "default")
    if recipe not in TRAINABLE_RECIPES:
        raise ConfigError("model.trainable.recipe", f"must be one of {TRAINABLE_RECIPES}, got {recipe!r}")
    base = TrainableSettings.everything() if recipe == "everything" else TrainableSettings()
    lora_raw = raw.pop("lora_settings", None)
    known = {f.name for f in dataclasses.fields(TrainableSettings)}
    for key, value in raw.items():
        if key not in known:
            raise ConfigError(f"model.trainable.{key}", f"unknown field (known: {', '.join(sorted(known))})")
        if not isinstance(value, bool):
            raise ConfigError(f"model.trainable.{key}", f"expected true/false, got {value!r}")
    lora = base.lora_settings
    if lora_raw is not None:
        try:
            lora = LoraSettings(**{**dataclasses.asdict(base.lora_settings), **lora_raw})
        except (TypeError, ValueError) as err:
            raise ConfigError("model.trainable.lora_settings", str(err)) from None
    return dataclasses.replace(base, **raw, lora_settings=lora)


def _preset_fn(name: str) -> Callable[..., MoRAConfig]:
    """The preset function registered as ``name`` in `mora.presets.PRESETS`."""
    if name not in PRESETS:
        raise ConfigError(
            "model.preset", f"no preset {name!r} in mora.presets (available: {', '.join(sorted(PRESETS))})"
        )
    return PRESETS[name]


def check_settings(run: RunConfig) -> None:
    """Validate the model and data sections against the model and data packages (nothing heavy is built)."""
    trainable_settings(run.model.trainable)
    dataset_specs(run)
    if run.model.preset is not None:
        _preset_fn(run.model.preset)

    for key in run.model.config_overrides:
        if not hasattr(MoRAConfig, key):
            raise ConfigError(f"model.config_overrides.{key}", "not a MoRAConfig field")


def build_model_and_processor(run: RunConfig) -> tuple[torch.nn.Module, Any]:
    """The model (before `configure_trainable`) with its processor attached as ``model.processor``."""
    cfg = run.model
    if cfg.pretrained is not None:
        model = MoRAForVideoGrounding.from_pretrained(cfg.pretrained, **cfg.config_overrides)
        if model.processor is None:
            raise ConfigError("model.pretrained", f"{cfg.pretrained} holds no MoRA processor (tokenizer)")
    else:
        model = _model_from_preset(cfg)
    if cfg.gradient_checkpointing:
        model.gradient_checkpointing_enable()
    return model, model.processor


def _model_from_preset(cfg: Any) -> torch.nn.Module:

    try:
        config = _preset_fn(cfg.preset)(**cfg.preset_kwargs)
        for key, value in cfg.config_overrides.items():
            setattr(config, key, value)
        config._validate()
    except (TypeError, ValueError) as err:
        raise ConfigError("model.preset_kwargs", f"preset {cfg.preset!r}: {err}") from None
    processor = MoRAProcessor.from_config(config, _tokenizer(cfg.tokenizer))
    processor.apply_token_ids(config)
    model = MoRAForVideoGrounding(config)
    model.processor = processor
    return model


def _tokenizer(name: str | None) -> Any:
    if name is None:
        return build_tiny_tokenizer()

    return AutoTokenizer.from_pretrained(name)


def dataset_specs(run: RunConfig) -> list[Any]:
    """`DatasetSpec` of every available source (optional ones whose root is missing are skipped)."""
    specs = []
    for i, entry in enumerate(run.data.datasets):
        root = entry.spec.get("root")
        if entry.optional and not Path(root).exists():
            logger.warning("optional dataset %s not found: skipped", root)
            continue
        try:
            specs.append(DatasetSpec(**entry.spec))
        except FileNotFoundError as err:
            raise ConfigError(f"data.datasets.{i}.spec.root", str(err)) from None
        except (TypeError, ValueError) as err:
            raise ConfigError(f"data.datasets.{i}.spec", str(err)) from None
    if not specs:
        raise ConfigError("data.datasets", "none of the datasets is available")
    return specs


def build_train_dataset(run: RunConfig, seed: int) -> torch.utils.data.Dataset:

    specs = dataset_specs(run)
    datasets = [
        build_dataset(spec, num_frames=run.data.num_frames, seed=seed + i) for i, spec in enumerate(specs)
    ]
    if len(datasets) == 1 and run.data.mixture_length is None:
        return datasets[0]
    length = run.data.mixture_length or sum(len(d) for d in datasets)
    logger.info(
        "mixture of %s with ratios %s, %d draws per pass",
        [s.name for s in specs],
        [s.ratio for s in specs],
        length,
    )
    return MixtureDataset(datasets, [s.ratio for s in specs], length, seed)


def make_export_fn(model: torch.nn.Module, processor: Any):
    """Rank-0 writer of a ``from_pretrained`` folder: a fresh model of the same architecture, loaded with
    the trained state (strict), LoRA merged via `merge_lora`, saved with its processor, atomically."""
    config = copy.deepcopy(model.config)

    def export(state: Mapping[str, torch.Tensor], out_dir: Path) -> None:
        fresh = MoRAForVideoGrounding(copy.deepcopy(config))
        fresh.load_state_dict(dict(state), strict=True)
        merge_lora(fresh)
        fresh.processor = processor
        with atomic_path(out_dir) as tmp:
            fresh.save_pretrained(tmp)

    return export


def build_mora_components(run: RunConfig, seed: int) -> TrainingComponents:

    torch.manual_seed(seed)
    model, processor = build_model_and_processor(run)
    counts = configure_trainable(model, trainable_settings(run.model.trainable))
    logger.info("trainable parameters: %d of %d", counts["total"], sum(p.numel() for p in model.parameters()))
    dataset = build_train_dataset(run, seed)
    return TrainingComponents(
        model=model,
        dataset=dataset,
        collate_fn=MoRACollator(processor),
        export_fn=make_export_fn(model, processor),
    )
