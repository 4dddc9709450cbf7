"""Boundary F-measure identical to DAVIS-2017 ``db_eval_boundary``, vectorised over a frame stack.

Reference semantics (davis2017-evaluation ``metrics.py``), reproduced exactly:

* boundary map (``_seg2bmap``): a pixel is on the boundary when the 2x2 window it opens towards
  east / south / south-east is not constant, considering only pixels inside the image. Hence the
  image border is never a boundary, a single pixel has 4 boundary pixels, a full frame has none.
* tolerance ``r = bound_th`` if ``bound_th >= 1`` else ``ceil(bound_th * ||(H, W)||)``;
  boundaries are dilated with ``skimage.morphology.disk(r)`` (``dx^2 + dy^2 <= r^2``) and a neutral
  border, as ``cv2.dilate`` does.
* ``P = |B_pred & D_gt| / |B_pred|``, ``R = |B_gt & D_pred| / |B_gt|``, ``F = 2PR / (P + R)``;
  empty-boundary cases: both empty -> 1, exactly one empty -> 0; ``P + R == 0`` -> 0.

How it is fast: masks are bit-packed (:mod:`mora.metrics.bitpack`); the disk dilation is the union
over rows ``dy`` of the boundary map dilated horizontally by ``isqrt(r^2 - dy^2)`` and shifted by
``dy`` (exactly the disk, row by row), computed with word shifts on the whole chunk of frames at once,
only on frames where both boundaries are non-empty and only inside the bounding box of the two
boundaries. Frames are processed in fixed-size chunks, so memory does not grow with the stack.
"""

from __future__ import annotations

import math

import numpy as np

from mora.constants import BOUNDARY_THRESHOLD
from mora.metrics.bitpack import (
    WORD_BITS,
    or_shifted_left,
    or_shifted_right,
    popcount,
)

# Packed bytes per chunk of frames: keeps the working set of the dilation in the CPU caches.
_CHUNK_BYTES = 1 << 19


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


def boundary_map_packed(words: np.ndarray, width: int) -> np.ndarray:
    """``_seg2bmap`` on a packed stack: ``words [T, H, n_words]`` -> packed boundary map, same shape."""
    tmp = np.empty_like(words)
    east = np.zeros_like(words)
    or_shifted_left(east, words, 1, tmp)
    # The last column has no east neighbour: the reference compares it with its south neighbour only,
    # i.e. treats the east neighbour as equal to itself.
    j, bit = divmod(width - 1, WORD_BITS)
    east[..., j] |= words[..., j] & np.uint64(1 << bit)
    bmap = words ^ east
    # South and south-east neighbours; the last row compares with its east neighbour only.
    np.bitwise_or(bmap[:, :-1], words[:, :-1] ^ words[:, 1:], out=bmap[:, :-1])
    np.bitwise_or(bmap[:, :-1], words[:, :-1] ^ east[:, 1:], out=bmap[:, :-1])
    return bmap


def disk_row_widths(radius: int) -> list[int]:
    """Half-width of ``skimage.morphology.disk(radius)`` at row offsets ``dy = 0..radius``."""
    return [math.isqrt(radius * radius - dy * dy) for dy in range(radius + 1)]


def count_within_disk(query: np.ndarray, source: np.ndarray, radius: int) -> np.ndarray:
    """Per frame, how many set bits of ``query`` lie in the disk dilation of ``source``.

    Args:
        query, source: packed ``[T, H, n_words]`` uint64 stacks.
        radius: disk radius in pixels.

    Returns:
        ``int64 [T]``: ``|query & dilate(source, disk(radius))|`` per frame.
    """
    H = source.shape[1]
    widths = disk_row_widths(radius)
    grown = source.copy()  # horizontal dilation of `source`, grown one pixel at a time
    tmp = np.empty_like(source)
    dilated = np.zeros_like(source)
    width_now = 0
    for dy in range(radius, -1, -1):  # row widths grow as |dy| shrinks
        while width_now < widths[dy]:
            width_now += 1
            or_shifted_right(grown, source, width_now, tmp)
            or_shifted_left(grown, source, width_now, tmp)
        if dy >= H:
            continue
        if dy == 0:
            np.bitwise_or(dilated, grown, out=dilated)
        else:
            np.bitwise_or(dilated[:, :-dy], grown[:, dy:], out=dilated[:, :-dy])
            np.bitwise_or(dilated[:, dy:], grown[:, :-dy], out=dilated[:, dy:])
    np.bitwise_and(dilated, query, out=dilated)
    return popcount(dilated)


def _crop_frames(query: np.ndarray, source: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Move each frame's content (the bounding box of both maps' set bits) to the top-left corner of a
    common canvas as large as the largest box. Matching is translation invariant and every set bit of
    both maps lies inside its frame's box, so the counts are unchanged while the dilation runs on far
    fewer words. Columns are cropped in whole words, which keeps bit positions intact.
    """
    occupied = (query | source) != 0  # [T, H, n_words]
    rows_any = occupied.any(axis=2)  # [T, H]
    cols_any = occupied.any(axis=1)  # [T, n_words]
    H, n = rows_any.shape[1], cols_any.shape[1]
    r0 = rows_any.argmax(axis=1)
    r1 = H - rows_any[:, ::-1].argmax(axis=1)
    c0 = cols_any.argmax(axis=1)
    c1 = n - cols_any[:, ::-1].argmax(axis=1)
    hc, wc = int((r1 - r0).max()), int((c1 - c0).max())
    # one extra zero word on the right so bits shifted right past the crop are kept or harmlessly dropped
    q = np.zeros((len(query), hc, wc + 1), dtype=query.dtype)
    s = np.zeros_like(q)
    for t in range(len(query)):
        h, w = r1[t] - r0[t], c1[t] - c0[t]
        q[t, :h, :w] = query[t, r0[t] : r1[t], c0[t] : c1[t]]
        s[t, :h, :w] = source[t, r0[t] : r1[t], c0[t] : c1[t]]
    return q, s


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


def boundary_counts_packed(
    pred_words: np.ndarray, gt_words: np.ndarray, width: int, radius: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Boundary counts for packed stacks: ``(n_pred, n_gt, pred_matched, gt_matched)``, each ``int64 [T]``."""
    b_pred = boundary_map_packed(pred_words, width)
    b_gt = boundary_map_packed(gt_words, width)
    n_pred, n_gt = popcount(b_pred), popcount(b_gt)
    pred_matched = np.zeros_like(n_pred)
    gt_matched = np.zeros_like(n_gt)
    both = np.flatnonzero((n_pred > 0) & (n_gt > 0))
    if both.size:
        bp, bg = _crop_frames(b_pred[both], b_gt[both])
        pred_matched[both] = count_within_disk(bp, bg, radius)
        gt_matched[both] = count_within_disk(bg, bp, radius)
    return n_pred, n_gt, pred_matched, gt_matched


def frames_per_chunk(height: int, width: int) -> int:
    """Frames packed and processed together (bounded memory, cache-sized working set)."""
    return max(1, _CHUNK_BYTES // (height * (width // WORD_BITS + 1) * 8))


__all__ = [
    "boundary_counts_packed",
    "boundary_map_packed",
    "boundary_tolerance",
    "count_within_disk",
    "f_from_counts",
    "frames_per_chunk",
]
