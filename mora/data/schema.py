"""The one sample schema every reader produces, and the clip the collator consumes."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mora.data.masks import MaskTrack


@dataclass
class VideoSample:
    """One question / referring expression about one video.

    ``masks`` holds the target (union of ``obj_ids``) on every frame where it is annotated. For samples
    with a motion ``span`` (GroundMoRe), the evaluation ground truth is ``target_mask(i)``: the mask
    inside the span and empty outside it.
    """

    id: str
    source: str
    video_id: str
    video: Path  # mp4 file or frame folder (absolute, already confined to its dataset root)
    frames: list[str] | None  # frame file stems in order when ``video`` is a folder
    fps: float | None
    height: int | None
    width: int | None
    question: str
    answer: str | None
    q_type: str | None
    obj_ids: list[int]
    span: tuple[int, int] | None  # inclusive frame indices into ``frames``
    masks: MaskTrack
    choices: list[str] | None = None
    correct_choice: str | None = None
    frame_ext: str = ".jpg"  # file suffix of the frames in a folder
    extra: dict[str, Any] = field(default_factory=dict)  # format-specific fields (type_id, exp_id, ...)

    @property
    def num_frames(self) -> int:
        return len(self.frames) if self.frames is not None else self.masks.num_frames

    def frame_path(self, index: int) -> Path:
        """Path of frame ``index`` of a frame-folder video."""
        if self.frames is None:
            raise ValueError(f"sample {self.id}: video {self.video} is a file, not a frame folder")
        return self.video / f"{self.frames[index]}{self.frame_ext}"

    def in_span(self, index: int) -> bool:
        return self.span is None or self.span[0] <= index <= self.span[1]

    def target_mask(self, index: int) -> np.ndarray:
        """``[H, W]`` bool ground truth as RVOS/GroundMoRe evaluators score it (empty outside the span)."""
        mask = self.masks[index]
        return mask if self.in_span(index) else np.zeros_like(mask)

    def target_valid(self, index: int) -> bool:
        """Whether frame ``index`` carries a mask target for training (annotated, and inside the span)."""
        return self.in_span(index) and self.masks.is_annotated(index)


@dataclass
class TrainingExample:
    """One sampled clip, ready for ``MoRACollator``.

    frames:     [T, H, W, 3] uint8
    masks:      [T, H, W] bool   target union (empty where there is no target)
    mask_valid: [T] bool         frames whose mask is a training target
    span:       inclusive indices into the T sampled frames, or None
    llm_frames: [T, H, W, 3] uint8 frames the language model sees when they differ from ``frames`` (a
                visual-prompt augmentation); the mask engine always reads ``frames``
    """

    frames: np.ndarray
    question: str
    answer: str
    masks: np.ndarray
    mask_valid: np.ndarray
    span: tuple[int, int] | None
    sample_id: str
    source: str
    q_type: str | None
    frame_indices: list[int] = field(default_factory=list)  # indices into the source video
    llm_frames: np.ndarray | None = None

    def __post_init__(self) -> None:
        T, H, W, C = self.frames.shape
        if self.llm_frames is not None and (
            self.llm_frames.shape != self.frames.shape or self.llm_frames.dtype != np.uint8
        ):
            raise ValueError(f"llm_frames {self.llm_frames.shape} do not match frames {self.frames.shape}")
        if C != 3 or self.frames.dtype != np.uint8:
            raise ValueError(
                f"frames must be [T, H, W, 3] uint8, got {self.frames.shape} {self.frames.dtype}"
            )
        if self.masks.shape != (T, H, W):
            raise ValueError(f"masks {self.masks.shape} do not match frames {self.frames.shape}")
        if self.mask_valid.shape != (T,):
            raise ValueError(f"mask_valid {self.mask_valid.shape} does not match T={T}")
        if self.span is not None and not 0 <= self.span[0] <= self.span[1] < T:
            raise ValueError(f"span {self.span} is not an inclusive range inside [0, {T})")
