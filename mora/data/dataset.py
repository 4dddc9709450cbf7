"""Training datasets: ``DatasetSpec`` -> samples -> ``TrainingExample`` s, and a ratio-weighted mixture.

Every draw is a pure function of (seed, epoch, index), so DataLoader workers need no extra seeding
and a run is reproducible; call ``set_epoch`` to get fresh frame jitter each epoch.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from torch.utils.data import Dataset

from mora.data.readers import groundmore, jsonl, mevis, refytvos
from mora.data.sampling import SamplingConfig, make_example, make_video_group
from mora.data.schema import TrainingExample, VideoSample
from mora.utils.logging import get_logger

logger = get_logger("data")

DATASET_FORMATS = ("groundmore", "refytvos", "mevis", "revos", "jsonl")


@dataclass
class DatasetSpec:
    """One dataset of a training mixture, as a YAML config names it.

    format:  groundmore | refytvos | mevis | revos | jsonl
    root:    dataset folder (all paths inside are confined to it)
    meta:    meta file relative to root: GroundMoRe ``train.json`` (default), ``samples.jsonl`` for jsonl,
             or a meta_expressions JSON overriding the split's default
    split:   refytvos/mevis: ``train``/``valid``/``valid_u``; revos: ``train``/``valid``
    ratio:   relative sampling weight in a ``MixtureDataset``
    """

    format: str
    root: str | os.PathLike
    meta: str | None = None
    ratio: float = 1.0
    split: str | None = None
    name: str | None = None
    sampling: str = "auto"  # auto | linspace | target (see mora.data.sampling)
    max_side: int | None = None  # downscale frames larger than this before the processor
    use_span: bool = True  # answer with [LOC] and train the span when the sample has one
    mask_outside_span: bool = False  # supervise masks on every annotated frame, also outside the span
    spotlight_prob: float = 0.0  # MotionSight spotlight augmentation of the LM's frames (SamplingConfig)
    spotlight_distractor_prob: float = 0.25  # of those, around another object instead of the answer
    video_groups: bool = False  # one item = every question of one video on one draw of its frames
    include_no_target: bool = False  # ReVOS type_id 2 / expressions without objects
    q_types: list[str] | None = None  # keep only these question types
    limit: int | None = None  # first N samples (smoke runs)
    strict: bool = True  # False: skip (and log) malformed entries instead of raising
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.format not in DATASET_FORMATS:
            raise ValueError(f"dataset format {self.format!r} not in {DATASET_FORMATS}")
        if not self.ratio > 0:
            raise ValueError(f"dataset ratio must be > 0, got {self.ratio}")
        if not Path(self.root).is_dir():
            raise FileNotFoundError(f"dataset root {self.root} is not a folder")
        self.name = self.name or f"{self.format}:{Path(self.root).name}"


def load_samples(spec: DatasetSpec) -> list[VideoSample]:
    """Read the samples a spec names, filtered by its options."""
    issues: list[str] | None = None if spec.strict else []
    if spec.format == "groundmore":
        samples = groundmore.read_groundmore(spec.root, spec.meta or "train.json", issues=issues)
    elif spec.format == "refytvos":
        samples = refytvos.read_refytvos(spec.root, spec.split or "train", meta=spec.meta, issues=issues)
    elif spec.format == "mevis":
        samples = mevis.read_mevis(spec.root, spec.split or "train", meta=spec.meta, issues=issues)
    elif spec.format == "revos":
        samples = mevis.read_revos(spec.root, spec.split or "train", meta=spec.meta, issues=issues)
    else:
        samples = jsonl.read_samples_jsonl(spec.root, spec.meta or "samples.jsonl", issues=issues)
    for issue in issues or []:
        logger.warning("skipped: %s", issue)
    if not spec.include_no_target:
        samples = [s for s in samples if s.obj_ids]
    if spec.q_types is not None:
        samples = [s for s in samples if s.q_type in spec.q_types]
    if spec.limit is not None:
        samples = samples[: spec.limit]
    if not samples:
        raise ValueError(f"dataset {spec.name} ({spec.root}) has no samples after filtering")
    return samples


class VideoGroundingDataset(Dataset):
    """``TrainingExample`` s drawn from a list of ``VideoSample`` s.

    With ``video_groups``, an item is the list of examples of every question about one video, sharing one
    draw of its frames (so the model encodes the video once for all of them); otherwise one question.
    """

    def __init__(
        self,
        samples: Sequence[VideoSample],
        config: SamplingConfig,
        *,
        seed: int = 0,
        name: str = "",
        video_groups: bool = False,
    ):
        self.samples = list(samples)
        self.config = config
        self.seed = seed
        self.name = name
        self.epoch = 0
        self.groups: list[list[int]] | None = None
        if video_groups:
            by_video: dict[str, list[int]] = {}
            for i, sample in enumerate(self.samples):
                by_video.setdefault(str(sample.video), []).append(i)
            self.groups = list(by_video.values())

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.samples) if self.groups is None else len(self.groups)

    def item_sizes(self) -> list[int]:
        """Questions in each item: the size of each video group, 1 per item without ``video_groups``."""
        return [1] * len(self.samples) if self.groups is None else [len(g) for g in self.groups]

    def example(self, index: int, rng: np.random.Generator) -> TrainingExample | list[TrainingExample]:
        if self.groups is not None:
            return make_video_group([self.samples[i] for i in self.groups[index]], self.config, rng)
        return make_example(self.samples[index], self.config, rng)

    def __getitem__(self, index: int) -> TrainingExample | list[TrainingExample]:
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} items")
        return self.example(index, np.random.default_rng([self.seed, self.epoch, index]))


def build_dataset(spec: DatasetSpec, *, num_frames: int, seed: int) -> VideoGroundingDataset:
    """The torch Dataset of ``TrainingExample`` s (or video groups of them) for one spec."""
    config = SamplingConfig(
        num_frames=num_frames,
        strategy=spec.sampling,
        max_side=spec.max_side,
        use_span=spec.use_span,
        mask_outside_span=spec.mask_outside_span,
        spotlight_prob=spec.spotlight_prob,
        spotlight_distractor_prob=spec.spotlight_distractor_prob,
    )
    samples = load_samples(spec)
    logger.info("dataset %s: %d samples", spec.name, len(samples))
    return VideoGroundingDataset(
        samples, config, seed=seed, name=spec.name or "", video_groups=spec.video_groups
    )


class MixtureDataset(Dataset):
    """``length`` draws: a dataset by ``ratios``, then one of its samples uniformly at random."""

    def __init__(
        self, datasets: Sequence[VideoGroundingDataset], ratios: Sequence[float], length: int, seed: int
    ):
        if len(datasets) != len(ratios) or not datasets:
            raise ValueError(
                f"need one ratio per dataset, got {len(datasets)} datasets and {len(ratios)} ratios"
            )
        if any(not r > 0 for r in ratios):
            raise ValueError(f"ratios must be positive, got {list(ratios)}")
        if any(len(d) == 0 for d in datasets):
            raise ValueError("a mixture dataset is empty")
        if length < 1:
            raise ValueError(f"mixture length must be >= 1, got {length}")
        self.datasets = list(datasets)
        self.probs = np.asarray(ratios, dtype=np.float64) / float(np.sum(ratios))
        self.length = length
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.length

    def choose(self, index: int) -> tuple[int, int, np.random.Generator]:
        """(dataset number, sample index, generator for the example) of draw ``index``."""
        rng = np.random.default_rng([self.seed, self.epoch, index])
        which = int(rng.choice(len(self.datasets), p=self.probs))
        return which, int(rng.integers(len(self.datasets[which]))), rng

    def __getitem__(self, index: int) -> TrainingExample | list[TrainingExample]:
        if not 0 <= index < self.length:
            raise IndexError(f"index {index} out of range for a mixture of length {self.length}")
        which, sample, rng = self.choose(index)
        return self.datasets[which].example(sample, rng)
