"""Scoring one question (or expression) against its prediction folder, and a worker pool over many.

Every benchmark turns its ground truth into :class:`ScoreJob` s; this module does the rest the same
way for all of them. Jobs are small and picklable: ground truth is loaded inside the worker, so memory
stays bounded by one question per worker whatever the number of videos.
"""

from __future__ import annotations

import multiprocessing as mp
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from mora.evaluation.predictions import read_question
from mora.metrics import jaccard_and_boundary_f_with_baseline


class GroundTruth(Protocol):
    """Lazily loaded ground truth of one job."""

    size: tuple[int, int]  # (H, W)

    def load(self) -> np.ndarray:
        """``bool [T, H, W]`` target union on the job's frames."""


@dataclass
class ScoreJob:
    """One question / expression to score.

    Attributes:
        video_id, question_id: locate ``<pred_dir>/<video_id>/<question_id>/``.
        category: question type / category the result is aggregated under (None: overall only).
        frame_stems: names of the scored frames (``<stem>.png`` in the prediction folder).
        gt: the ground truth on those frames.
        frame_indices: index of each scored frame in the clip's full frame list (for spans).
        gt_span: inclusive ground-truth motion span in clip frame indices, when the benchmark has one.
        extra: JSON-serialisable fields copied into the per-question record.
    """

    video_id: str
    question_id: str
    category: str | None
    frame_stems: list[str]
    gt: GroundTruth
    frame_indices: list[int] | None = None
    gt_span: tuple[int, int] | None = None
    frame_paths: list[str] | None = None  # images, for visualisation only
    extra: dict[str, Any] = field(default_factory=dict)


def span_iou(a: tuple[int, int] | None, b: tuple[int, int] | None) -> float:
    """Temporal IoU of two inclusive frame spans (0 when either is missing)."""
    if a is None or b is None:
        return 0.0
    inter = max(0, min(a[1], b[1]) - max(a[0], b[0]) + 1)
    union = (a[1] - a[0] + 1) + (b[1] - b[0] + 1) - inter
    return inter / union if union > 0 else 0.0


def predicted_span(
    info: dict[str, Any], masks: np.ndarray, frame_indices: list[int]
) -> tuple[int, int] | None:
    """Span from ``prediction.json`` when present, else first..last scored frame with a non-empty mask."""
    if "span" in info:
        span = info["span"]
        return None if span is None else (int(span[0]), int(span[1]))
    nonempty = np.flatnonzero(masks.reshape(len(masks), -1).any(axis=1))
    if nonempty.size == 0:
        return None
    return frame_indices[nonempty[0]], frame_indices[nonempty[-1]]


def score_job(job: ScoreJob, pred_dir: str | os.PathLike) -> dict[str, Any]:
    """J, F (per-frame means), the empty-mask baseline and temporal metrics of one job."""
    gt = job.gt.load()
    pred, missing_frames, missing, info = read_question(
        pred_dir, job.video_id, job.question_id, job.frame_stems, tuple(gt.shape[1:])
    )
    j, f, j_empty, f_empty = jaccard_and_boundary_f_with_baseline(gt, pred)
    record: dict[str, Any] = {
        "video_id": job.video_id,
        "question_id": job.question_id,
        "category": job.category,
        "J": float(j.mean()),
        "F": float(f.mean()),
        "J_empty": float(j_empty.mean()),
        "F_empty": float(f_empty.mean()),
        "n_frames": len(job.frame_stems),
        "missing": missing,
        "missing_frames": missing_frames,
        **job.extra,
    }
    record["JF"] = (record["J"] + record["F"]) / 2
    if job.gt_span is not None and job.frame_indices is not None:
        pspan = predicted_span(info, pred, job.frame_indices)
        record["pred_span"] = None if pspan is None else list(pspan)
        record["gt_span"] = list(job.gt_span)
        record["tIoU"] = span_iou(pspan, job.gt_span)
        inside = np.array([job.gt_span[0] <= i <= job.gt_span[1] for i in job.frame_indices])
        record["JF_in"] = float((j[inside].mean() + f[inside].mean()) / 2) if inside.any() else None
        # the same masks gated by the true span (empty outside it): what a perfect [LOC] would score
        j_true, f_true = np.where(inside, j, j_empty), np.where(inside, f, f_empty)
        record["JF_true_span"] = float((j_true.mean() + f_true.mean()) / 2)
    return record


def _score_star(args: tuple[ScoreJob, str]) -> dict[str, Any]:
    return score_job(*args)


def score_jobs(
    jobs: Iterable[ScoreJob], pred_dir: str | os.PathLike, num_workers: int = 1
) -> Iterator[dict[str, Any]]:
    """Score ``jobs`` in order, with a process pool when ``num_workers > 1``; yields one record per job."""
    pred_dir = str(Path(pred_dir))
    tasks = ((job, pred_dir) for job in jobs)
    if num_workers <= 1:
        yield from map(_score_star, tasks)
        return
    ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
    with ctx.Pool(num_workers) as pool:
        yield from pool.imap(_score_star, tasks, chunksize=4)


def default_workers() -> int:
    return max(1, min(8, (os.cpu_count() or 1)))
