"""MeViS and ReVOS readers (both: ``meta_expressions`` JSON + ``mask_dict.json`` of per-frame RLEs).

MeViS: ``<split>/{JPEGImages/<vid>/, meta_expressions.json, mask_dict.json}``; expressions
``{"exp", "obj_id": [..], "anno_id": [..]}``; target = union of ``mask_dict[str(anno_id)][frame]``
(null = absent on that frame).

ReVOS: ``{JPEGImages/<source>/.../<vid>/, mask_dict.json, meta_expressions_<split>_.json}`` (also under
``ReVOS/``); video keys carry the source prefix; per video ``height``/``width``; ``type_id`` 0 referring,
1 reasoning, 2 no target (empty ``anno_id``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from mora.data.errors import DatasetFormatError
from mora.data.masks import EmptyMaskTrack, MaskTrack, RLEMaskTrack
from mora.data.readers.common import (
    Issues,
    expression_sample,
    first_frame_size,
    load_json,
    report,
    video_frames_and_expressions,
)
from mora.data.schema import VideoSample
from mora.utils.io import UnsafePathError, safe_join
from mora.utils.logging import get_logger

logger = get_logger("data")

REVOS_TYPES = {0: "referring", 1: "reasoning", 2: "no_target"}


def _track(
    anno_ids: list[int], mask_dict: dict | None, n: int, size, where: str, issues: Issues | None
) -> MaskTrack | None:
    if mask_dict is None:
        return EmptyMaskTrack(n, size, annotated=False)
    if not anno_ids:
        return EmptyMaskTrack(n, size, annotated=True)
    missing = [a for a in anno_ids if str(a) not in mask_dict]
    if missing:
        report(issues, where, f"anno_id {missing} not in mask_dict.json")
        return None
    try:
        return RLEMaskTrack([mask_dict[str(a)] for a in anno_ids], num_frames=n, size=size, source=where)
    except DatasetFormatError as exc:
        report(issues, where, exc.problem)
        return None


def _read(
    root: Path,
    meta_path: Path,
    frames_root: Path,
    mask_dict_path: Path,
    source: str,
    issues: Issues | None,
) -> list[VideoSample]:
    videos = load_json(meta_path).get("videos")
    if not isinstance(videos, dict):
        raise DatasetFormatError(meta_path, 'expected a JSON object with a "videos" mapping')
    mask_dict: dict[str, Any] | None = load_json(mask_dict_path) if mask_dict_path.is_file() else None
    samples: list[VideoSample] = []
    for vid, entry in videos.items():
        try:
            vdir = safe_join(frames_root, vid)
        except UnsafePathError as exc:
            report(issues, meta_path, str(exc))
            continue
        checked = video_frames_and_expressions(entry, vid, vdir, meta_path, issues)
        if checked is None:
            continue
        frames, expressions = checked
        if "height" in entry and "width" in entry:
            size = (int(entry["height"]), int(entry["width"]))
        else:
            size = first_frame_size(vdir, frames)
        for exp_id, exp in expressions.items():
            where = f"{meta_path} video {vid!r} expression {exp_id!r}"
            try:
                text = str(exp["exp"])
                obj_ids = [int(o) for o in exp.get("obj_id", [])]
                anno_ids = [int(a) for a in exp.get("anno_id", [])]
            except (KeyError, TypeError, ValueError) as exc:
                report(
                    issues, meta_path, f"video {vid!r} expression {exp_id!r}: bad or missing field ({exc})"
                )
                continue
            track = _track(anno_ids, mask_dict, len(frames), size, where, issues)
            if track is None:
                continue
            type_id = exp.get("type_id")
            extra: dict[str, Any] = {"anno_ids": anno_ids}
            if type_id is not None:
                extra["type_id"] = int(type_id)
            samples.append(
                expression_sample(
                    source=source,
                    vid=vid,
                    exp_id=exp_id,
                    frame_dir=vdir,
                    frames=frames,
                    size=size,
                    text=text,
                    obj_ids=obj_ids,
                    masks=track,
                    q_type=REVOS_TYPES.get(type_id) if type_id is not None else None,
                    extra=extra,
                )
            )
    logger.info("read %d %s expressions from %s", len(samples), source, meta_path)
    return samples


def read_mevis(
    root: str | os.PathLike, split: str = "train", *, meta: str | None = None, issues: Issues | None = None
) -> list[VideoSample]:
    """One ``VideoSample`` per (video, expression) of a MeViS split (``train``, ``valid_u``, ``valid``)."""
    root = Path(root).resolve()
    split_dir = root / split if (root / split).is_dir() else root
    meta_path = safe_join(root, meta) if meta else split_dir / "meta_expressions.json"
    return _read(root, meta_path, split_dir / "JPEGImages", split_dir / "mask_dict.json", "mevis", issues)


def read_revos(
    root: str | os.PathLike, split: str = "train", *, meta: str | None = None, issues: Issues | None = None
) -> list[VideoSample]:
    """One ``VideoSample`` per (video, expression) of ReVOS; no-target expressions have empty ``obj_ids``."""
    root = Path(root).resolve()
    base = root / "ReVOS" if (root / "ReVOS").is_dir() else root
    meta_path = safe_join(root, meta) if meta else base / f"meta_expressions_{split}_.json"
    frames_root = base / "JPEGImages" if (base / "JPEGImages").is_dir() else base
    return _read(root, meta_path, frames_root, base / "mask_dict.json", "revos", issues)
