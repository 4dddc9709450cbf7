"""Refer-YouTube-VOS reader, read in place.

Layout: ``meta_expressions/<split>/meta_expressions.json`` (or ``<split>/meta_expressions.json``),
``<split>/JPEGImages/<vid>/<frame>.jpg``, ``<split>/Annotations/<vid>/<frame>.png`` (palette PNG,
value = object id; train only) and optionally ``<split>/meta.json`` (frames where each object appears).
Expressions: ``{"exp": str, "obj_id": "1"}`` (a string, one object each).
"""

from __future__ import annotations

import os
from pathlib import Path

from mora.data.errors import DatasetFormatError
from mora.data.masks import PaletteMaskTrack
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


def refytvos_meta_path(root: Path, split: str) -> Path:
    for candidate in (
        root / "meta_expressions" / split / "meta_expressions.json",
        root / split / "meta_expressions.json",
    ):
        if candidate.is_file():
            return candidate
    raise DatasetFormatError(
        root,
        f"no meta_expressions.json for split {split!r} (looked in meta_expressions/{split}/ and {split}/)",
    )


def _object_frames(split_dir: Path) -> dict[str, dict[str, list[str]]]:
    """``{vid: {obj_id: [frames where it appears]}}`` from ``<split>/meta.json`` when present."""
    path = split_dir / "meta.json"
    if not path.is_file():
        return {}
    videos = load_json(path).get("videos", {})
    return {
        vid: {oid: o.get("frames", []) for oid, o in v.get("objects", {}).items()}
        for vid, v in videos.items()
    }


def read_refytvos(
    root: str | os.PathLike, split: str = "train", *, meta: str | None = None, issues: Issues | None = None
) -> list[VideoSample]:
    """One ``VideoSample`` per (video, expression)."""
    root = Path(root).resolve()
    meta_path = safe_join(root, meta) if meta else refytvos_meta_path(root, split)
    videos = load_json(meta_path).get("videos")
    if not isinstance(videos, dict):
        raise DatasetFormatError(meta_path, 'expected a JSON object with a "videos" mapping')
    split_dir = root / split
    object_frames = _object_frames(split_dir)
    samples: list[VideoSample] = []
    for vid, entry in videos.items():
        try:
            vdir = safe_join(split_dir / "JPEGImages", vid)
            adir = safe_join(split_dir / "Annotations", vid)
        except UnsafePathError as exc:
            report(issues, meta_path, str(exc))
            continue
        checked = video_frames_and_expressions(entry, vid, vdir, meta_path, issues)
        if checked is None:
            continue
        frames, expressions = checked
        pngs = {p.stem: p for p in adir.glob("*.png")} if adir.is_dir() else {}
        files = [pngs.get(f) for f in frames]
        size = first_frame_size(vdir, frames)
        for exp_id, exp in expressions.items():
            try:
                obj_id = int(exp["obj_id"])
                text = str(exp["exp"])
            except (KeyError, TypeError, ValueError) as exc:
                report(
                    issues, meta_path, f"video {vid!r} expression {exp_id!r}: bad or missing field ({exc})"
                )
                continue
            extra = {}
            appears = object_frames.get(vid, {}).get(str(obj_id))
            if appears is not None:
                position = {f: i for i, f in enumerate(frames)}
                extra["present_frames"] = sorted(position[f] for f in appears if f in position)
            samples.append(
                expression_sample(
                    source="refytvos",
                    vid=vid,
                    exp_id=exp_id,
                    frame_dir=vdir,
                    frames=frames,
                    size=size,
                    text=text,
                    obj_ids=[obj_id],
                    masks=PaletteMaskTrack(files, [obj_id], size=size),
                    extra=extra,
                )
            )
    logger.info("read %d Ref-YouTube-VOS expressions from %s", len(samples), meta_path)
    return samples
