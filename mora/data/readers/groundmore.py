"""GroundMoRe reader: ``<meta>.json`` + ``annotations/<video_id>/{images,masks}``, read in place.

Meta JSON: ``{"videos": {"<id>_MMSS_MMSS": {"questions": {"<qid>": {"question", "answer", "obj_id",
"q_type", "action_start": "MM:SS", "action_end": "MM:SS"}}}}}``. Frames at 6 fps; mask PNGs (value =
object id) only on annotated frames. Span (inclusive frames) = [(start - clip_start) * 6,
(end - clip_start) * 6 - 1].
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from PIL import Image

from mora.constants import GROUNDMORE_FPS
from mora.data.errors import DatasetFormatError
from mora.data.masks import PaletteMaskTrack
from mora.data.readers.common import Issues, load_json, report
from mora.data.schema import VideoSample
from mora.data.video import frame_sort_key, list_frame_files
from mora.utils.io import UnsafePathError, safe_join
from mora.utils.logging import get_logger

logger = get_logger("data")

_CLIP_TAIL = re.compile(r"_(\d{2})(\d{2})_(\d{2})(\d{2})$")
_MMSS = re.compile(r"^\s*(?:(\d+):)?(\d{1,2}):(\d{2})\s*$")
VIDEO_SUBDIRS = ("annotations", "groundmore_videos", "")  # where evaluators look for a video folder


def parse_mmss(text: str) -> int:
    """Seconds of an ``MM:SS`` (or ``H:MM:SS``) time stamp."""
    match = _MMSS.match(str(text))
    if not match:
        raise ValueError(f"time {text!r} is not MM:SS")
    hours, minutes, seconds = (int(g) if g else 0 for g in match.groups())
    return hours * 3600 + minutes * 60 + seconds


def clip_bounds(video_id: str) -> tuple[int, int]:
    """(start, end) seconds of the clip in its source video, from the ``_MMSS_MMSS`` id tail."""
    match = _CLIP_TAIL.search(video_id)
    if not match:
        raise ValueError(f"video id {video_id!r} does not end in _MMSS_MMSS")
    m0, s0, m1, s1 = (int(g) for g in match.groups())
    return m0 * 60 + s0, m1 * 60 + s1


def span_frames(
    action_start: str, action_end: str, video_id: str, fps: int = GROUNDMORE_FPS
) -> tuple[int, int]:
    """Inclusive frame span of an action, exactly as GroundMoRe's evaluator computes it."""
    clip_start, _ = clip_bounds(video_id)
    return (parse_mmss(action_start) - clip_start) * fps, (parse_mmss(action_end) - clip_start) * fps - 1


def format_mmss(seconds: int) -> str:
    return f"{seconds // 60:02d}:{seconds % 60:02d}"


def parse_obj_ids(value: Any) -> list[int]:
    """``"3"``, ``"1, 2"``, ``3`` or ``[1, 2]`` -> list of ints."""
    if isinstance(value, bool):
        raise ValueError(f"obj_id {value!r} is not an object id")
    if isinstance(value, int):
        return [value]
    if isinstance(value, list):
        return [int(v) for v in value]
    parts = [p for p in re.split(r"[,\s]+", str(value).strip()) if p]
    if not parts:
        raise ValueError(f"obj_id {value!r} is empty")
    return [int(p) for p in parts]


def videos_root(root: Path) -> Path:
    """``<root>/annotations`` when present (HF/UniPixel layout), else ``<root>`` (official script layout)."""
    return root / "annotations" if (root / "annotations").is_dir() else root


def find_meta_files(root: str | os.PathLike) -> list[Path]:
    """Every GroundMoRe-style meta JSON at the dataset root (train/val/test.json, test_v2.json, ...)."""
    return sorted(p for p in Path(root).glob("*.json") if p.is_file() and not p.name.startswith("."))


def video_files(vdir: Path) -> tuple[list[Path], dict[int, Path]]:
    """Frame files of ``<vdir>/images`` in frame order, and mask files of ``<vdir>/masks`` by frame number.

    A mask belongs to the frame whose stem ends in the same number (`frame_sort_key`). Training and the
    evaluator both read a video through this function, so they agree on frame order and mask matching.
    """
    images = list_frame_files(vdir / "images")
    masks: dict[int, Path] = {}
    if (vdir / "masks").is_dir():
        for path in list_frame_files(vdir / "masks"):
            masks[frame_number(path.stem)] = path
    return images, masks


