"""Typed run configuration of a training run.

A run is described by `RunConfig` (dataclasses below). YAML files in ``train/configs/`` state only the
differences from these defaults (``base:`` may name another YAML to start from); command-line overrides
``key.sub=value`` are applied last (`mora.training.config_io`). Every field is validated in
``__post_init__``; a bad value raises `ConfigError` naming the field before any heavy work starts.
Derived values (total steps, global batch) are properties, never written back into the config.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

PRECISIONS = ("fp32", "bf16")
SCHEDULES = ("warmup_decay", "cosine", "constant")


class ConfigError(ValueError):
    """A run-config value is wrong; the message names the field (``optim.lr``) and the value."""

    def __init__(self, field_path: str, message: str) -> None:
        self.field_path = field_path
        super().__init__(f"{field_path}: {message}")


def _check(ok: bool, field_path: str, message: str) -> None:
    if not ok:
        raise ConfigError(field_path, message)


@dataclass
class ModelConfig:
    """Which model to train and which of its parts are trainable.

    Exactly one source: ``pretrained`` (a local ``from_pretrained`` folder or a Hub id; real weights) or
    ``preset`` (a function of `mora.presets`, e.g. ``tiny`` or ``lisa_7b_sam_vit_h``, called with
    ``preset_kwargs``; its tokenizer is ``tokenizer``, a folder or Hub id, or the offline tiny tokenizer when
    null). ``config_overrides`` are set on the `MoRAConfig` (e.g. ``use_motion_tokens``).
    ``trainable`` holds the keyword arguments of the model's `TrainableSettings` (LoRA rank/alpha/dropout/
    targets and the trainable groups); unknown keys are rejected when the model package is loaded.
    """

    preset: str | None = "tiny"
    preset_kwargs: dict[str, Any] = field(default_factory=dict)
    tokenizer: str | None = None
    pretrained: str | None = None
    config_overrides: dict[str, Any] = field(default_factory=dict)
    trainable: dict[str, Any] = field(default_factory=dict)
    gradient_checkpointing: bool = False

    def __post_init__(self) -> None:
        _check(
            (self.preset is None) != (self.pretrained is None),
            "model.preset",
            f"set exactly one of model.preset and model.pretrained (got preset={self.preset!r}, "
            f"pretrained={self.pretrained!r}; use model.preset=null to load model.pretrained)",
        )
        if self.preset is not None:
            _check(self.preset.isidentifier(), "model.preset", f"not a preset function name: {self.preset!r}")


@dataclass
class DatasetEntry:
    """One training source. ``spec`` holds the fields of `mora.data.DatasetSpec` (format, root, meta,
    ratio = sampling weight in the mixture, split, ...), checked against it before training starts."""

    spec: dict[str, Any] = field(default_factory=dict)
    optional: bool = False  # skip (with a warning) when its root folder does not exist

    def __post_init__(self) -> None:
        _check(
            "format" in self.spec and "root" in self.spec,
            "data.datasets[].spec",
            f"must name at least the dataset format and root, got {self.spec}",
        )


@dataclass
class DataConfig:
    """Training data: a mixture of sources, clips of ``num_frames`` frames."""

    datasets: list[DatasetEntry] = field(
        default_factory=lambda: [
            DatasetEntry(spec={"format": "groundmore", "root": "data/synthetic", "meta": "train.json"})
        ]
    )
    num_frames: int = 8
    # samples per pass of the mixture (None: the sum of the sources' sizes)
    mixture_length: int | None = None
    num_workers: int = 0
    # MiB of decoded frames and label maps kept in memory across steps (`mora.data.decoded_cache`; per process,
    # so per data-loader worker); 0 = every read decodes its file
    decoded_cache_mb: int = 0

    def __post_init__(self) -> None:
        self.datasets = [d if isinstance(d, DatasetEntry) else DatasetEntry(**d) for d in self.datasets]
        _check(len(self.datasets) > 0, "data.datasets", "needs at least one dataset")
        _check(self.num_frames >= 1, "data.num_frames", f"must be >= 1, got {self.num_frames}")
        _check(
            self.mixture_length is None or self.mixture_length >= 1,
            "data.mixture_length",
            f"must be >= 1 or null, got {self.mixture_length}",
        )
        _check(self.num_workers >= 0, "data.num_workers", f"must be >= 0, got {self.num_workers}")
        _check(
            self.decoded_cache_mb >= 0, "data.decoded_cache_mb", f"must be >= 0, got {self.decoded_cache_mb}"
        )


@dataclass
class OptimConfig:
    """AdamW and the learning-rate schedule (per optimizer step)."""

    lr: float = 3e-4
    betas: tuple[float, float] = (0.9, 0.95)
    eps: float = 1e-8
    weight_decay: float = 0.0
    grad_clip: float = 1.0  # max global gradient norm; 0 disables clipping
    schedule: str = (
        "warmup_decay"  # warmup_decay: linear warm-up then linear decay to 0 (DeepSpeed WarmupDecayLR)
    )
    warmup_steps: int = 100
    min_lr_ratio: float = 0.0  # cosine floor as a fraction of lr
    # torch's fused AdamW (one kernel over all parameters, CPU and CUDA): the same update as the per-parameter
    # loop up to rounding, about 6x faster on CPU for the tiny default's 355 tensors (25 -> 4 ms per step)
    fused: bool = True

    def __post_init__(self) -> None:
        self.betas = tuple(float(b) for b in self.betas)
        _check(self.lr > 0, "optim.lr", f"must be > 0, got {self.lr}")
        _check(
            len(self.betas) == 2 and all(0.0 <= b < 1.0 for b in self.betas),
            "optim.betas",
            f"needs two values in [0, 1), got {self.betas}",
        )
        _check(self.eps > 0, "optim.eps", f"must be > 0, got {self.eps}")
        _check(self.weight_decay >= 0, "optim.weight_decay", f"must be >= 0, got {self.weight_decay}")
        _check(self.grad_clip >= 0, "optim.grad_clip", f"must be >= 0, got {self.grad_clip}")
        _check(
            self.schedule in SCHEDULES, "optim.schedule", f"must be one of {SCHEDULES}, got {self.schedule!r}"
        )
        _check(self.warmup_steps >= 0, "optim.warmup_steps", f"must be >= 0, got {self.warmup_steps}")
        _check(
            0.0 <= self.min_lr_ratio <= 1.0,
            "optim.min_lr_ratio",
            f"must lie in [0, 1], got {self.min_lr_ratio}",
        )


@dataclass
class TrainConfig:
    """Batching, length, precision and the DeepSpeed JSON."""

    micro_batch_size: int = 1  # per process
    grad_accum_steps: int = 10
    steps_per_epoch: int = 500  # optimizer steps
    epochs: int = 20
    max_steps: int | None = None  # stop early (the schedule still spans steps_per_epoch * epochs)
    seed: int = 0
    precision: str = "bf16"
    deepspeed: str = "train/ds/zero2.json"
    output_dir: str = "runs/default"
    # processes the CPU flow of `bash run.sh` (no CONFIG) starts on this machine (torch.distributed.run, gloo),
    # each with cores // cpu_processes threads: on a few cores, processes of one thread each get through more
    # work than one process of several threads. The global batch is micro_batch_size x processes x
    # grad_accum_steps. Launches through NGPU / NNODES and plain `python train/train.py` ignore it.
    cpu_processes: int = 1

    def __post_init__(self) -> None:
        _check(
            self.micro_batch_size >= 1, "train.micro_batch_size", f"must be >= 1, got {self.micro_batch_size}"
        )
        _check(
            self.grad_accum_steps >= 1, "train.grad_accum_steps", f"must be >= 1, got {self.grad_accum_steps}"
        )
        _check(
            self.steps_per_epoch >= 1, "train.steps_per_epoch", f"must be >= 1, got {self.steps_per_epoch}"
        )
        _check(self.epochs >= 1, "train.epochs", f"must be >= 1, got {self.epochs}")
        _check(
            self.max_steps is None or self.max_steps >= 1,
            "train.max_steps",
            f"must be >= 1 or null, got {self.max_steps}",
        )
        _check(self.cpu_processes >= 1, "train.cpu_processes", f"must be >= 1, got {self.cpu_processes}")
        _check(
            self.precision in PRECISIONS,
            "train.precision",
            f"must be one of {PRECISIONS}, got {self.precision!r}",
        )
        _check(bool(self.output_dir), "train.output_dir", "must not be empty")

    @property
    def schedule_steps(self) -> int:
        """Optimizer steps the learning-rate schedule spans."""
        return self.steps_per_epoch * self.epochs

    @property
    def total_steps(self) -> int:
        """Optimizer steps this run performs."""
        return min(self.schedule_steps, self.max_steps or self.schedule_steps)


@dataclass
class CheckpointConfig:
    every_steps: int = 500  # 0: only at the end
    keep_last: int = 3
    export: bool = True  # write a from_pretrained checkpoint (LoRA merged) at the end

    def __post_init__(self) -> None:
        _check(self.every_steps >= 0, "checkpoint.every_steps", f"must be >= 0, got {self.every_steps}")
        _check(self.keep_last >= 1, "checkpoint.keep_last", f"must be >= 1, got {self.keep_last}")


@dataclass
class LogConfig:
    every_steps: int = 10  # TensorBoard scalars and progress-bar refresh, in optimizer steps
    tensorboard: bool = True
    progress_bar: bool = True

    def __post_init__(self) -> None:
        _check(self.every_steps >= 1, "log.every_steps", f"must be >= 1, got {self.every_steps}")


@dataclass
class RunConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    log: LogConfig = field(default_factory=LogConfig)

    def __post_init__(self) -> None:
        _check(
            self.optim.schedule != "warmup_decay" or self.optim.warmup_steps < self.train.schedule_steps,
            "optim.warmup_steps",
            f"must be below the schedule length train.steps_per_epoch * train.epochs = {self.train.schedule_steps}",
        )
