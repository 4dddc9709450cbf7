"""Helpers shared by the dataset readers: JSON loading and problem reporting."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from mora.data.errors import DatasetFormatError

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
