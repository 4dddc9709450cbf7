"""MotionSight's training-free visual prompts: spotlight, dynamic box aggregation, crop and motion blur.

MotionSight (arXiv 2506.01674) answers motion questions better when the frames shown to the language
model carry a cue: the moving object spotlighted (the rest darkened), the region cropped for counting
questions, or a motion trail (a blend of the past frames) for camera-motion questions. The boxes come from
tracking; here they come from a first pass of the model's own masks (`boxes_from_masks`), grouped over time
by the dynamic temporal aggregator (`aggregate_boxes`), so a static subject gets one stable window and a fast
mover several. `prepare_prompted_frames` applies a prompt to a clip; `choose_prompt` picks one per question
(`auto`). The mask engine always keeps the original frames: only what the language model sees changes.

Frames are ``[T, H, W, 3]`` uint8 arrays; boxes are ``[T, 4]`` float ``(x0, y0, x1, y1)`` in pixels with
exclusive right / bottom edges (a box covers columns ``floor(x0) .. ceil(x1) - 1``), a NaN row meaning "no box".
Everything is numpy and torch-free.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np
from PIL import Image

VISUAL_PROMPTS = ("none", "spotlight", "blur", "crop", "auto")


def _check_frames(frames: np.ndarray) -> np.ndarray:
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be a [T, H, W, 3] uint8 array, got {frames.dtype} {frames.shape}")
    return frames


def _check_boxes(boxes: np.ndarray, T: int) -> np.ndarray:
    boxes = np.asarray(boxes, dtype=np.float64)
    if boxes.shape != (T, 4):
        raise ValueError(
            f"boxes must be [T, 4] = [{T}, 4] (x0, y0, x1, y1; NaN rows = no box), got {boxes.shape}"
        )
    return boxes


def motion_blur(frames: np.ndarray, gamma: float = 0.65, window: int = 7) -> np.ndarray:
    """Motion trails: frame t becomes the weighted mean of frames t, t-1, ..., t-window+1.

    The weights are ``gamma^k`` for the frame k steps back, normalised over the frames that exist (the first
    frames are not darkened), so a static video is unchanged and moving objects leave a fading trail while a
    camera pan smears the whole background.

    Args:
        frames: ``[T, H, W, 3]`` uint8.
        gamma: decay per frame back, in (0, 1].
        window: frames blended, >= 1.

    Returns:
        ``[T, H, W, 3]`` uint8 (rounded).
    """
    frames = _check_frames(frames)
    if not 0 < gamma <= 1:
        raise ValueError(f"gamma must be in (0, 1], got {gamma}")
    if window < 1:
        raise ValueError(f"window must be >= 1, got {window}")
    T = frames.shape[0]
    out = np.empty_like(frames)
    weights = gamma ** np.arange(window, dtype=np.float64)
    for t in range(T):
        n = min(window, t + 1)
        w = weights[:n] / weights[:n].sum()
        blended = np.tensordot(w, frames[t - np.arange(n)].astype(np.float64), axes=1)  # [H, W, 3]
        out[t] = np.clip(np.rint(blended), 0, 255).astype(np.uint8)
    return out


def _pixel_bounds(box: np.ndarray, pad: float, H: int, W: int) -> tuple[int, int, int, int]:
    """Integer ``(x0, y0, x1, y1)`` (exclusive ends) of a padded box, clipped to the frame."""
    x0, y0, x1, y1 = box
    return (
        max(0, math.floor(x0 - pad)),
        max(0, math.floor(y0 - pad)),
        min(W, math.ceil(x1 + pad)),
        min(H, math.ceil(y1 + pad)),
    )


def spotlight(frames: np.ndarray, boxes: np.ndarray, darken: float = 0.9, pad: float = 20) -> np.ndarray:
    """Darken everything outside each frame's padded box.

    Args:
        frames: ``[T, H, W, 3]`` uint8.
        boxes: ``[T, 4]`` xyxy pixels; a NaN row leaves that frame unchanged.
        darken: pixels outside the box are scaled by ``1 - darken`` (0.9: 10 % brightness).
        pad: pixels added on every side of the box.

    Returns:
        ``[T, H, W, 3]`` uint8: inside the padded box unchanged, outside ``round(x * (1 - darken))``.
    """
    frames = _check_frames(frames)
    T, H, W = frames.shape[:3]
    boxes = _check_boxes(boxes, T)
    if not 0 <= darken <= 1:
        raise ValueError(f"darken must be in [0, 1], got {darken}")
    out = np.rint(frames.astype(np.float32) * (1.0 - darken)).astype(np.uint8)
    for t in range(T):
        if np.isnan(boxes[t]).any():
            out[t] = frames[t]
            continue
        x0, y0, x1, y1 = _pixel_bounds(boxes[t], pad, H, W)
        out[t, y0:y1, x0:x1] = frames[t, y0:y1, x0:x1]
    return out


def crop_to_boxes(frames: np.ndarray, boxes: np.ndarray, pad: float = 20) -> np.ndarray:
    """Zoom each frame onto its padded box (for counting questions), keeping the frame size.

    The padded box is widened to the frame's aspect ratio (so nothing is stretched), shifted inside the
    frame, cropped and resized back to ``H x W`` (bilinear). A NaN row leaves that frame unchanged.

    Args:
        frames: ``[T, H, W, 3]`` uint8.
        boxes: ``[T, 4]`` xyxy pixels.
        pad: pixels added on every side of the box.

    Returns:
        ``[T, H, W, 3]`` uint8.
    """
    frames = _check_frames(frames)
    T, H, W = frames.shape[:3]
    boxes = _check_boxes(boxes, T)
    out = frames.copy()
    for t in range(T):
        if np.isnan(boxes[t]).any():
            continue
        x0, y0, x1, y1 = _pixel_bounds(boxes[t], pad, H, W)
        w, h = max(1, x1 - x0), max(1, y1 - y0)
        if w * H > h * W:  # too wide for the frame's aspect: grow the height
            h = min(H, math.ceil(w * H / W))
        else:
            w = min(W, math.ceil(h * W / H))
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        left = int(min(max(0, round(cx - w / 2)), W - w))
        top = int(min(max(0, round(cy - h / 2)), H - h))
        crop = Image.fromarray(frames[t, top : top + h, left : left + w])
        out[t] = np.asarray(crop.resize((W, H), Image.BILINEAR))
    return out


def boxes_from_masks(masks: np.ndarray) -> np.ndarray:
    """``[T, 4]`` float xyxy boxes of ``masks [T, H, W]`` (exclusive right / bottom; NaN where a mask is empty)."""
    masks = np.asarray(masks, dtype=bool)
    if masks.ndim != 3:
        raise ValueError(f"masks must be [T, H, W], got {masks.shape}")
    boxes = np.full((masks.shape[0], 4), np.nan)
    rows, cols = masks.any(axis=2), masks.any(axis=1)  # [T, H], [T, W]
    for t in np.flatnonzero(rows.any(axis=1)):
        ys, xs = np.flatnonzero(rows[t]), np.flatnonzero(cols[t])
        boxes[t] = (xs[0], ys[0], xs[-1] + 1, ys[-1] + 1)
    return boxes


@dataclass(frozen=True)
class BoxWindow:
    """Frames ``start .. end`` (inclusive) share one box ``(x0, y0, x1, y1)``."""

    start: int
    end: int
    box: tuple[float, float, float, float]


def aggregate_boxes(
    boxes: np.ndarray,
    frame_size: tuple[int, int],
    *,
    jump: float = 0.3,
    smoothing: float = 0.7,
    min_boxes: int = 3,
    min_side: float = 10,
    small_side: float = 100,
) -> list[BoxWindow]:
    """MotionSight's dynamic temporal aggregator: group frames into windows, one union box per window.

    Per frame the centre is the mean centre of its boxes (a frame without boxes carries the last centre;
    before the first box, the frame centre). A running centre follows by exponential smoothing
    (``c <- smoothing * c + (1 - smoothing) * centre``); a new window starts when a frame's centre lies more
    than ``jump * min(H, W)`` from the running centre and the current window already holds ``min_boxes``
    boxes. Each window's box is the union of its boxes (a side under ``min_side`` grown to ``small_side``
    around its centre, within the frame); a window without boxes takes its neighbours' union, and with no
    boxes at all the whole frame is one window. The windows cover frames 0 .. T-1 without gaps.

    Args:
        boxes: ``[T, 4]`` or ``[T, O, 4]`` xyxy pixels (NaN = no box).
        frame_size: (H, W).

    Returns:
        the windows in frame order.
    """
    boxes = np.asarray(boxes, dtype=np.float64)
    if boxes.ndim == 2:
        boxes = boxes[:, None]
    if boxes.ndim != 3 or boxes.shape[-1] != 4:
        raise ValueError(f"boxes must be [T, 4] or [T, O, 4], got {boxes.shape}")
    H, W = frame_size
    T = boxes.shape[0]
    if T == 0:
        return []
    present = ~np.isnan(boxes).any(axis=-1)  # [T, O]
    full = (0.0, 0.0, float(W), float(H))
    if not present.any():
        return [BoxWindow(0, T - 1, full)]
    centre = np.array([W / 2, H / 2])
    running = None
    groups: list[list[int]] = [[]]
    counts = [0]
    for t in range(T):
        if present[t].any():
            b = boxes[t][present[t]]
            centre = np.stack([(b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2], axis=1).mean(axis=0)
        if running is None:
            running = centre.copy()
        elif np.linalg.norm(centre - running) > jump * min(H, W) and counts[-1] >= min_boxes:
            groups.append([])
            counts.append(0)
            running = centre.copy()
        else:
            running = smoothing * running + (1 - smoothing) * centre
        groups[-1].append(t)
        counts[-1] += int(present[t].sum())
    unions: list[tuple[float, float, float, float] | None] = []
    for frames in groups:
        b = boxes[frames][present[frames]]
        unions.append(None if len(b) == 0 else _grow_small(b, H, W, min_side, small_side))
    for i, union in enumerate(unions):
        if union is None:  # take the union of the nearest windows with boxes on either side
            before = next((u for u in reversed(unions[:i]) if u is not None), None)
            after = next((u for u in unions[i + 1 :] if u is not None), None)
            near = [u for u in (before, after) if u is not None]
            unions[i] = (
                min(u[0] for u in near),
                min(u[1] for u in near),
                max(u[2] for u in near),
                max(u[3] for u in near),
            )
    return [BoxWindow(g[0], g[-1], u) for g, u in zip(groups, unions, strict=True)]


def _grow_small(b: np.ndarray, H: int, W: int, min_side: float, small_side: float) -> tuple[float, ...]:
    """Union of boxes ``b [n, 4]``; a side shorter than ``min_side`` grown to ``small_side`` (within the frame)."""
    x0, y0, x1, y1 = b[:, 0].min(), b[:, 1].min(), b[:, 2].max(), b[:, 3].max()
    if x1 - x0 < min_side:
        half = min(small_side, W) / 2
        cx = min(max((x0 + x1) / 2, half), W - half)
        x0, x1 = cx - half, cx + half
    if y1 - y0 < min_side:
        half = min(small_side, H) / 2
        cy = min(max((y0 + y1) / 2, half), H - half)
        y0, y1 = cy - half, cy + half
    return (float(x0), float(y0), float(x1), float(y1))


def window_boxes(windows: list[BoxWindow], num_frames: int) -> np.ndarray:
    """``[T, 4]`` the box of each frame's window (NaN for frames no window covers)."""
    out = np.full((num_frames, 4), np.nan)
    for w in windows:
        out[w.start : w.end + 1] = w.box
    return out


