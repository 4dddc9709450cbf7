"""Boundary F-measure identical to DAVIS-2017 ``db_eval_boundary``, vectorised over a frame stack.

Reference semantics (davis2017-evaluation ``metrics.py``), reproduced exactly:

* boundary map (``_seg2bmap``): a pixel is on the boundary when the 2x2 window it opens towards
  east / south / south-east is not constant, considering only pixels inside the image. Hence the
  image edge itself never creates a boundary (a full frame has none), and a single pixel away from
  the border has 4 boundary pixels (at the top-left corner, 1).
* tolerance ``r = bound_th`` if ``bound_th >= 1`` else ``ceil(bound_th * ||(H, W)||)``;
  boundaries are dilated with ``skimage.morphology.disk(r)`` (``dx^2 + dy^2 <= r^2``) and a neutral
  border, as ``cv2.dilate`` does.
* ``P = |B_pred & D_gt| / |B_pred|``, ``R = |B_gt & D_pred| / |B_gt|``, ``F = 2PR / (P + R)``;
  empty-boundary cases: both empty -> 1, exactly one empty -> 0; ``P + R == 0`` -> 0.

How it is fast: masks are bit-packed (:mod:`mora.metrics.bitpack`) and a compiled kernel
(:mod:`mora.metrics.kernels`) computes both boundary maps with word operations and tests the disk only at
boundary pixels, up to ``step`` pixels per 64-bit word operation, in overlapping 64-bit windows: with ``halo`` = ``r`` rounded up to a
multiple of 8 and ``step = 64 - 2 * halo``, window ``u`` of a row holds pixels ``[u * step - halo,
u * step + step + halo)``; its middle ``step`` bits (the *centre*) belong to it alone, so a horizontal
dilation by ``r`` needs no carries between words.

For radii above :data:`MAX_WINDOW_RADIUS` the windows would be too narrow; the same counts are then
taken with a KD-tree over boundary pixel coordinates (nearest source pixel within the disk, squared
integer distances compared exactly). Frames are processed in fixed-size chunks, so memory does not grow
with the stack.
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import numpy as np
from scipy.spatial import cKDTree

from mora.constants import BOUNDARY_THRESHOLD
from mora.metrics.bitpack import WORD_BITS

# Largest radius handled with 64-bit windows (centre of 64 - 2h >= 16 bits); larger ones use a KD-tree.
MAX_WINDOW_RADIUS = 24
# Pixels per chunk of frames: bounds memory and keeps the packed working set in the CPU caches.
_CHUNK_PIXELS = 1 << 21


def boundary_tolerance(height: int, width: int, bound_th: float = BOUNDARY_THRESHOLD) -> int:
    """Dilation radius in pixels, as the reference computes it (``ceil(bound_th * diagonal)``)."""
    if bound_th >= 1:
        if bound_th != int(bound_th):
            raise ValueError(
                f"bound_th={bound_th}: a pixel tolerance (>= 1) must be an integer; the reference's "
                "disk for a fractional radius is an even-sized, off-centre footprint"
            )
        return int(bound_th)
    if bound_th <= 0:
        raise ValueError(f"bound_th must be positive; got {bound_th}")
    return int(np.ceil(bound_th * np.linalg.norm((height, width))))


def disk_row_widths(radius: int) -> list[int]:
    """Half-width of ``skimage.morphology.disk(radius)`` at row offsets ``dy = 0..radius``."""
    return [math.isqrt(radius * radius - dy * dy) for dy in range(radius + 1)]


class Layout(NamedTuple):
    """Window geometry for ``[H, W]`` frames and a dilation radius (see :mod:`mora.metrics.kernels`)."""

    height: int
    width: int
    radius: int
    n_windows: int  # windows per row (0: KD-tree path, or no F)
    halo: int  # columns a window repeats on either side: r rounded up to whole bytes
    step: int  # centre columns per window, 64 - 2 * halo
    windows: np.ndarray  # uint64 [2, n_windows]: centre bits and all bits of each window inside the frame
    spreads: np.ndarray  # int64 [r + 1]: Horner dilations (kernels._matched); [0] unused


def make_layout(height: int, width: int, radius: int) -> Layout:
    """Geometry for the kernels (``radius <= 0``: none, for J only). Shared between calls: do not modify."""
    if radius <= 0 or radius > MAX_WINDOW_RADIUS:
        return Layout(height, width, radius, 0, 0, 0, np.zeros((2, 1), np.uint64), np.zeros(1, np.int64))
    return _window_layout(height, width, radius)


@functools.lru_cache(maxsize=64)
def _window_layout(height: int, width: int, radius: int) -> Layout:
    halo = -(-radius // 8) * 8
    step = WORD_BITS - 2 * halo
    n_windows = -(-width // step)
    windows = np.zeros((2, n_windows), np.uint64)
    for u in range(n_windows):
        first = u * step - halo  # column of the window's bit 0
        inside = [j for j in range(WORD_BITS) if 0 <= first + j < width]
        windows[0, u] = sum(1 << j for j in inside if halo <= j < halo + step)
        windows[1, u] = sum(1 << j for j in inside)
    widths = disk_row_widths(radius)
    # the disk's row at distance r is a single pixel (width 0): no dilation after the last rows
    spreads = np.array([0] + [widths[d - 1] - widths[d] for d in range(1, radius + 1)], np.int64)
    return Layout(height, width, radius, n_windows, halo, step, windows, spreads)


def _boundary_points(bmaps: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(map, y, x)`` of every set pixel of boundary maps ``[N, slot_words]`` (pixel ``(y, x)`` at bit ``y * W + x``)."""
    n_maps, slot_words = bmaps.shape
    flat = bmaps.reshape(-1)
    words = np.flatnonzero(flat)
    bits = np.unpackbits(flat[words].view(np.uint8).reshape(-1, 8), axis=1, bitorder="little")
    k, b = np.nonzero(bits)
    m, word = np.divmod(words[k], slot_words)
    y, x = np.divmod(word * WORD_BITS + b, width)
    return m, y, x


