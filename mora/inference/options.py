"""Options and results of `predict_video`, and the checks of its inputs that need no video decoding."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mora.constants import ANSWER_WITH_SPAN
from mora.model.inference import PREDICT_MODES, prompt_length

DEFAULT_KEY_FRAMES = 20  # GroundMoRe's evaluation protocol samples 20 frames per clip

# progress(stage, done, total): stage is "segment" (mask engine over the frames) or "render" (overlay video)
ProgressFn = Callable[[str, int, int], None]


class QuestionError(ValueError):
    """A question the model cannot take (empty, or longer than the language model's context)."""


@dataclass
class PredictOptions:
    """How `predict_video` reads the video and what it writes.

    Attributes:
        mode, gate, visual_prompt, propagation: as in `MoRAForVideoGrounding.predict` (propagation: ``"memory"``
            or ``"per_frame"``; default: the model's ``config.propagation``).
        fps: resample the frames to this rate (never above the video's).
        start, end: a time window in seconds (frames with start <= t < end).
        max_frames: at most this many frames (spread evenly over the window), each with a mask.
        key_frames: K, the frames the model reasons over (spread evenly; default `DEFAULT_KEY_FRAMES`, or
            the model's ``config.num_frames`` when larger); masks of the other frames come from the mask engine.
        folder_fps: frame rate of a frame folder (unknown otherwise: times and seconds are then null).
        chunk_size: frames decoded and run through the mask engine at a time.
        overlay, gif: write ``overlay.mp4`` / ``overlay.gif``; pngs: write ``masks/<frame>.png``.
    """

    mode: str = "generate"
    gate: bool = True
    visual_prompt: str = "none"
    propagation: str | None = None
    fps: float | None = None
    start: float | None = None
    end: float | None = None
    max_frames: int | None = None
    key_frames: int | None = None
    folder_fps: float | None = None
    chunk_size: int = 16
    overlay: bool = True
    gif: bool = False
    pngs: bool = True

    def num_key_frames(self, model, num_frames: int) -> int:
        wanted = self.key_frames or max(DEFAULT_KEY_FRAMES, int(model.config.num_frames))
        if wanted < 1:
            raise ValueError(f"--key-frames must be >= 1, got {wanted}")
        return min(num_frames, wanted)


@dataclass
class QuestionResult:
    """One question's outputs: its folder, the files in it and the answer.

    ``span_frames`` holds inclusive frame indices of the video, ``span_seconds`` their times (None when the
    frame rate is unknown); ``frame_scores`` the in-span probability of every output frame.
    """

    question: str
    text: str
    folder: Path
    prediction_json: Path
    overlay: Path | None
    gif: Path | None
    span_frames: tuple[int, int] | None
    span_seconds: tuple[float, float] | None
    frame_scores: np.ndarray


@dataclass
class VideoResult:
    """All questions about one video: the frames with masks (video indices), the key frames, the results and
    ``timings``: the wall seconds of each stage (`mora.inference.timing.STAGES`: ``decode`` the video frames,
    ``backbone`` + language model on the key frames, ``mask_engine``, ``write`` of RLE / PNGs / JSON,
    ``render`` of the overlays; each second counted once) and ``total`` (the whole call; the stages add up
    to at most it, the rest being the video probe, the question checks and progress reports)."""

    video: Path
    fps: float | None
    frame_indices: list[int]
    key_frames: list[int]
    questions: list[QuestionResult] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)


def context_length(model) -> int | None:
    """Positions the language model can take (None when its config does not say)."""
    text = getattr(model.config.vlm_config, "text_config", None) or model.config.vlm_config
    return getattr(text, "max_position_embeddings", None)


def check_questions(model, questions: list[str], num_key_frames: int, mode: str) -> list[str]:
    """The questions stripped; a `QuestionError` for an empty one or one that does not fit the context."""
    if mode not in PREDICT_MODES:
        raise ValueError(f"mode must be one of {PREDICT_MODES}, got {mode!r}")
    if not questions:
        raise QuestionError("no question given")
    limit = context_length(model)
    checked = []
    for number, question in enumerate(questions, 1):
        text = (question or "").strip()
        where = f"question {number}" if len(questions) > 1 else "the question"
        if not text:
            raise QuestionError(f"{where} is empty")
        if limit is not None:
            prompt = prompt_length(model, text, num_key_frames)
            if mode == "template":
                answer = (
                    len(model.processor.encode_sample(text, ANSWER_WITH_SPAN, num_key_frames).ids) - prompt
                )
            else:
                answer = int(model.config.max_new_tokens)
            if prompt + answer > limit:
                raise QuestionError(
                    f"{where} is too long: with {num_key_frames} key frames its prompt takes {prompt} tokens "
                    f"(+{answer} for the answer), beyond the language model's context of {limit}"
                )
        checked.append(text)
    return checked
