"""From a ``VideoSample`` to a ``TrainingExample``: frame choice, decoding, question and answer text.

Frame choice, per sample:

* ``"linspace"`` (GroundMoRe-style samples with a span): T frames spread over the whole clip, one
  drawn at random from each of T equal segments (a jittered ``np.linspace``, so training matches
  the 20-frame linspace evaluation); at least one sampled frame always lies inside the span.
* ``"target"`` (referring datasets): about half of the frames drawn from those where the target is
  visible, the rest from the whole clip as context, sorted in time.
* ``"auto"``: ``"linspace"`` when the sample has a span, else ``"target"``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

from mora import visual_prompts
from mora.constants import ANSWER_NO_SPAN, ANSWER_WITH_SPAN
from mora.data.errors import DatasetFormatError
from mora.data.masks import shared_label_reads
from mora.data.schema import TrainingExample, VideoSample
from mora.data.templates import question_for
from mora.data.video import decode_video_frames, read_frame_files

SAMPLING_STRATEGIES = ("auto", "linspace", "target")


@dataclass(frozen=True)
class SamplingConfig:
    num_frames: int = 8
    strategy: str = "auto"
    jitter: bool = True  # False: exact linspace (evaluation-like)
    max_side: int | None = None  # downscale frames (and masks) whose longest side is larger
    use_span: bool = True  # False: answer without [LOC] and supervise masks on every annotated frame
    # True: with a span, masks are still supervised on every annotated frame (the answer object outside its
    # motion too); in/out of the span is then learned by the span head alone
    mask_outside_span: bool = False
    # MotionSight spotlight as augmentation: with this probability the language model's frames are darkened
    # outside jittered boxes of the answer object (aggregated over time as at inference), and in
    # ``spotlight_distractor_prob`` of those cases around another object (or a displaced box) instead, so the
    # model learns to use the cue without trusting it blindly; the mask engine keeps the original frames
    spotlight_prob: float = 0.0
    spotlight_distractor_prob: float = 0.25

    def __post_init__(self) -> None:
        for name in ("spotlight_prob", "spotlight_distractor_prob"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        if self.num_frames < 1:
            raise ValueError(f"num_frames must be >= 1, got {self.num_frames}")
        if self.strategy not in SAMPLING_STRATEGIES:
            raise ValueError(f"sampling strategy {self.strategy!r} not in {SAMPLING_STRATEGIES}")
        if self.max_side is not None and self.max_side < 8:
            raise ValueError(f"max_side must be >= 8 pixels, got {self.max_side}")


def jittered_linspace(num_total: int, num_frames: int, rng: np.random.Generator | None) -> list[int]:
    """One index per equal segment of ``[0, N)``; the segment centre-left index without ``rng``."""
    if num_total < num_frames:
        return np.linspace(0, num_total - 1, num_frames).astype(int).tolist()
    edges = np.linspace(0, num_total, num_frames + 1)
    lo = np.floor(edges[:-1]).astype(int)
    hi = np.maximum(lo + 1, np.floor(edges[1:]).astype(int))  # exclusive
    if rng is None:
        return np.linspace(0, num_total - 1, num_frames).astype(int).tolist()
    return [int(rng.integers(a, b)) for a, b in zip(lo, hi)]


def _ensure_in_span(indices: list[int], span: tuple[int, int], rng: np.random.Generator) -> list[int]:
    if any(span[0] <= i <= span[1] for i in indices):
        return indices
    distance = [min(abs(i - span[0]), abs(i - span[1])) for i in indices]
    indices = list(indices)
    indices[int(np.argmin(distance))] = int(rng.integers(span[0], span[1] + 1))
    return sorted(indices)


def present_frames(sample: VideoSample) -> list[int]:
    """Frames where the target is visible (from the reader when known, else by decoding)."""
    known = sample.extra.get("present_frames")
    if known is not None:
        return list(known)
    return [i for i in sample.masks.annotated_indices() if sample.masks.present(i)]


def sample_indices(sample: VideoSample, config: SamplingConfig, rng: np.random.Generator) -> list[int]:
    """Sorted frame indices (length ``config.num_frames``) into the sample's video."""
    n, T = sample.num_frames, config.num_frames
    strategy = config.strategy
    if strategy == "auto":
        strategy = "linspace" if sample.span is not None else "target"
    if strategy == "linspace":
        indices = jittered_linspace(n, T, rng if config.jitter else None)
        return _ensure_in_span(indices, sample.span, rng) if sample.span is not None else indices
    present = present_frames(sample)
    if not present:
        return jittered_linspace(n, T, rng if config.jitter else None)
    k = min(len(present), (T + 1) // 2)
    chosen = [int(i) for i in rng.choice(present, size=k, replace=False)]
    taken = set(chosen)
    rest = [i for i in range(n) if i not in taken]
    extra = T - k
    if extra:
        chosen += [int(i) for i in rng.choice(rest or chosen, size=extra, replace=len(rest) < extra)]
    return sorted(chosen)


def load_frames(sample: VideoSample, indices: list[int]) -> np.ndarray:
    """``[T, H, W, 3]`` uint8 frames of ``sample`` at ``indices``."""
    if sample.frames is not None:
        return read_frame_files([sample.frame_path(i) for i in indices])
    return decode_video_frames(sample.video, indices)


def _resize(images: np.ndarray, size: tuple[int, int], resample: int) -> np.ndarray:
    return np.stack([np.asarray(Image.fromarray(x).resize(size, resample)) for x in images])


def _target_size(shape: tuple[int, ...], max_side: int | None) -> tuple[int, int] | None:
    """PIL (w, h) of frames ``[T, H, W, ...]`` downscaled to ``max_side``, or None when they fit."""
    H, W = shape[1], shape[2]
    if max_side is None or max(H, W) <= max_side:
        return None
    scale = max_side / max(H, W)
    return max(1, round(W * scale)), max(1, round(H * scale))


def _question_targets(
    sample: VideoSample, indices: list[int], shape: tuple[int, int], config: SamplingConfig
) -> tuple[np.ndarray, np.ndarray, tuple[int, int] | None]:
    """Masks ``[T, H, W]``, mask_valid ``[T]`` and the span (indices into ``indices``) of one question."""
    T = len(indices)
    H, W = shape
    span_mode = config.use_span and sample.span is not None
    masks = np.zeros((T, H, W), dtype=bool)
    valid = np.zeros(T, dtype=bool)
    for t, index in enumerate(indices):
        if span_mode and not config.mask_outside_span:
            valid[t] = sample.target_valid(index)
        else:
            valid[t] = sample.masks.is_annotated(index)
        if valid[t]:
            mask = sample.masks[index]
            if mask.shape != (H, W):
                raise DatasetFormatError(
                    sample.video,
                    f"sample {sample.id}: mask of frame {index} is {mask.shape}, frame is {(H, W)}",
                )
            masks[t] = mask
    span = None
    if span_mode:
        inside = [t for t, i in enumerate(indices) if sample.span[0] <= i <= sample.span[1]]
        span = (inside[0], inside[-1]) if inside else None
    return masks, valid, span


def _object_track(sample: VideoSample, indices: list[int], shape: tuple[int, int]) -> np.ndarray:
    """``[T, H, W]`` bool masks of the sample's objects on the sampled frames (empty where not annotated)."""
    track = np.zeros((len(indices), *shape), dtype=bool)
    for t, index in enumerate(indices):
        if sample.masks.is_annotated(index):
            track[t] = sample.masks[index]
    return track


def _spotlit_frames(
    sample: VideoSample,
    others: Sequence[VideoSample],
    indices: list[int],
    frames: np.ndarray,
    original_shape: tuple[int, int],
    config: SamplingConfig,
    rng: np.random.Generator,
) -> np.ndarray | None:
    """The language model's frames under a spotlight augmentation (`SamplingConfig.spotlight_prob`), or None.

    Boxes of the answer object (or, as a distractor, of another object of the video: ``others`` with other
    object ids; without one, the answer's boxes moved elsewhere) are aggregated over time like the inference
    prompt's, jittered (grown 10-40 %, shifted up to 10 % of their size) and the rest darkened by 60-90 %.
    """
    if config.spotlight_prob == 0 or rng.random() >= config.spotlight_prob:
        return None
    source = sample
    displace = False
    if rng.random() < config.spotlight_distractor_prob:
        candidates = [o for o in others if set(o.obj_ids).isdisjoint(sample.obj_ids)]
        if candidates:
            source = candidates[int(rng.integers(len(candidates)))]
        else:
            displace = True
    T, H, W = frames.shape[:3]
    boxes = visual_prompts.boxes_from_masks(_object_track(source, indices, original_shape))
    boxes[:, [0, 2]] *= W / original_shape[1]
    boxes[:, [1, 3]] *= H / original_shape[0]
    boxes = visual_prompts.window_boxes(visual_prompts.aggregate_boxes(boxes, (H, W)), T)
    boxes = visual_prompts.jitter_boxes(boxes, (H, W), rng, displace=displace)
    return visual_prompts.spotlight(frames, boxes, darken=float(rng.uniform(0.6, 0.9)), pad=0)


def _example(
    sample: VideoSample,
    indices: list[int],
    frames: np.ndarray,
    original_shape: tuple[int, int],
    config: SamplingConfig,
    rng: np.random.Generator,
    others: Sequence[VideoSample] = (),
) -> TrainingExample:
    masks, valid, span = _question_targets(sample, indices, original_shape, config)
    size = _target_size(masks.shape, config.max_side)
    if size is not None:
        masks = _resize(masks.view(np.uint8), size, Image.NEAREST).astype(bool)
    llm_frames = _spotlit_frames(sample, others, indices, frames, original_shape, config, rng)
    return TrainingExample(
        frames=frames,
        question=question_for(sample, rng),
        answer=ANSWER_WITH_SPAN if span is not None else ANSWER_NO_SPAN,
        masks=masks,
        mask_valid=valid,
        span=span,
        sample_id=sample.id,
        source=sample.source,
        q_type=sample.q_type,
        frame_indices=list(indices),
        llm_frames=llm_frames,
    )


def _load(
    sample: VideoSample, indices: list[int], config: SamplingConfig
) -> tuple[np.ndarray, tuple[int, int]]:
    """Frames at ``indices`` (downscaled to ``config.max_side``) and their original (H, W)."""
    frames = load_frames(sample, indices)
    shape = frames.shape[1:3]
    size = _target_size(frames.shape, config.max_side)
    if size is not None:
        frames = _resize(frames, size, Image.BILINEAR)
    return frames, shape


def make_example(sample: VideoSample, config: SamplingConfig, rng: np.random.Generator) -> TrainingExample:
    """Sample frames, decode them and their masks, and phrase the question and answer."""
    indices = sample_indices(sample, config, rng)
    frames, shape = _load(sample, indices, config)
    return _example(sample, indices, frames, shape, config, rng)


def make_video_group(
    samples: Sequence[VideoSample], config: SamplingConfig, rng: np.random.Generator
) -> list[TrainingExample]:
    """The questions of one video on one draw of its frames: the examples share one ``frames`` array
    (`MoRACollator` encodes it once). Frames are a jittered linspace over the clip (``config.jitter``)."""
    if not samples:
        raise ValueError("a video group needs at least one sample")
    first = samples[0]
    if any(s.video != first.video for s in samples):
        raise ValueError(f"a video group mixes videos: {sorted({str(s.video) for s in samples})}")
    indices = jittered_linspace(first.num_frames, config.num_frames, rng if config.jitter else None)
    frames, shape = _load(first, indices, config)
    with shared_label_reads():
        return [_example(s, indices, frames, shape, config, rng, samples) for s in samples]
