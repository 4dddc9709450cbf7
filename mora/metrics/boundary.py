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

How it is fast: the dilation is only needed at boundary pixels, which are a small fraction of a frame.

1. Masks are bit-packed (:mod:`mora.metrics.bitpack`) and both boundary maps are computed with word
   shifts on the whole chunk of frames at once.
2. The boundary maps are re-cut into overlapping 64-bit *windows*: with ``h`` = ``r`` rounded up to a
   multiple of 8 and ``s = 64 - 2h``, window ``u`` of a row holds pixels ``[u*s - h, u*s + s + h)``; its
   middle ``s`` bits (the *centre*) belong to it alone, the ``h`` bits on either side repeat its
   neighbours. Windows start on byte boundaries, so they are read as unaligned words in one copy.
   Everything within horizontal distance ``r`` of a centre pixel is in the same word, so horizontal
   dilation needs no carries between words.
3. For every window whose centre holds query (e.g. prediction) boundary pixels, the 2r + 1 source
   (ground-truth) windows at the same column and rows ``y - r .. y + r`` are gathered, OR-ed per row
   half-width ``isqrt(r^2 - dy^2)`` and dilated horizontally with a Horner scheme (the disk is the union
   over rows of centred runs, widest row first), then AND-ed with the query centre and popcounted.
   Both directions (P and R) run as one batch.

For radii above :data:`MAX_WINDOW_RADIUS` the windows would be too narrow; the same counts are then
taken with a KD-tree over boundary pixel coordinates (nearest source pixel within the disk, squared
integer distances compared exactly). Frames are processed in fixed-size chunks, so memory does not grow
with the stack.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from scipy.spatial import cKDTree

from mora.constants import BOUNDARY_THRESHOLD
from mora.metrics.bitpack import WORD, WORD_BITS, popcount

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
    """Packed-row and window geometry for ``[H, W]`` frames and a dilation radius."""

    height: int
    width: int
    radius: int
    n_words: int  # packed words per row: a leading zero word, the pixels, at least one zero word
    n_windows: int  # windows per row (0: KD-tree path)
    halo: int  # pixels a window repeats on either side: r rounded up to whole bytes
    step: int  # centre pixels per window, 64 - 2 * halo (a whole number of bytes)
    centre: np.uint64  # bits halo .. 63 - halo
    row_offsets: np.ndarray  # [2r + 1] dy = 0, 1, -1, 2, -2, ... as flat offsets in a window stack
    class_starts: np.ndarray  # first position in row_offsets of each run of equal row half-width
    class_widths: tuple[int, ...]  # that half-width, decreasing

    @property
    def padded_height(self) -> int:
        """Rows per frame of a window stack: ``r`` zero rows above and below the frame."""
        return self.height + 2 * self.radius