def frame_number(stem: str) -> int:
    """The frame number a mask file is matched by (last run of digits of the stem)."""
    return frame_sort_key(stem)[1]


def find_video_dir(root: Path, video_id: str) -> Path | None:
    """``<root>/<sub>/<video_id>`` holding an ``images`` folder, for ``sub`` in ``VIDEO_SUBDIRS``, or None.

    Raises:
        UnsafePathError: ``video_id`` escapes ``root``.
    """
    for sub in VIDEO_SUBDIRS:
        vdir = safe_join(root, Path(sub) / video_id)
        if (vdir / "images").is_dir():
            return vdir
    return None


def read_groundmore(
    root: str | os.PathLike,
    meta: str | os.PathLike = "test.json",
    *,
    issues: Issues | None = None,
    source: str = "groundmore",
) -> list[VideoSample]:
    """All questions of one GroundMoRe meta file as ``VideoSample`` s (masks lazily decoded).

    ``meta`` is relative to ``root`` (or absolute). Problems raise ``DatasetFormatError`` naming the file;
    with an ``issues`` list they are appended there instead and the affected samples skipped.
    """
    root = Path(root).resolve()
    meta_path = Path(meta) if Path(meta).is_absolute() else root / meta
    data = load_json(meta_path)
    videos = data.get("videos") if isinstance(data, dict) else None
    if not isinstance(videos, dict):
        raise DatasetFormatError(meta_path, 'expected a JSON object with a "videos" mapping')
    vroot = videos_root(root)
    samples: list[VideoSample] = []
    for video_id, entry in videos.items():
        where = f"{meta_path} video {video_id!r}"
        questions = entry.get("questions") if isinstance(entry, dict) else None
        if not isinstance(questions, dict):
            report(issues, meta_path, f'video {video_id!r} has no "questions" mapping')
            continue
        try:
            vdir = safe_join(vroot, video_id)
            clip_bounds(video_id)
        except (UnsafePathError, ValueError) as exc:
            report(issues, meta_path, f"video {video_id!r}: {exc}")
            continue
        try:
            images, masks = video_files(vdir)
        except DatasetFormatError as exc:
            report(issues, exc.path, exc.problem)
            continue
        if not images:
            report(issues, vdir / "images", "no frames")
            continue
        stems = [p.stem for p in images]
        files = [masks.get(frame_number(s)) for s in stems]
        extra_masks = set(masks) - {frame_number(s) for s in stems}
        if extra_masks:
            report(issues, vdir / "masks", f"{len(extra_masks)} mask PNGs have no matching frame")
        try:
            with Image.open(images[0]) as first:
                width, height = first.size
        except OSError as exc:
            report(issues, images[0], f"unreadable image ({exc})")
            continue
        for qid, q in questions.items():
            sample = _question(q, qid, video_id, vdir, stems, images[0].suffix, files, (height, width), where)
            if isinstance(sample, str):
                report(issues, meta_path, sample)
            else:
                sample.source = source
                samples.append(sample)
    logger.info("read %d GroundMoRe questions from %s", len(samples), meta_path)
    return samples


def _question(q, qid, video_id, vdir, stems, ext, files, size, where) -> VideoSample | str:
    if not isinstance(q, dict):
        return f"video {video_id!r} question {qid!r} is not an object"
    missing = [k for k in ("question", "obj_id", "action_start", "action_end") if k not in q]
    if missing:
        return f"video {video_id!r} question {qid!r} lacks {missing}"
    try:
        obj_ids = parse_obj_ids(q["obj_id"])
        start, end = span_frames(q["action_start"], q["action_end"], video_id)
    except ValueError as exc:
        return f"video {video_id!r} question {qid!r}: {exc}"
    n = len(stems)
    if end < start or start >= n or end < 0:
        return f"video {video_id!r} question {qid!r}: span [{start}, {end}] empty or outside the {n} frames"
    span = (max(0, start), min(n - 1, end))
    return VideoSample(
        id=f"{video_id}/{qid}",
        source="groundmore",
        video_id=video_id,
        video=vdir / "images",
        frames=stems,
        fps=float(GROUNDMORE_FPS),
        height=size[0],
        width=size[1],
        question=str(q["question"]),
        answer=None if q.get("answer") is None else str(q["answer"]),
        q_type=q.get("q_type"),
        obj_ids=obj_ids,
        span=span,
        masks=PaletteMaskTrack(files, obj_ids, size=size),
        frame_ext=ext,
        extra={"qid": str(qid), "action_start": q["action_start"], "action_end": q["action_end"]},
    )
