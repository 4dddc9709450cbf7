"""The result of `MoRAForVideoGrounding.predict`."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Prediction:
    """A grounded answer for one video and question.

    Attributes:
        masks: ``[T, H, W]`` bool at the input resolution; empty outside the span when gated.
        span: inclusive (first, last) frame indices into the input frames, or None (no ``[LOC]``/``[SEG]``
            produced, or no frame above the span threshold).
        frame_scores: ``[T]`` float32 in-span probabilities (NaN when no ``[LOC]`` was produced).
        text: the answer text (generated, or the teacher-forced template).
        ungated_masks: ``[T, H, W]`` bool masks of every frame before span gating (``predict(...,
            with_ungated=True)``; None otherwise, or when no ``[SEG]`` was produced).
    """

    masks: np.ndarray
    span: tuple[int, int] | None
    frame_scores: np.ndarray
    text: str
    ungated_masks: np.ndarray | None = None