def make_layout(height: int, width: int, radius: int) -> Layout:
    """Geometry for :func:`boundary_counts` (``radius <= 0``: packing only, for J)."""
    n_words = (width + WORD_BITS - 1) // WORD_BITS + 2
    empty = np.zeros(0, np.intp)
    if radius <= 0 or radius > MAX_WINDOW_RADIUS:
        return Layout(height, width, radius, n_words, 0, 0, 0, np.uint64(0), empty, empty, ())
    halo = -(-radius // 8) * 8
    step = WORD_BITS - 2 * halo
    n_windows = -(-width // step)
    # window u starts at pixel u * step - halo, i.e. byte (u * step - halo + 64) / 8 of a packed row
    last_byte = (n_windows - 1) * step // 8 + (WORD_BITS - halo) // 8 + 8
    n_words = max(n_words, -(-last_byte // 8))
    centre = np.uint64(((1 << step) - 1) << halo)
    dys = [0] + [d * sign for d in range(1, radius + 1) for sign in (1, -1)]
    widths = disk_row_widths(radius)
    class_starts, class_widths = [], []
    for d in range(radius + 1):
        if not class_widths or widths[d] != class_widths[-1]:
            class_starts.append(0 if d == 0 else 2 * d - 1)
            class_widths.append(widths[d])
    return Layout(
        height,
        width,
        radius,
        n_words,
        n_windows,
        halo,
        step,
        centre,
        np.array(dys, np.intp) * n_windows,
        np.array(class_starts, np.intp),
        tuple(class_widths),
    )


class Workspace:
    """Buffers for one chunk of ``n_frames`` prediction / ground-truth pairs, reused between chunks.

    Reusing them keeps the working set in the caches and spares the page faults of fresh allocations;
    the zero padding (leading word, window rows above and below the frame) is never written.
    """

    def __init__(self, layout: Layout, n_frames: int) -> None:
        self.layout = layout
        shape = (2 * n_frames, layout.height, layout.n_words)
        self.words = np.zeros((2, n_frames, *shape[1:]), WORD)  # predictions, ground truths
        self.bmaps = np.zeros(shape, WORD)
        self.scratch = (np.empty(shape, WORD), np.empty(shape, WORD))
        if layout.n_windows:
            self.windows = np.zeros((shape[0], layout.padded_height, layout.n_windows), WORD)
            self.centres = np.empty(self.windows.size, WORD)


def boundary_map_packed(
    words: np.ndarray, width: int, out: np.ndarray | None = None, scratch: tuple | None = None
) -> np.ndarray:
    """``_seg2bmap`` on packed masks: ``words [..., H, n_words]`` -> packed boundary maps, same shape.

    A pixel is on the boundary when its 2x2 window (itself, E, S, SE) is not constant; outside the image
    the window is cut: the last column has no E neighbour, the last row no S neighbour. ``out`` and
    ``scratch`` (two arrays) are optional buffers of the same shape. Every step runs on whole contiguous
    rows (the leading zero word included), so numpy sees long one-dimensional loops.
    """
    if out is None:
        out = np.empty_like(words)
    east, diff = scratch if scratch is not None else (np.empty_like(words), np.empty_like(words))
    x, e, d = words.reshape(-1), east.reshape(-1), diff.reshape(-1)
    np.right_shift(x, np.uint64(1), out=e)
    np.left_shift(x[1:], np.uint64(WORD_BITS - 1), out=d[:-1])  # bit 0 of the next word (row ends: 0)
    d[-1] = 0
    e |= d
    # the last column has no east neighbour: make it equal to the pixel itself
    j, bit = divmod(width - 1 + WORD_BITS, WORD_BITS)
    east[..., j] |= words[..., j] & np.uint64(1 << bit)
    # the 2x2 window is not constant iff its top row, its bottom row or its left column differs
    np.bitwise_xor(words, east, out=diff)
    np.bitwise_or(diff[..., :-1, :], diff[..., 1:, :], out=out[..., :-1, :])
    out[..., -1, :] = diff[..., -1, :]  # the last row has no south neighbour
    out[..., :-1, :] |= np.bitwise_xor(words[..., :-1, :], words[..., 1:, :], out=east[..., :-1, :])
    out[..., 0] = 0  # pixel -1 (leading word) saw pixel 0 as its east neighbour
    return out


def _to_windows(bmaps: np.ndarray, ws: Workspace) -> np.ndarray:
    """Packed maps ``[N, H, n_words]`` -> ``ws.windows [N, H + 2r, n_windows]`` (zero rows around)."""
    layout = ws.layout
    r, H = layout.radius, layout.height
    # windows start on byte boundaries: read them as unaligned 64-bit words straight from the rows
    N, _, n_words = bmaps.shape
    row = n_words * WORD.itemsize
    view = np.ndarray(
        (N, H, layout.n_windows),
        WORD,
        buffer=bmaps,
        offset=(WORD_BITS - layout.halo) // 8,
        strides=(H * row, row, layout.step // 8),
    )
    np.copyto(ws.windows[:, r : r + H], view)
    return ws.windows


def _spread(x: np.ndarray, width: int) -> np.ndarray:
    """Dilate every word by ``width`` bits to both sides (bits shifted past the word are dropped)."""
    done = 0
    while done < width:
        k = min(done + 1, width - done)
        x = x | (x << np.uint64(k)) | (x >> np.uint64(k))
        done += k
    return x


def _segment_sums(values: np.ndarray, bounds: np.ndarray) -> np.ndarray:
    """Sums of ``values[bounds[i]:bounds[i + 1]]`` (empty segments give 0)."""
    cs = np.concatenate(([0], np.cumsum(values, dtype=np.int64)))
    return cs[bounds[1:]] - cs[bounds[:-1]]


def _window_counts(bmaps: np.ndarray, ws: Workspace) -> tuple[np.ndarray, np.ndarray]:
    """Boundary pixels and matched pixels per map, both directions in one batch (see module doc)."""
    layout = ws.layout
    n_maps = bmaps.shape[0]  # 2T: predictions then ground truths
    win = _to_windows(bmaps, ws).reshape(-1)
    centre = np.bitwise_and(win, layout.centre, out=ws.centres)
    idx = np.flatnonzero(centre)
    query = np.take(centre, idx)
    frame = layout.padded_height * layout.n_windows
    bounds = np.searchsorted(idx, np.arange(n_maps + 1) * frame)
    # prediction windows look up ground-truth windows and vice versa
    half = (n_maps // 2) * frame
    source = idx + half
    source[bounds[n_maps // 2] :] -= 2 * half
    rows = np.take(win, source[None, :] + layout.row_offsets[:, None])  # [2r + 1, n]
    widths = layout.class_widths
    ends = (*layout.class_starts[1:], len(rows))

    def rows_of_width(k: int) -> np.ndarray:
        """OR of the gathered rows whose half-width is ``widths[k]``."""
        out = rows[layout.class_starts[k]].copy()
        for i in range(layout.class_starts[k] + 1, ends[k]):
            out |= rows[i]
        return out

    # Horner, widest rows first: whatever is accumulated is dilated by each decrease of the half-width,
    # so rows of half-width w end up dilated by exactly w
    acc = rows_of_width(0)
    for k in range(1, len(widths)):
        acc = _spread(acc, widths[k - 1] - widths[k])
        acc |= rows_of_width(k)
    acc = _spread(acc, widths[-1]) & query
    n = _segment_sums(np.bitwise_count(query), bounds)
    matched = _segment_sums(np.bitwise_count(acc), bounds)
    return n, matched


def _boundary_points(bmaps: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(map, y, x)`` of every set pixel of packed maps ``[N, H, n_words]``."""
    H, n_words = bmaps.shape[-2:]
    flat = bmaps.reshape(-1)
    words = np.flatnonzero(flat)
    bits = np.unpackbits(flat[words].view(np.uint8).reshape(-1, 8), axis=1, bitorder="little")
    k, b = np.nonzero(bits)
    row, col = np.divmod(words[k], n_words)
    m, y = np.divmod(row, H)
    return m, y, (col - 1) * WORD_BITS + b


def _kd_counts(bmaps: np.ndarray, radius: int) -> tuple[np.ndarray, np.ndarray]:
    """Same counts as :func:`_window_counts` with a KD-tree over boundary pixels (any radius)."""
    n_maps = bmaps.shape[0]
    T = n_maps // 2
    m, y, x = _boundary_points(bmaps)
    n = np.bincount(m, minlength=n_maps)
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
    return n, matched


def boundary_counts(ws: Workspace) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Boundary counts of the packed masks in ``ws.words [2, T, H, n_words]`` (predictions, ground truths).

    Returns:
        ``(n_pred, n_gt, pred_matched, gt_matched)``, each ``int64 [T]``: boundary pixels, prediction
        boundary pixels within ``r`` of the ground-truth boundary and vice versa.
    """
    layout = ws.layout
    T = ws.words.shape[1]
    bmaps = boundary_map_packed(ws.words.reshape(ws.bmaps.shape), layout.width, ws.bmaps, ws.scratch)
    if layout.n_windows:
        n, matched = _window_counts(bmaps, ws)
    else:
        n, matched = _kd_counts(bmaps, layout.radius)
    return n[:T], n[T:], matched[:T], matched[T:]


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


def count_boundary_pixels(words: np.ndarray, width: int) -> np.ndarray:
    """Boundary pixels per frame of packed masks ``[T, H, n_words]`` -> ``int64 [T]``."""
    return popcount(boundary_map_packed(words, width))


def frames_per_chunk(height: int, width: int) -> int:
    """Frames packed and processed together (bounded memory, cache-sized working set)."""
    return max(1, _CHUNK_PIXELS // (height * width))


__all__ = [
    "MAX_WINDOW_RADIUS",
    "Layout",
    "Workspace",
    "boundary_counts",
    "boundary_map_packed",
    "boundary_tolerance",
    "count_boundary_pixels",
    "disk_row_widths",
    "f_from_counts",
    "frames_per_chunk",
    "make_layout",
]