def jitter_boxes(
    boxes: np.ndarray,
    frame_size: tuple[int, int],
    rng: np.random.Generator,
    *,
    grow: tuple[float, float] = (1.1, 1.4),
    shift: float = 0.1,
    displace: bool = False,
) -> np.ndarray:
    """Boxes ``[T, 4]`` as a training augmentation draws them: one random growth (by a factor in ``grow``) and
    shift (up to ``shift`` x the box size) for the whole clip, clipped to the frame ``(H, W)``. ``displace``
    moves the boxes to another place of the frame (a wrong spotlight). NaN rows stay NaN."""
    H, W = frame_size
    boxes = np.asarray(boxes, dtype=np.float64).copy()
    centre = (boxes[:, :2] + boxes[:, 2:]) / 2  # [T, 2] (x, y)
    size = (boxes[:, 2:] - boxes[:, :2]) * rng.uniform(*grow)
    centre = centre + size * rng.uniform(-shift, shift, 2)
    if displace:  # a random other place, at least a box away where the frame allows
        centre = centre + size * rng.choice([-1.0, 1.0], 2) * rng.uniform(1.0, 2.0, 2)
        centre = np.stack([np.clip(centre[:, 0], 0, W), np.clip(centre[:, 1], 0, H)], axis=1)
    out = np.concatenate([centre - size / 2, centre + size / 2], axis=1)
    out[:, [0, 2]] = np.clip(out[:, [0, 2]], 0, W)
    out[:, [1, 3]] = np.clip(out[:, [1, 3]], 0, H)
    return out


