"""Frame-by-frame J and F written directly after the DAVIS-2017 reference algorithm.

This is the slow baseline the benchmark (``eval/benchmarks/metrics_speed.py``) compares against: one
``_seg2bmap`` per mask, ``cv2.dilate`` with a ``skimage.morphology.disk`` per frame, counts with
``np.sum``. The fast path lives in :mod:`mora.metrics.region`, :mod:`mora.metrics.boundary` and
:mod:`mora.metrics.kernels`.
"""

from __future__ import annotations

import cv2
import numpy as np
from skimage.morphology import disk

from mora.constants import BOUNDARY_THRESHOLD


def seg2bmap(seg: np.ndarray) -> np.ndarray:
    """1-pixel boundary map of ``seg [H, W]`` (pixel differs from its E, S or SE neighbour)."""
    seg = seg.astype(bool)
    east = np.zeros_like(seg)
    south = np.zeros_like(seg)
    south_east = np.zeros_like(seg)
    east[:, :-1] = seg[:, 1:]
    south[:-1, :] = seg[1:, :]
    south_east[:-1, :-1] = seg[1:, 1:]
    bmap = (seg ^ east) | (seg ^ south) | (seg ^ south_east)
    bmap[-1, :] = seg[-1, :] ^ east[-1, :]
    bmap[:, -1] = seg[:, -1] ^ south[:, -1]
    bmap[-1, -1] = False
    return bmap


def f_measure_frame(pred: np.ndarray, gt: np.ndarray, bound_th: float = BOUNDARY_THRESHOLD) -> float:
    """F of one ``[H, W]`` frame."""
    bound_pix = bound_th if bound_th >= 1 else np.ceil(bound_th * np.linalg.norm(pred.shape))
    pred_b = seg2bmap(pred)
    gt_b = seg2bmap(gt)
    footprint = disk(bound_pix).astype(np.uint8)
    pred_dil = cv2.dilate(pred_b.astype(np.uint8), footprint)
    gt_dil = cv2.dilate(gt_b.astype(np.uint8), footprint)
    n_pred, n_gt = np.sum(pred_b), np.sum(gt_b)
    if n_pred == 0 and n_gt > 0:
        precision, recall = 1.0, 0.0
    elif n_pred > 0 and n_gt == 0:
        precision, recall = 0.0, 1.0
    elif n_pred == 0 and n_gt == 0:
        precision, recall = 1.0, 1.0
    else:
        precision = np.sum(pred_b * gt_dil) / float(n_pred)
        recall = np.sum(gt_b * pred_dil) / float(n_gt)
    if precision + recall == 0:
        return 0.0
    return float(2 * precision * recall / (precision + recall))


def jaccard_frame(gt: np.ndarray, pred: np.ndarray) -> float:
    """J of one ``[H, W]`` frame."""
    gt, pred = gt.astype(bool), pred.astype(bool)
    union = np.sum(gt | pred)
    if union == 0:
        return 1.0
    return float(np.sum(gt & pred) / union)


def jaccard_and_f_per_frame(
    annotation: np.ndarray, segmentation: np.ndarray, bound_th: float = BOUNDARY_THRESHOLD
) -> tuple[np.ndarray, np.ndarray]:
    """Python loop over frames of ``[T, H, W]`` stacks: ``(J [T], F [T])`` float64."""
    j = np.array([jaccard_frame(g, p) for g, p in zip(annotation, segmentation)], dtype=np.float64)
    f = np.array(
        [f_measure_frame(p, g, bound_th) for g, p in zip(annotation, segmentation)], dtype=np.float64
    )
    return j, f
