"""Prediction folders: ``<pred_dir>/<video_id>/<question_id>/<frame_stem>.png`` (+ ``prediction.json``).

PNGs are 8-bit grayscale, 0 = background, 255 = foreground (any non-zero value is read as foreground),
at the ground truth's resolution. ``prediction.json`` beside them carries what masks cannot: the
predicted span (inclusive indices into the clip's full frame list), the answer text and per-frame scores.
A question's folder is written under a temporary name and renamed when complete, so a folder that
exists is complete, and resuming never picks up a half-written one.
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from mora.utils.io import atomic_path, safe_join

PREDICTION_JSON = "prediction.json"


class PredictionError(ValueError):
    """A prediction file exists but cannot be used (unreadable, wrong size)."""


def question_dir(pred_dir: str | os.PathLike, video_id: str, question_id: str) -> Path:
    """Folder of one question's prediction, confined to ``pred_dir``."""
    return safe_join(pred_dir, Path(video_id) / str(question_id))


def is_complete(pred_dir: str | os.PathLike, video_id: str, question_id: str) -> bool:
    return question_dir(pred_dir, video_id, question_id).is_dir()


def encode_png(mask: np.ndarray) -> bytes:
    """``mask [H, W]`` (non-zero = foreground) -> PNG bytes, 0 / 255 grayscale."""
    buf = io.BytesIO()
    Image.fromarray(np.where(mask != 0, 255, 0).astype(np.uint8), mode="L").save(buf, format="PNG")
    return buf.getvalue()


def write_question(
    pred_dir: str | os.PathLike,
    video_id: str,
    question_id: str,
    frame_stems: list[str],
    masks: np.ndarray,
    info: dict[str, Any] | None = None,
) -> Path:
    """Write one question's masks ``[T, H, W]`` (one PNG per stem) and ``prediction.json`` atomically."""
    if len(frame_stems) != len(masks):
        raise ValueError(
            f"{len(frame_stems)} frame stems but {len(masks)} masks for {video_id}/{question_id}"
        )
    final = question_dir(pred_dir, video_id, question_id)
    with atomic_path(final) as tmp:
        tmp.mkdir()
        for stem, mask in zip(frame_stems, masks):
            (tmp / f"{stem}.png").write_bytes(encode_png(mask))
        (tmp / PREDICTION_JSON).write_text(json.dumps(info or {}) + "\n")
    return final


def read_mask_png(path: Path, size: tuple[int, int]) -> np.ndarray:
    """One prediction PNG -> ``bool [H, W]``; wrong size or unreadable file -> PredictionError."""
    try:
        with Image.open(path) as img:
            arr = np.asarray(img)
    except OSError as exc:
        raise PredictionError(f"{path}: unreadable PNG ({exc})") from exc
    if arr.ndim == 3:
        arr = arr.any(axis=-1) if arr.shape[-1] != 4 else arr[..., :3].any(axis=-1)
    if arr.shape != tuple(size):
        raise PredictionError(
            f"{path}: mask is {arr.shape[1]}x{arr.shape[0]}, ground truth is {size[1]}x{size[0]}"
        )
    return arr != 0


def read_question(
    pred_dir: str | os.PathLike,
    video_id: str,
    question_id: str,
    frame_stems: list[str],
    size: tuple[int, int],
) -> tuple[np.ndarray, int, bool, dict[str, Any]]:
    """Read a question's predicted masks for ``frame_stems``.

    Returns:
        masks ``bool [T, H, W]`` (missing PNGs are empty), the number of missing frames, whether the whole
        question folder is missing, and the parsed ``prediction.json`` (``{}`` when absent).
    """
    folder = question_dir(pred_dir, video_id, question_id)
    masks = np.zeros((len(frame_stems), *size), dtype=bool)
    if not folder.is_dir():
        return masks, len(frame_stems), True, {}
    missing = 0
    for i, stem in enumerate(frame_stems):
        path = folder / f"{stem}.png"
        if path.is_file():
            masks[i] = read_mask_png(path, size)
        else:
            missing += 1
    info: dict[str, Any] = {}
    info_path = folder / PREDICTION_JSON
    if info_path.is_file():
        try:
            info = json.loads(info_path.read_text())
        except json.JSONDecodeError as exc:
            raise PredictionError(f"{info_path}: invalid JSON ({exc})") from exc
    return masks, missing, False, info