_CAMERA = re.compile(
    r"\b(camera|cameraman|shot|pan(s|ning|ned)?|tilt(s|ing|ed)?|zoom(s|ing|ed)?|dolly|viewpoint)\b"
)
_COUNTING = re.compile(r"\b(how many|how often|number of|count|times)\b")


def classify_query(question: str) -> str:
    """``"camera"`` (the question is about the camera's motion), ``"counting"`` (how many / how often) or
    ``"object"``: MotionSight's routing, decided from the question's words instead of a benchmark label."""
    q = question.lower()
    if _CAMERA.search(q):
        return "camera"
    if _COUNTING.search(q):
        return "counting"
    return "object"


def choose_prompt(question: str) -> str:
    """The ``auto`` choice: motion blur for camera questions, crop for counting, else spotlight."""
    return {"camera": "blur", "counting": "crop", "object": "spotlight"}[classify_query(question)]


def prepare_prompted_frames(
    frames: np.ndarray, prompt: str, masks: np.ndarray | None = None, *, darken: float = 0.9, pad: float = 20
) -> np.ndarray:
    """The frames a language model sees under a visual prompt.

    Args:
        frames: ``[T, H, W, 3]`` uint8 original frames.
        prompt: ``"none"``, ``"blur"``, ``"spotlight"`` or ``"crop"`` (resolve ``"auto"`` with `choose_prompt`).
        masks: ``[T, H, W]`` bool masks of a first pass (needed by spotlight and crop): their boxes are
            aggregated over time (`aggregate_boxes`) and each frame is prompted with its window's box.

    Returns:
        ``[T, H, W, 3]`` uint8.
    """
    frames = _check_frames(frames)
    if prompt == "none":
        return frames
    if prompt == "blur":
        return motion_blur(frames)
    if prompt not in ("spotlight", "crop"):
        raise ValueError(f"visual prompt must be one of none, blur, spotlight, crop; got {prompt!r}")
    if masks is None:
        raise ValueError(f"the {prompt} prompt needs the masks of a first pass")
    T, H, W = frames.shape[:3]
    masks = np.asarray(masks, dtype=bool)
    if masks.shape != (T, H, W):
        raise ValueError(f"masks must be [T, H, W] = {(T, H, W)}, got {masks.shape}")
    boxes = window_boxes(aggregate_boxes(boxes_from_masks(masks), (H, W)), T)
    if prompt == "spotlight":
        return spotlight(frames, boxes, darken=darken, pad=pad)
    return crop_to_boxes(frames, boxes, pad=pad)
