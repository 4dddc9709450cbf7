"""Region similarity J (DAVIS-2017 ``db_eval_iou``) and the combined J + F pass over a frame stack.

``J = |pred & gt| / |pred | gt|`` per frame, 1 where both masks are empty. Both metrics share one
bit-packing of the masks, so :func:`jaccard_and_boundary_f` is the call evaluators use.
"""

from __future__ import annotations

import numpy as np

from mora.constants import BOUNDARY_THRESHOLD
from mora.metrics import kernels
from mora.metrics.bitpack import FrameSlots, as_stack
from mora.metrics.boundary import (
    boundary_tolerance,
    f_from_counts,
    frames_per_chunk,
    kd_matched_counts,
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


def frame_counts(
    annotation: np.ndarray, segmentation: np.ndarray | None, radius: int, need_f: bool = True
) -> np.ndarray:
    """Pixel and boundary counts per frame: ``int64 [T, kernels.N_COUNTS]`` (columns ``kernels.INTER`` ...).

    Args:
        annotation: ground truth ``[T, H, W]``; any non-zero value is foreground.
        segmentation: prediction, same shape, or ``None`` for an all-empty prediction.
        radius: boundary tolerance in pixels.
        need_f: ``False`` leaves the boundary columns at 0.
    """
    T, H, W = annotation.shape
    layout = make_layout(H, W, radius if need_f else 0)
    counts = np.zeros((T, kernels.N_COUNTS), np.int64)
    if T == 0:
        return counts
    step = min(T, frames_per_chunk(H, W))
    pred_slots, gt_slots = FrameSlots(step, H, W), FrameSlots(step, H, W)
    FW = gt_slots.slot_words
    kd = need_f and layout.n_windows == 0
    bmaps = np.empty((2, step, FW) if kd else (2, 0, 0), np.uint64)
    for start in range(0, T, step):
        stop = min(T, start + step)
        n = stop - start
        gt = gt_slots.pack(annotation[start:stop])
        pred = pred_slots.words if segmentation is None else pred_slots.pack(segmentation[start:stop])
        kernels.frame_counts(
            pred, gt, n, H, W, FW, layout.radius, layout.halo, layout.step, layout.n_windows,
            layout.spreads, layout.windows, need_f, counts[start:stop], bmaps,
        )  # fmt: skip
        if kd:
            matched = kd_matched_counts(bmaps[:, :n].reshape(2 * n, FW), W, radius)
            counts[start:stop, kernels.M_PRED] = matched[:n]
            counts[start:stop, kernels.M_GT] = matched[n:]
    return counts


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
    radius = boundary_tolerance(gt.shape[1], gt.shape[2], bound_th) if need_f else 0
    counts = frame_counts(gt, pred, radius, need_f)
    j = _j_from(counts) if need_j else None
    f = _f_from(counts) if need_f else None
    if single:
        j = None if j is None else j[0]
        f = None if f is None else f[0]
    return j, f


def jaccard_and_boundary_f_with_baseline(
    annotation: np.ndarray, segmentation: np.ndarray, bound_th: float = BOUNDARY_THRESHOLD
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """J and F per frame, and what an all-empty prediction scores on the same frames, in one pass.

    Args:
        annotation: ground truth ``[T, H, W]``; any non-zero value is foreground.
        segmentation: prediction, same shape.

    Returns:
        ``(J, F, J_empty, F_empty)``, each ``float64 [T]`` (see :func:`empty_prediction_scores`).
    """
    gt, pred, _ = _check_pair(annotation, segmentation)
    counts = frame_counts(gt, pred, boundary_tolerance(gt.shape[1], gt.shape[2], bound_th))
    return _j_from(counts), _f_from(counts), *_empty_from(counts)


def _empty_from(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    # an empty prediction: J = 1 iff the ground truth is empty, F = 1 iff it has no boundary
    k = kernels
    return (counts[:, k.N_GT] == 0).astype(np.float64), (counts[:, k.B_GT] == 0).astype(np.float64)


def _j_from(counts: np.ndarray) -> np.ndarray:
    return j_from_counts(counts[:, kernels.INTER], counts[:, kernels.N_PRED], counts[:, kernels.N_GT])


def _f_from(counts: np.ndarray) -> np.ndarray:
    k = kernels
    return f_from_counts(counts[:, k.B_PRED], counts[:, k.B_GT], counts[:, k.M_PRED], counts[:, k.M_GT])


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
    return _empty_from(frame_counts(gt, None, radius=1))  # no boundary to match: any radius
