"""Ref-YouTube-VOS and Ref-DAVIS17: ``meta_expressions`` + palette annotation PNGs (pixel = object id).

Layout (ReferFormer's): ``D/meta_expressions/<split>/meta_expressions.json``,
``D/<split>/JPEGImages/<vid>/<frame>.jpg``, ``D/<split>/Annotations/<vid>/<frame>.png``. An expression's
target is ``annotation == int(obj_id)``; a frame without an annotation PNG has an empty target.

* Ref-YouTube-VOS ``valid`` has no public ground truth (CodaLab scores it): the 202 validation videos
  (``valid`` minus ``test`` meta) are predicted and packed as ``Annotations/<vid>/<exp_id>/<frame>.png``.
  Splits with ``Annotations`` (e.g. a held-out part of ``train``) are scored locally.
* Ref-DAVIS17 follows the DAVIS protocol as ReferFormer runs it: every frame scored, one J and F mean per
  object, means over objects, one evaluation per annotator (category ``anno_<k>`` from the expression's
  ``anno_id``), overall = mean over all objects of all annotators.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mora.data.video import frame_file, image_size
from mora.evaluation.inference import InferenceItem
from mora.evaluation.labels import read_labels
from mora.evaluation.runner import EvaluationError, RunOptions, ensure_file, evaluate_benchmark
from mora.evaluation.scoring import ScoreJob
from mora.evaluation.submission import package_submission
from mora.utils.io import safe_join


@dataclass
class ObjectGroundTruth:
    """``annotation == obj_id`` for each frame's palette PNG (``None`` / absent file: empty)."""

    paths: list[str | None]
    obj_id: int
    size: tuple[int, int]

    def load(self) -> np.ndarray:
        out = np.zeros((len(self.paths), *self.size), dtype=bool)
        for t, path in enumerate(self.paths):
            if path is None or not Path(path).is_file():
                continue
            labels = read_labels(path)
            if labels.shape != self.size:
                raise EvaluationError(f"{path}: annotation is {labels.shape}, frames are {self.size}")
            out[t] = labels == self.obj_id
        return out


def _meta(data_root: Path, split: str) -> dict:
    path = ensure_file(Path(data_root) / "meta_expressions" / split / "meta_expressions.json", "meta file")
    try:
        return json.loads(path.read_text())["videos"]
    except (json.JSONDecodeError, KeyError) as exc:
        raise EvaluationError(f"{path}: not a meta_expressions file ({exc})") from exc


def build_refytvos_jobs(
    data_root: Path, split: str, videos: dict, category_of=None
) -> tuple[list[ScoreJob], list[InferenceItem]]:
    split_dir = Path(data_root) / split
    ann_root = split_dir / "Annotations"
    jobs, items = [], []
    for vid, entry in videos.items():
        frames_dir = safe_join(split_dir / "JPEGImages", vid)
        stems = [str(s) for s in entry["frames"]]
        paths = [frame_file(frames_dir, s) for s in stems]
        for eid, exp in entry["expressions"].items():
            items.append(InferenceItem(vid, str(eid), str(exp["exp"]), paths, stems, list(range(len(stems)))))
            if not ann_root.is_dir():
                continue
            size = image_size(paths[0])
            ann = [str(safe_join(ann_root, f"{vid}/{s}.png")) for s in stems]
            gt = ObjectGroundTruth(ann, int(exp["obj_id"]), size)
            category = category_of(exp) if category_of else None
            jobs.append(ScoreJob(vid, str(eid), category, stems, gt, frame_paths=[str(p) for p in paths]))
    return jobs, items


def evaluate_refytvos(data_root: Path, split: str, opts: RunOptions) -> tuple[dict | None, str]:
    videos = _meta(data_root, split)
    if split == "valid" and (Path(data_root) / "meta_expressions" / "test").is_dir():
        test_ids = set(_meta(data_root, "test"))
        videos = {v: e for v, e in videos.items() if v not in test_ids}
    jobs, items = build_refytvos_jobs(data_root, split, videos)
    if not (Path(data_root) / split / "Annotations").is_dir():
        return package_submission(items, opts, f"refytvos_{split}.zip", prefix="Annotations/")
    scores, _ = evaluate_benchmark(jobs, items, opts, title=f"Ref-YouTube-VOS {split}")
    return scores, f"Ref-YouTube-VOS {split}"


def evaluate_davis17(data_root: Path, split: str, opts: RunOptions) -> tuple[dict | None, str]:
    videos = _meta(data_root, split)
    jobs, items = build_refytvos_jobs(
        data_root, split, videos, category_of=lambda exp: f"anno_{exp.get('anno_id', 0)}"
    )
    if not jobs and opts.model is None:
        raise EvaluationError(f"{Path(data_root) / split / 'Annotations'} does not exist")
    scores, _ = evaluate_benchmark(jobs, items, opts, title=f"Ref-DAVIS17 {split}")
    return scores, f"Ref-DAVIS17 {split} (object-weighted; one line per annotator)"
