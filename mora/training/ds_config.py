"""DeepSpeed JSON configs: ZeRO and communication settings live in ``train/ds/*.json``; everything the
run config already decides (batch, accumulation, clipping, precision) is written there as ``"auto"`` and
filled from `RunConfig`, so each value has one source. A JSON value that contradicts the run config, or an
optimizer/scheduler section (both are built from ``optim.*``), is rejected with a message naming it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mora.training.config import ConfigError, RunConfig

_FORBIDDEN_SECTIONS = ("optimizer", "scheduler", "fp16", "train_batch_size")


def load_deepspeed_config(run: RunConfig, root: Path | None = None) -> dict[str, Any]:
    path = Path(run.train.deepspeed)
    if not path.is_absolute() and root is not None:
        path = root / path
    if not path.is_file():
        raise ConfigError("train.deepspeed", f"DeepSpeed config not found: {path}")
    try:
        ds = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ConfigError("train.deepspeed", f"{path} is not valid JSON: {err}") from None
    return resolve_deepspeed_config(ds, run, source=str(path))


def resolve_deepspeed_config(ds: dict[str, Any], run: RunConfig, source: str = "<dict>") -> dict[str, Any]:
    """A copy of ``ds`` with the ``"auto"`` values filled in from ``run``."""
    for key in _FORBIDDEN_SECTIONS:
        if key in ds:
            raise ConfigError(
                "train.deepspeed",
                f"{source} sets {key!r}; the optimizer, schedule, batch and precision come from the run config",
            )
    wanted = {
        ("train_micro_batch_size_per_gpu",): run.train.micro_batch_size,
        ("gradient_accumulation_steps",): run.train.grad_accum_steps,
        ("gradient_clipping",): run.optim.grad_clip,
        ("bf16", "enabled"): run.train.precision == "bf16",
    }
    out = json.loads(json.dumps(ds))
    for keys, value in wanted.items():
        node = out
        for k in keys[:-1]:
            node = node.setdefault(k, {})
        current = node.get(keys[-1], "auto")
        if current != "auto" and current != value:
            raise ConfigError(
                "train.deepspeed",
                f"{source} sets {'.'.join(keys)}={current!r} but the run config gives {value!r}; "
                'write "auto" there',
            )
        node[keys[-1]] = value
    out.setdefault("zero_allow_untested_optimizer", True)  # plain torch AdamW is fine under ZeRO
    stage = out.get("zero_optimization", {}).get("stage", 0)
    if stage not in (0, 1, 2, 3):
        raise ConfigError("train.deepspeed", f"{source}: zero_optimization.stage must be 0-3, got {stage!r}")
    return out


def zero_stage(ds: dict[str, Any]) -> int:
    return int(ds.get("zero_optimization", {}).get("stage", 0))
