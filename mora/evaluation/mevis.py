"""MeViS and ReVOS: ``meta_expressions`` JSON + ``mask_dict.json`` of per-frame COCO RLEs.

* Every frame listed for a video is scored; target = union of ``mask_dict[str(anno_id)][frame]``
  (``null`` adds nothing), so frames without the target score 1 only for an empty prediction.
* MeViS (``D/<split>/{JPEGImages, meta_expressions.json, mask_dict.json}``): mean over expressions.
  ``valid`` has no ground truth: predictions are packed into a CodaLab archive instead.
* ReVOS (``D/{JPEGImages, mask_dict.json, meta_expressions_<split>_.json}``, or under ``D/ReVOS``):
  categories ``referring`` (type_id 0) and ``reasoning`` (1); overall = mean of those two category
  means (VISA's rule, not expression-weighted). ``no_target`` (2, empty ``anno_id``) expressions are
  scored and reported on their own line but excluded from overall, as ReVOS defines it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils

from mora.data.video import frame_file, image_size
from mora.evaluation.aggregate import mean_of_categories
from mora.evaluation.inference import InferenceItem
from mora.evaluation.runner import EvaluationError, RunOptions, ensure_file, evaluate_benchmark
from mora.evaluation.scoring import ScoreJob
from mora.evaluation.submission import package_submission
from mora.utils.io import safe_join

REVOS_CATEGORIES = {0: "referring", 1: "reasoning", 2: "no_target"}
REVOS_SCORED = ("referring", "reasoning")


@dataclass
class RLEGroundTruth:
    """Union over objects of per-frame RLEs: ``rles[object][frame]`` (dict or None)."""

    rles: list[list[dict | None]]
    size: tuple[int, int]

    def load(self) -> np.ndarray:
        n = len(self.rles[0]) if self.rles else 0
        out = np.zeros((n, *self.size), dtype=bool)
        for per_object in self.rles:
            for t, rle in enumerate(per_object):
                if rle is not None:
                    out[t] |= mask_utils.decode(rle).astype(bool)
        return out


@dataclass
class EmptyGroundTruth:
    num_frames: int
    size: tuple[int, int]

    def load(self) -> np.ndarray:
        return np.zeros((self.num_frames, *self.size), dtype=bool)


def _load_json(path: Path) -> Any:
    try:
        return json.loads(ensure_file(path, "annotation file").read_text())
    except json.JSONDecodeError as exc:
        raise EvaluationError(f"{path}: invalid JSON ({exc})") from exc


def build_mevis_jobs(
    meta_path: Path, frames_root: Path, mask_dict_path: Path | None, category_of=None
) -> tuple[list[ScoreJob], list[InferenceItem]]:
    """Jobs (empty when there is no ``mask_dict``) and inference items of a meta_expressions file."""
    videos = _load_json(meta_path).get("videos", {})
    mask_dict = _load_json(mask_dict_path) if mask_dict_path is not None else None
    jobs, items = [], []
    for vid, entry in videos.items():
        frames_dir = safe_join(frames_root, vid)
        stems = [str(s) for s in entry["frames"]]
        frame_paths = [frame_file(frames_dir, s) for s in stems]
        if "height" in entry and "width" in entry:
            size = (int(entry["height"]), int(entry["width"]))
        else:
            size = image_size(frame_paths[0])
        for eid, exp in entry["expressions"].items():
            items.append(
                InferenceItem(
                    vid,
                    str(eid),
                    str(exp["exp"]),
                    frame_paths,
                    stems,
                    list(range(len(stems))),
                )
            )
            if mask_dict is None:
                continue
            anno_ids = [str(a) for a in exp.get("anno_id", [])]
            missing = [a for a in anno_ids if a not in mask_dict]
            if missing:
                raise EvaluationError(f"{mask_dict_path}: anno_id {missing} (video {vid}) not found")
            rles = [mask_dict[a] for a in anno_ids]
            gt = RLEGroundTruth(rles, size) if rles else EmptyGroundTruth(len(stems), size)
            category = category_of(exp) if category_of else None
            jobs.append(
                ScoreJob(
                    vid,
                    str(eid),
                    category,
                    stems,
                    gt,
                    frame_paths=[str(p) for p in frame_paths],
                )
            )
    return jobs, items


def evaluate_mevis(data_root: Path, split: str, opts: RunOptions) -> tuple[dict | None, str]:
    """MeViS ``valid_u`` (or ``train``) scored locally; ``valid`` / ``test`` packed for CodaLab."""
    split_dir = Path(data_root) / split
    mask_dict = split_dir / "mask_dict.json"
    has_gt = mask_dict.is_file()
    jobs, items = build_mevis_jobs(
        split_dir / "meta_expressions.json", split_dir / "JPEGImages", mask_dict if has_gt else None
    )
    if has_gt:
        scores, _ = evaluate_benchmark(jobs, items, opts, title=f"MeViS {split}")
        return scores, f"MeViS {split}"
    return package_submission(items, opts, f"mevis_{split}.zip", prefix="")


def revos_paths(data_root: Path, split: str) -> tuple[Path, Path, Path]:
    """(meta, frames root, mask_dict) of ReVOS, accepting ``D/`` or ``D/ReVOS/``."""
    for base in (Path(data_root), Path(data_root) / "ReVOS"):
        meta = base / f"meta_expressions_{split}_.json"
        if meta.is_file():
            return meta, base / "JPEGImages", base / "mask_dict.json"
    raise EvaluationError(
        f"{Path(data_root) / f'meta_expressions_{split}_.json'} does not exist (nor under ReVOS/)"
    )


def revos_overall(records: list[dict], per_category: dict) -> dict:
    return mean_of_categories(per_category, REVOS_SCORED)


def evaluate_revos(data_root: Path, split: str, opts: RunOptions) -> tuple[dict | None, str]:
    meta, frames_root, mask_dict = revos_paths(data_root, split)
    jobs, items = build_mevis_jobs(
        meta, frames_root, mask_dict, category_of=lambda exp: REVOS_CATEGORIES.get(int(exp.get("type_id", 0)))
    )
    scores, _ = evaluate_benchmark(
        jobs,
        items,
        opts,
        title=f"ReVOS {split}",
        category_order=(*REVOS_SCORED, "no_target"),
        overall=revos_overall,
    )
    return scores, f"ReVOS {split} (overall = mean of referring and reasoning)"
