"""Side-by-side overlay strips for the worst-scored questions.

One PNG per question: the top row shows the ground truth (green) on up to 10 of its frames, the bottom
row the prediction (red) on the same frames; per-frame J is written nowhere, the file name carries the
question's J&F.
"""

from __future__ import annotations

import io
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from mora.evaluation.predictions import read_question
from mora.utils.io import write_bytes_atomic
from mora.utils.logging import get_logger

if TYPE_CHECKING:  # scoring pulls in the numba metric kernels; the overlay helpers do not need them
    from mora.evaluation.scoring import ScoreJob

logger = get_logger("evaluation")

TILE_HEIGHT = 160
MAX_TILES = 10


def overlay(frame: np.ndarray | None, mask: np.ndarray, color: tuple[int, int, int]) -> np.ndarray:
    """``frame [H, W, 3] uint8`` (gray when None) with ``mask [H, W]`` tinted in ``color``."""
    base = np.full((*mask.shape, 3), 96, np.uint8) if frame is None else frame.copy()
    tint = np.array(color, np.float32)
    base[mask] = (0.45 * base[mask] + 0.55 * tint).astype(np.uint8)
    return base


def _tile(img: np.ndarray) -> Image.Image:
    h, w = img.shape[:2]
    return Image.fromarray(img).resize((max(1, round(w * TILE_HEIGHT / h)), TILE_HEIGHT), Image.BILINEAR)


def strip(frames: list[np.ndarray | None], gt: np.ndarray, pred: np.ndarray) -> Image.Image:
    """Two-row strip: ground truth overlays above prediction overlays. gt, pred: ``bool [T, H, W]``."""
    pick = np.unique(np.linspace(0, len(gt) - 1, min(MAX_TILES, len(gt))).astype(int))
    top = [_tile(overlay(frames[i], gt[i], (0, 220, 0))) for i in pick]
    bottom = [_tile(overlay(frames[i], pred[i], (230, 0, 0))) for i in pick]
    width = sum(t.width for t in top)
    canvas = Image.new("RGB", (width, 2 * TILE_HEIGHT + 4), (255, 255, 255))
    x = 0
    for a, b in zip(top, bottom):
        canvas.paste(a, (x, 0))
        canvas.paste(b, (x, TILE_HEIGHT + 4))
        x += a.width
    return canvas


def _read_frame(path: str | None, size: tuple[int, int]) -> np.ndarray | None:
    if path is None or not Path(path).is_file():
        return None
    with Image.open(path) as img:
        rgb = np.asarray(img.convert("RGB"))
    return rgb if rgb.shape[:2] == size else None


def visualize_worst(
    jobs: list[ScoreJob], records: list[dict[str, Any]], pred_dir: str | os.PathLike, out_dir: Path, k: int
) -> list[Path]:
    """Write strips for the ``k`` questions with the lowest J&F; returns the written paths."""
    order = np.argsort([r["JF"] for r in records], kind="stable")[:k]
    written = []
    for rank, i in enumerate(order):
        job, rec = jobs[i], records[i]
        gt = job.gt.load()
        size = tuple(gt.shape[1:])
        pred = read_question(pred_dir, job.video_id, job.question_id, job.frame_stems, size)[0]
        paths = job.frame_paths or [None] * len(gt)
        frames = [_read_frame(p, size) for p in paths]
        name = re.sub(
            r"[^A-Za-z0-9._-]+", "_", f"{rank:03d}_JF{100 * rec['JF']:.1f}_{job.video_id}_{job.question_id}"
        )
        buf = io.BytesIO()
        strip(frames, gt, pred).save(buf, format="PNG")
        path = out_dir / f"{name}.png"
        write_bytes_atomic(path, buf.getvalue())
        written.append(path)
    logger.info("wrote %d overlay strips to %s", len(written), out_dir)
    return written


def contour(mask: np.ndarray, width: int = 1) -> np.ndarray:
    """``[H, W]`` bool: the pixels of ``mask`` within ``width`` pixels of its outside (4-neighbourhood)."""
    inner = mask.copy()
    for _ in range(width):
        shrunk = inner.copy()
        shrunk[1:] &= inner[:-1]
        shrunk[:-1] &= inner[1:]
        shrunk[:, 1:] &= inner[:, :-1]
        shrunk[:, :-1] &= inner[:, 1:]
        shrunk[[0, -1]] = False
        shrunk[:, [0, -1]] = False
        inner = shrunk
    return mask & ~inner


def timeline(width: int, height: int, total: int, span: tuple[int, int] | None, current: int) -> np.ndarray:
    """``[height, width, 3]`` uint8 bar over ``total`` frames: the span (inclusive positions) in green, the
    current position as a white tick."""
    bar = np.full((height, width, 3), 48, np.uint8)

    def x(position: float) -> int:
        return int(round(position * width / max(1, total)))

    if span is not None:
        bar[:, x(span[0]) : max(x(span[0]) + 1, x(span[1] + 1))] = (40, 190, 70)
    tick = min(width - 1, x(current + 0.5))
    bar[:, max(0, tick - 1) : tick + 1] = 255
    return bar


def overlay_frame(
    frame: np.ndarray,
    mask: np.ndarray,
    *,
    total: int,
    span: tuple[int, int] | None,
    current: int,
    color: tuple[int, int, int] = (255, 40, 40),
    edge: tuple[int, int, int] = (255, 230, 0),
) -> np.ndarray:
    """``frame [H, W, 3]`` with ``mask`` tinted and outlined, and a `timeline` over its bottom rows."""
    H, W = mask.shape
    out = overlay(frame, mask, color)
    out[contour(mask, max(1, min(H, W) // 160))] = edge
    bar = max(4, H // 24)
    out[H - bar :] = timeline(W, bar, total, span, current)
    return out
