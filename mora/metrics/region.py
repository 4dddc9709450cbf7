"""Region similarity J (DAVIS-2017 ``db_eval_iou``) and the combined J + F pass over a frame stack.

``J = |pred & gt| / |pred | gt|`` per frame, 1 where both masks are empty. Both metrics share one
bit-packing of the masks, so :func:`jaccard_and_boundary_f` is the call evaluators use.
"""

from __future__ import annotations

import numpy as np

from mora.constants import BOUNDARY_THRESHOLD
from mora.metrics.bitpack import WORD, as_stack, pack_into, popcount
from mora.metrics.boundary import (
    Workspace,
    boundary_counts,
    boundary_tolerance,
    count_boundary_pixels,
    f_from_counts,
    frames_per_chunk,
    make_layout,
)


def _check_pair(annotation: np.ndarray, segmentation: np.ndarray) -> tuple[np.ndarray, np.ndarray, bool]:
    single = np.ndim(annotation) == 2
    gt = as_stack(annotation, "annotation")
    pred = as_stack(segmentation, "segmentation")
    if gt.shape != pred.shape:
        raise ValueError(f"annotation shape {gt.shape} != segmentation shape {pred.shape}")
    return gt, pred, single


def j_from_counts(inter: np.ndarray, n_pred: np.ndarray, n_gt: np.ndarray) -> np.ndarray:
    """J per frame from pixel counts (``int64 [T]`` each); 1 where the union is empty."""
    union = n_pred + n_gt - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        j = inter / union
    j[union == 0] = 1.0
    return j


def jaccard_and_boundary_f(
    annotation: np.ndarray,
    segmentation: np.ndarray,
    bound_th: float = BOUNDARY_THRESHOLD,
    *,
    need_j: bool = True,
    need_f: bool = True,
) -> tuple[np.ndarray | np.float64 | None, np.ndarray | np.float64 | None]:
    """J and F per frame in one pass (each ``float64 [T]``, or scalars for ``[H, W]`` inputs).

    Args:
        annotation: ground truth ``[H, W]`` or ``[T, H, W]``; any non-zero value is foreground.
        segmentation: prediction, same shape.
        bound_th: boundary tolerance (see :func:`mora.metrics.boundary.boundary_tolerance`).
        need_j, need_f: skip a metric (returned as ``None``).
    """
    gt, pred, single = _check_pair(annotation, segmentation)
    T, H, W = gt.shape
    layout = make_layout(H, W, boundary_tolerance(H, W, bound_th) if need_f else 0)
    j_out = np.empty(T, dtype=np.float64)
    f_out = np.empty(T, dtype=np.float64)
    step = frames_per_chunk(H, W)
    ws = Workspace(layout, min(T, step))
    for start in range(0, T, step):
        sl = slice(start, min(T, start + step))
        if ws.words.shape[1] != sl.stop - start:
            ws = Workspace(layout, sl.stop - start)
        words = ws.words
        pack_into(words[0], pred[sl])
        pack_into(words[1], gt[sl])
        if need_j:
            inter = popcount(words[0] & words[1])
            n_pred, n_gt = popcount(words.reshape(-1, H * layout.n_words)).reshape(2, -1)
            j_out[sl] = j_from_counts(inter, n_pred, n_gt)
        if need_f:
            f_out[sl] = f_from_counts(*boundary_counts(ws))
    j = (j_out[0] if single else j_out) if need_j else None
    f = (f_out[0] if single else f_out) if need_f else None
    return j, f


def jaccard(annotation: np.ndarray, segmentation: np.ndarray) -> np.ndarray | np.float64:
    """Region similarity J per frame, identical to DAVIS-2017 ``db_eval_iou`` (no void pixels).

    Args:
        annotation: ground truth ``[H, W]`` or ``[T, H, W]``; any non-zero value is foreground.
        segmentation: prediction, same shape.

    Returns:
        ``float64 [T]`` for a stack, a ``np.float64`` for a single frame.
    """
    return jaccard_and_boundary_f(annotation, segmentation, need_f=False)[0]


def boundary_f(
    annotation: np.ndarray, segmentation: np.ndarray, bound_th: float = BOUNDARY_THRESHOLD
) -> np.ndarray | np.float64:
    """Boundary F-measure per frame, identical to DAVIS-2017 ``db_eval_boundary``.

    Args:
        annotation: ground truth ``[H, W]`` or ``[T, H, W]``; any non-zero value is foreground.
        segmentation: prediction, same shape.
        bound_th: tolerance as a fraction of the diagonal (< 1) or in pixels (>= 1, integer).

    Returns:
        ``float64 [T]`` for a stack, a ``np.float64`` for a single frame.
    """
    return jaccard_and_boundary_f(annotation, segmentation, bound_th, need_j=False)[1]


def empty_prediction_scores(annotation: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """J and F per frame that an all-empty prediction gets against ``annotation [T, H, W]``.

    J is 1 only where the ground truth is empty; F is 1 where the ground truth has no boundary
    (empty or full-frame masks), as the reference's empty-boundary rules give.
    """
    gt = as_stack(annotation, "annotation")
    T, H, W = gt.shape
    j = np.empty(T, dtype=np.float64)
    f = np.empty(T, dtype=np.float64)
    n_words = make_layout(H, W, 0).n_words
    step = frames_per_chunk(H, W)
    for start in range(0, T, step):
        sl = slice(start, min(T, start + step))
        words = np.zeros((sl.stop - start, H, n_words), WORD)
        pack_into(words, gt[sl])
        j[sl] = popcount(words) == 0
        f[sl] = count_boundary_pixels(words, W) == 0
    return j, f
