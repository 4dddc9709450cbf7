"""Helpers shared by the dataset readers: JSON loading, problem reporting, expression samples."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from mora.data.errors import DatasetFormatError
from mora.data.masks import MaskTrack
from mora.data.schema import VideoSample
from mora.data.video import frame_file, image_size

Issues = list[str]


def load_json(path: str | os.PathLike) -> Any:
    path = Path(path)
    if not path.is_file():
        raise DatasetFormatError(path, "file does not exist")
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as exc:
        raise DatasetFormatError(path, f"invalid JSON ({exc})") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetFormatError(path, f"unreadable ({exc})") from exc


def report(issues: Issues | None, path: str | os.PathLike | None, problem: str) -> None:
    """Raise the problem, or record it when the caller collects issues (validation, lenient reading)."""
    error = DatasetFormatError(path, problem)
    if issues is None:
        raise error
    issues.append(str(error))


def video_frames_and_expressions(
    entry: dict[str, Any],
    vid: str,
    frame_dir: Path,
    meta_path: str | os.PathLike,
    issues: Issues | None,
) -> tuple[list[str], dict[str, Any]] | None:
    """Frame stems and expressions of one ``meta_expressions.json`` video entry (Ref-YTVOS / MeViS /
    ReVOS layout), or None after reporting why the video is unusable (no frames or expressions, or a
    missing frame folder)."""
    frames = [str(f) for f in entry.get("frames", [])]
    expressions = entry.get("expressions")
    if not frames or not isinstance(expressions, dict):
        report(issues, meta_path, f'video {vid!r} lacks "frames" or "expressions"')
        return None
    if not frame_dir.is_dir():
        report(issues, frame_dir, "frame folder does not exist")
        return None
    return frames, expressions


def first_frame_size(frame_dir: Path, frames: list[str]) -> tuple[int, int] | None:
    """(H, W) of the first frame of a frame folder, or None when it cannot be read."""
    try:
        return image_size(frame_file(frame_dir, frames[0]))
    except DatasetFormatError:
        return None


def expression_sample(
    *,
    source: str,
    vid: str,
    exp_id: str,
    frame_dir: Path,
    frames: list[str],
    size: tuple[int, int] | None,
    text: str,
    obj_ids: list[int],
    masks: MaskTrack,
    q_type: str | None = None,
    extra: dict[str, Any] | None = None,
) -> VideoSample:
    """The `VideoSample` of one referring expression (Ref-YouTube-VOS / MeViS / ReVOS): no span, no answer."""
    return VideoSample(
        id=f"{vid}/{exp_id}",
        source=source,
        video_id=vid,
        video=frame_dir,
        frames=frames,
        fps=None,
        height=size[0] if size else None,
        width=size[1] if size else None,
        question=text,
        answer=None,
        q_type=q_type,
        obj_ids=obj_ids,
        span=None,
        masks=masks,
        frame_ext=frame_file(frame_dir, frames[0]).suffix,
        extra={"exp_id": str(exp_id), "expression": True, **(extra or {})},
    )
