"""GroundMoRe evaluation with the official protocol (made exact where the released script is not).

Protocol (GroundMoRe's released evaluation script and paper):
* frames of ``<video_dir>/images`` sorted numerically (the released script's unsorted listing is a bug);
* 20 frames ``np.linspace(0, N - 1, 20).astype(int)`` over the whole clip;
* ground truth = union of the question's objects (``obj_id`` "3" or "1, 2") in the palette mask PNG of
  the same frame, forced empty outside the action span and where no mask PNG exists;
* span (inclusive) = ``[(start - clip_start) * 6, (end - clip_start) * 6 - 1]``, clip start from the
  ``_MMSS_MMSS`` tail of the video id;
* J, F averaged over the 20 frames, then over questions per ``q_type`` and overall; JF = (J + F) / 2.
Videos are looked up under ``annotations/``, ``groundmore_videos/`` or the data root itself.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mora.constants import GROUNDMORE_NUM_EVAL_FRAMES, GROUNDMORE_Q_TYPES
from mora.data.readers.groundmore import find_video_dir, frame_number, parse_obj_ids, span_frames, video_files
from mora.data.video import image_size, linspace_indices
from mora.evaluation.inference import InferenceItem
from mora.evaluation.labels import read_labels
from mora.evaluation.runner import EvaluationError, RunOptions, ensure_file, evaluate_benchmark
from mora.evaluation.scoring import ScoreJob
from mora.utils.io import UnsafePathError
from mora.utils.logging import get_logger

logger = get_logger("evaluation")


def sample_indices(num_frames: int, num_samples: int = GROUNDMORE_NUM_EVAL_FRAMES) -> list[int]:
    """The official ``np.linspace(0, N - 1, 20).astype(int)`` (repeats frames of clips shorter than 20)."""
    return linspace_indices(num_frames, num_samples)


@dataclass
class PaletteGroundTruth:
    """Union of ``obj_ids`` in palette PNGs (pixel = object id); ``None`` paths are empty frames."""

    mask_paths: list[str | None]
    obj_ids: list[int]
    size: tuple[int, int]

    def load(self) -> np.ndarray:
        """``[T, H, W]`` bool ground truth of the sampled frames."""
        out = np.zeros((len(self.mask_paths), *self.size), dtype=bool)
        for i, path in enumerate(self.mask_paths):
            if path is None:
                continue
            labels = read_labels(path)
            if labels.ndim != 2 or labels.shape != self.size:
                raise EvaluationError(
                    f"{path}: expected a {self.size[1]}x{self.size[0]} palette/grayscale mask"
                )
            if len(self.obj_ids) == 1:
                np.equal(labels, self.obj_ids[0], out=out[i])
            elif labels.dtype == np.uint8:  # a lookup table beats np.isin on 8-bit labels
                table = np.zeros(256, bool)
                table[[k for k in self.obj_ids if 0 <= k < 256]] = True
                np.take(table, labels, out=out[i])
            else:
                out[i] = np.isin(labels, self.obj_ids)
        return out


def build_groundmore(
    root: str | os.PathLike, meta: str | os.PathLike
) -> tuple[list[ScoreJob], list[InferenceItem]]:
    """Score jobs and inference items of every question in ``meta`` with frames under ``root``."""
    root = Path(root)
    meta_path = ensure_file(
        meta if Path(meta).is_absolute() or Path(meta).exists() else root / meta, "meta file"
    )
    try:
        videos = json.loads(meta_path.read_text())["videos"]
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise EvaluationError(f"{meta_path}: not a GroundMoRe meta file ({exc})") from exc
    jobs: list[ScoreJob] = []
    items: list[InferenceItem] = []
    skipped = 0
    for video_id, entry in videos.items():
        try:
            vdir = find_video_dir(root, video_id)
        except UnsafePathError as exc:
            raise EvaluationError(str(exc)) from exc
        if vdir is None:
            skipped += len(entry.get("questions", {}))
            logger.warning(
                "%s: no frames folder for video %s; its questions are skipped", meta_path, video_id
            )
            continue
        frames, masks_by_number = video_files(vdir)
        if not frames:
            raise EvaluationError(f"{vdir / 'images'} holds no frames")
        idx = sample_indices(len(frames))
        stems = [frames[i].stem for i in idx]
        size = image_size(frames[0])
        for qid, q in entry["questions"].items():
            try:
                span = span_frames(q["action_start"], q["action_end"], video_id)
                ids = parse_obj_ids(q["obj_id"])
            except (KeyError, ValueError) as exc:
                raise EvaluationError(f"{meta_path}: video {video_id} question {qid}: {exc}") from exc
            paths = []
            for i, stem in zip(idx, stems):
                path = masks_by_number.get(frame_number(stem)) if span[0] <= i <= span[1] else None
                paths.append(None if path is None else str(path))
            jobs.append(
                ScoreJob(
                    video_id=video_id,
                    question_id=str(qid),
                    category=q.get("q_type"),
                    frame_stems=stems,
                    gt=PaletteGroundTruth(paths, ids, size),
                    frame_indices=idx,
                    gt_span=(max(0, span[0]), min(len(frames) - 1, span[1])),
                    frame_paths=[str(frames[i]) for i in idx],
                )
            )
            items.append(
                InferenceItem(video_id, str(qid), str(q["question"]), [frames[i] for i in idx], stems, idx)
            )
    if skipped:
        logger.warning("%d questions skipped (videos without frames)", skipped)
    return jobs, items


def evaluate(
    data_root: str | os.PathLike,
    meta: str | os.PathLike,
    out: str | os.PathLike,
    *,
    pred_dir: str | os.PathLike | None = None,
    model: Any = None,
    num_workers: int = 1,
    strict: bool = False,
    num_chunks: int = 1,
    chunk_idx: int = 0,
    visualize: int = 0,
    predict_kwargs: dict[str, Any] | None = None,
    with_ungated: bool = False,
) -> dict[str, Any] | None:
    """Evaluate on GroundMoRe; returns the ``scores.json`` dict (None for an unfinished inference chunk).

    ``with_ungated``: also score the masks before span gating from the same pass (``out/ungated``).

    With ``model`` (a model object or a checkpoint path / Hub id) predictions are written first to
    ``pred_dir`` (default ``out/predictions``), skipping questions already present; without it,
    ``pred_dir`` is scored as is.
    """
    if model is None and pred_dir is None:
        raise EvaluationError("give a model (--model) or a prediction folder (--pred-dir)")
    jobs, items = build_groundmore(data_root, meta)
    opts = RunOptions(
        out=Path(out),
        pred_dir=None if pred_dir is None else Path(pred_dir),
        model=model,
        num_workers=num_workers,
        strict=strict,
        num_chunks=num_chunks,
        chunk_idx=chunk_idx,
        visualize=visualize,
        predict_kwargs=dict(predict_kwargs or {}),
        with_ungated=with_ungated,
    )
    scores, table = evaluate_benchmark(
        jobs, items, opts, title=f"GroundMoRe ({Path(meta).name})", category_order=GROUNDMORE_Q_TYPES
    )
    if scores is not None:
        logger.info("GroundMoRe scores written to %s", Path(out) / "scores.json")
    return scores
