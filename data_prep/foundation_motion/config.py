"""One config for the whole pipeline: every model by Hub id (or local folder), every threshold by name.

``PipelineConfig.from_yaml(path)`` reads a YAML whose keys mirror the dataclasses (unknown keys raise);
``PipelineConfig.tiny(folder)`` points every model at the tiny random stand-ins that
``data_prep.foundation_motion.tiny_models.build_tiny_models`` writes (same ``from_pretrained`` path).
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

QA_BACKENDS = ("rule-based", "openai", "local")


@dataclass
class ModelsConfig:
    """Hub ids (or local folders) of every model the pipeline may load."""

    detector: str = "google/owlv2-base-patch16-ensemble"  # Owlv2ForObjectDetection
    grounding_dino: str = "IDEA-Research/grounding-dino-tiny"  # detect.detector: grounding-dino
    tracker: str = "facebook/sam2.1-hiera-large"  # Sam2VideoModel
    llm: str = "Qwen/Qwen2.5-7B-Instruct"  # --llm local (AutoModelForCausalLM)
    openai_model: str = "gpt-4o-mini"  # --llm openai (model name sent to the endpoint)
    vlm: str = "gpt-4o-mini"  # detect.proposals: vlm (a vision model on the same OpenAI-compatible endpoint)


@dataclass
class ClipConfig:
    """Stage 1: one clip per source video (FoundationMotion's rule), optionally resampled."""

    min_seconds: float = 5.0  # videos up to this long are kept whole
    max_seconds: float = 10.0
    fps: float | None = None  # resample to this rate (FoundationMotion: 30); None keeps the source rate
    max_frames: int = 300  # clips with more frames are skipped
    max_side: int | None = 640  # downscale larger frames before every model
    seed: int = 0


@dataclass
class CameraConfig:
    """Camera-motion gate: median Farneback flow between consecutive frames (background dominates)."""

    enabled: bool = True
    threshold: float = 0.05  # mean global motion, fraction of the frame diagonal per second
    action: str = "drop"  # drop | tag
    max_side: int = 160  # flow is computed on frames downscaled to this side

    def __post_init__(self) -> None:
        if self.action not in ("drop", "tag"):
            raise ValueError(f"camera.action must be drop or tag, got {self.action!r}")


@dataclass
class DetectConfig:
    """Stage 2: object proposals (names + boxes) and open-vocabulary detection."""

    proposals: str = "rule-based"  # rule-based (colour blobs, names) | vocabulary (names) | vlm (names)
    min_names: int = 1  # clips with fewer proposed names are skipped (FoundationMotion: 3)
    detector: str = "owlv2"  # owlv2 | grounding-dino | none (use the proposals' own boxes)
    vocabulary: list[str] = field(default_factory=lambda: ["person", "hand", "car", "ball", "cup", "box"])
    box_threshold: float = 0.25
    text_threshold: float = 0.25  # OWLv2 has one score per (box, query): both thresholds apply to it
    redetect_interval: int = 10  # frames between detections (frame 0, k, 2k, ...)
    nms_iou: float = 0.5
    match_iou: float = 0.3  # a re-detection overlapping a tracked object's box this much is that object
    min_area_px: int = 20
    max_area_fraction: float = 0.8
    max_objects: int = 8
    min_saturation: int = 80  # rule-based proposals: colour blobs on a low-saturation background ...
    colour_distance: float = 80.0  # ... within this RGB distance of a named colour


@dataclass
class TrackConfig:
    """Stage 3: per-object masks on every frame."""

    tracker: str = "sam2"  # sam2 | colour (the rule-based reference tracker)
    device: str = "cpu"
    dtype: str = "float32"
    min_area_px: int = 10  # smaller masks count as not visible
    smooth_window: int = 3  # moving-average window of the mask boxes (odd)
    colour_tolerance: float = 60.0  # colour tracker: RGB distance to the object's colour


@dataclass
class FactsConfig:
    """Stage 4: trajectory facts from the tracks."""

    speed_high: float = 0.04  # motion starts above this speed (fraction of the diagonal per second) ...
    speed_low: float = 0.02  # ... and ends below this one (hysteresis)
    smooth_frames: int = 3  # centroid smoothing before speeds
    min_span_frames: int = 3
    merge_gap_frames: int = 2  # spans separated by fewer still frames are merged
    contact_px: int = 2  # masks closer than this (pixels) touch
    min_repetition_fraction: float = 0.01  # a reversal counts when both legs travel this much (diagonal)


@dataclass
class OpenAIConfig:
    base_url: str = "https://api.openai.com/v1"
    api_key_env: str = "OPENAI_API_KEY"  # the key is read from this variable, never logged or written
    temperature: float = 0.0
    max_tokens: int = 1024
    timeout_s: float = 60.0
    max_retries: int = 5
    backoff_s: float = 1.0  # doubled after every failed try
    requests_per_minute: float = 60.0
    cache_dir: str | None = None  # default: <out>/llm_cache


@dataclass
class QAConfig:
    """Stage 5: questions and answers from the facts."""

    backend: str = "rule-based"  # rule-based | openai | local
    max_per_clip: int = 12
    multiple_choice: bool = True  # also write FoundationMotion's multiple-choice types
    num_choices: int = 4
    seed: int = 0
    local_max_new_tokens: int = 256
    openai: OpenAIConfig = field(default_factory=OpenAIConfig)

    def __post_init__(self) -> None:
        if self.backend not in QA_BACKENDS:
            raise ValueError(f"qa.backend must be one of {QA_BACKENDS}, got {self.backend!r}")


@dataclass
class PipelineConfig:
    models: ModelsConfig = field(default_factory=ModelsConfig)
    clip: ClipConfig = field(default_factory=ClipConfig)
    camera: CameraConfig = field(default_factory=CameraConfig)
    detect: DetectConfig = field(default_factory=DetectConfig)
    track: TrackConfig = field(default_factory=TrackConfig)
    facts: FactsConfig = field(default_factory=FactsConfig)
    qa: QAConfig = field(default_factory=QAConfig)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> PipelineConfig:
        return _build(cls, values or {}, "")

    @classmethod
    def from_yaml(cls, path: str | os.PathLike) -> PipelineConfig:
        with open(path, encoding="utf-8") as f:
            return cls.from_dict(yaml.safe_load(f) or {})

    @classmethod
    def tiny(cls, folder: str | os.PathLike, **sections: Any) -> PipelineConfig:
        """Every model pointed at the tiny random stand-ins under ``folder`` (see tiny_models.py)."""
        folder = Path(folder)
        config = cls.from_dict(sections)
        config.models = ModelsConfig(
            detector=str(folder / "detector"),
            grounding_dino=str(folder / "grounding_dino"),
            tracker=str(folder / "tracker"),
            llm=str(folder / "llm"),
            openai_model=config.models.openai_model,
            vlm=config.models.vlm,
        )
        return config

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _build(cls, values: dict[str, Any], prefix: str):
    if not isinstance(values, dict):
        raise ValueError(
            f"config section {prefix or '<root>'} must be a mapping, got {type(values).__name__}"
        )
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ValueError(f"unknown config keys {[prefix + k for k in unknown]}")
    kwargs = {}
    for name, value in values.items():
        default = (
            fields[name].default_factory()
            if fields[name].default_factory is not dataclasses.MISSING
            else None
        )
        if dataclasses.is_dataclass(default):
            kwargs[name] = _build(type(default), value, f"{prefix}{name}.")
        else:
            kwargs[name] = value
    return cls(**kwargs)