def kd_matched_counts(bmaps: np.ndarray, width: int, radius: int) -> np.ndarray:
    """Matched boundary pixels per map with a KD-tree over boundary pixels (any radius).

    Args:
        bmaps: boundary maps ``[2T, slot_words]`` of ``width``-pixel rows, predictions then ground truths.

    Returns:
        ``int64 [2T]``: pixels of each prediction map within ``radius`` of its ground truth's boundary,
        then the same for the ground truths; the counts the window kernel takes for small radii.
    """
    n_maps = bmaps.shape[0]
    T = n_maps // 2
    m, y, x = _boundary_points(bmaps, width)
    matched = np.zeros(n_maps, np.int64)
    frame = m % T
    # frames are stacked `gap` apart along a third axis: no pair from different frames is within r
    pts = np.column_stack([frame * float(2 * radius + 2), y, x]).astype(np.float64)
    is_pred = m < T
    for query, source in ((is_pred, ~is_pred), (~is_pred, is_pred)):
        if query.any() and source.any():
            dist, _ = cKDTree(pts[source]).query(pts[query], distance_upper_bound=radius + 0.5)
            hit = np.rint(dist * dist) <= radius * radius  # squared integer distances, exact
            matched += np.bincount(m[query][hit], minlength=n_maps)
    return matched


def f_from_counts(
    n_pred: np.ndarray, n_gt: np.ndarray, pred_matched: np.ndarray, gt_matched: np.ndarray
) -> np.ndarray:
    """F per frame from boundary pixel counts, with the reference's empty cases and operation order."""
    # An empty boundary has precision (resp. recall) 1; its counterpart then has 0 matches, which gives
    # the reference's (1, 0) / (0, 1) / (1, 1) cases without special branches.
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(n_pred > 0, pred_matched / np.maximum(n_pred, 1), 1.0)
        recall = np.where(n_gt > 0, gt_matched / np.maximum(n_gt, 1), 1.0)
        total = precision + recall
        f = np.where(total == 0, 0.0, 2 * precision * recall / np.where(total == 0, 1.0, total))
    return f.astype(np.float64)


def frames_per_chunk(height: int, width: int) -> int:
    """Frames packed and processed together (bounded memory, cache-sized working set)."""
    return max(1, _CHUNK_PIXELS // (height * width))


__all__ = [
    "MAX_WINDOW_RADIUS",
    "Layout",
    "boundary_tolerance",
    "disk_row_widths",
    "f_from_counts",
    "frames_per_chunk",
    "kd_matched_counts",
    "make_layout",
]
