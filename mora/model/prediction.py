"""The result of `MoRAForVideoGrounding.predict`, and the intermediate results its steps share (`EncodedClip`,
`ClipGrounding`; `mora.model.inference`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch

    from mora.processing.image_ops import ResizeGeometry


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


@dataclass
class EncodedClip:
    """One clip's frames prepared and encoded for the model (shared by all questions about it).

    Attributes:
        frames: the input frames (``[T, H, W, 3]`` uint8 array or T PIL images), for visual prompts.
        pixel_values: ``[1, T, 3, I, I]`` backbone frames on the model's device and dtype.
        mask_pixel_values: ``[T, 3, S, S]`` mask-engine frames (CPU, float32).
        geometry: how the frames were fitted to the engine canvas.
        features, motion, llm_idx: `MoRAForVideoGrounding.encode_video` of ``pixel_values``.
        engine_cache: when a dict, the mask-engine features of the frame windows decoded so far, reused by
            later questions about the clip (None: nothing is kept, as in `predict`).
        cell_motion: ``[1, T, h, w, 4]`` `MoRAForVideoGrounding.cell_motion` of the clip once computed (the
            pixel path and the span head read it; None until then or when no head reads it).
    """

    frames: Any
    pixel_values: torch.Tensor
    mask_pixel_values: torch.Tensor
    geometry: ResizeGeometry
    features: Any
    motion: torch.Tensor | None
    llm_idx: list[int]
    engine_cache: dict | None = None
    cell_motion: torch.Tensor | None = None

    @property
    def num_frames(self) -> int:
        return self.mask_pixel_values.shape[0]


@dataclass
class ClipGrounding:
    """One question answered on one clip, before masks: what `clip_masks` and the streaming pipeline use.

    Attributes:
        text: the answer text.
        segmented / located: whether the answer has a usable ``[SEG]`` / ``[LOC]`` state.
        seg_state: ``[1, D]`` the ``[SEG]`` state after the grounding reader (zeros when not segmented).
        prompts: ``[T, P, C]`` mask-engine prompts of each clip frame.
        scores: ``[T]`` float32 in-span probabilities (NaN when not located).
        span: inclusive (first, last) clip frames above ``config.span_threshold``, or None.
        all_logits: ``[T, S, S]`` logits of every frame decoded before gating (the mask-pooled span head
            needs them; None otherwise).
        clip: the `EncodedClip` (features, mask-engine frames, geometry).
        question_state: ``[1, D]`` the mean of the question's token states (`question_states`), when the
            pixel mask path matches the question against motion (None otherwise).
    """

    text: str
    segmented: bool
    located: bool
    seg_state: torch.Tensor
    prompts: torch.Tensor
    scores: np.ndarray
    span: tuple[int, int] | None
    all_logits: torch.Tensor | None
    clip: EncodedClip
    question_state: torch.Tensor | None = None
