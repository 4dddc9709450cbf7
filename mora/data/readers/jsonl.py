"""The unified ``samples.jsonl`` format (what data_prep writes): one JSON object per line, paths relative to the root.

``{"id", "source", "video", "frames": [stems] | null, "fps", "height", "width", "question", "answer",
"q_type", "obj_ids": [int], "span": [first, last] | null, "masks": {"<frame index>": RLE},
"choices", "correct_choice"}``. Frames listed in ``masks`` are annotated (an empty RLE = no target
there); the others carry no ground truth. Optional extensions written by ``write_samples_jsonl``:
``"frame_ext"`` (suffix of folder frames) and ``"num_frames"`` (length of an mp4 video).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path

from mora.data.errors import DatasetFormatError
from mora.data.masks import FrameRLEMaskTrack, encode_rle
from mora.data.readers.common import Issues, report
from mora.data.schema import VideoSample
from mora.data.video import IMAGE_SUFFIXES, probe_video
from mora.utils.io import UnsafePathError, safe_join, write_text_atomic
from mora.utils.logging import get_logger

logger = get_logger("data")

REQUIRED = ("id", "video", "question")


def _frame_ext(video: Path, first: str) -> str:
    for suffix in IMAGE_SUFFIXES:
        if (video / f"{first}{suffix}").is_file():
            return suffix
    raise DatasetFormatError(video, f"no image file for frame {first!r} ({', '.join(IMAGE_SUFFIXES)})")


def _sample(record: dict, root: Path, probed: dict[Path, int]) -> VideoSample:
    missing = [k for k in REQUIRED if k not in record]
    if missing:
        raise ValueError(f"missing fields {missing}")
    video = safe_join(root, record["video"])
    frames = record.get("frames")
    if frames is not None:
        frames = [str(f) for f in frames]
        if not frames:
            raise ValueError('"frames" is empty')
        ext = record.get("frame_ext") or _frame_ext(video, frames[0])
        num_frames = len(frames)
    else:
        if not video.is_file():
            raise ValueError(f"video file {video} does not exist")
        ext = ".jpg"
        if record.get("num_frames") is None and video not in probed:
            probed[video] = probe_video(video)[0]
        num_frames = int(record.get("num_frames") or probed[video])
    height, width = record.get("height"), record.get("width")
    size = (int(height), int(width)) if height and width else None
    rles = {int(k): v for k, v in (record.get("masks") or {}).items()}
    bad = [k for k in rles if not 0 <= k < num_frames]
    if bad:
        raise ValueError(f"mask frame indices {bad[:5]} outside [0, {num_frames})")
    span = record.get("span")
    if span is not None:
        span = (int(span[0]), int(span[1]))
        if not 0 <= span[0] <= span[1] < num_frames:
            raise ValueError(f"span {list(span)} outside [0, {num_frames})")
    return VideoSample(
        id=str(record["id"]),
        source=str(record.get("source", "jsonl")),
        video_id=str(record["video"]),
        video=video,
        frames=frames,
        fps=record.get("fps"),
        height=size[0] if size else None,
        width=size[1] if size else None,
        question=str(record["question"]),
        answer=record.get("answer"),
        q_type=record.get("q_type"),
        obj_ids=[int(o) for o in record.get("obj_ids", [])],
        span=span,
        masks=FrameRLEMaskTrack(rles, num_frames=num_frames, size=size),
        choices=record.get("choices"),
        correct_choice=record.get("correct_choice"),
        frame_ext=ext,
    )


def read_samples_jsonl(
    root: str | os.PathLike, path: str | os.PathLike = "samples.jsonl", *, issues: Issues | None = None
) -> list[VideoSample]:
    """Samples of a ``samples.jsonl`` (``path`` relative to ``root`` or absolute)."""
    root = Path(root).resolve()
    path = Path(path) if Path(path).is_absolute() else root / path
    if not path.is_file():
        raise DatasetFormatError(path, "file does not exist")
    samples: list[VideoSample] = []
    probed: dict[Path, int] = {}
    with open(path, encoding="utf-8") as f:
        for line_no, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                if not isinstance(record, dict):
                    raise ValueError("line is not a JSON object")
                samples.append(_sample(record, root, probed))
            except (ValueError, KeyError, TypeError, UnsafePathError, DatasetFormatError) as exc:
                report(issues, f"{path}:{line_no}", str(exc))
    logger.info("read %d samples from %s", len(samples), path)
    return samples


def sample_record(sample: VideoSample, root: str | os.PathLike) -> dict:
    """The JSON object of one sample, its video path made relative to ``root``."""
    root = Path(root).resolve()
    video = Path(sample.video).resolve()
    if root not in video.parents and video != root:
        raise ValueError(f"sample {sample.id}: video {video} is outside the dataset root {root}")
    track = sample.masks
    if isinstance(track, FrameRLEMaskTrack):
        rles = track.rles
    else:
        rles = {i: encode_rle(track[i]) for i in track.annotated_indices()}
    record = {
        "id": sample.id,
        "source": sample.source,
        "video": video.relative_to(root).as_posix(),
        "frames": sample.frames,
        "fps": sample.fps,
        "height": sample.height,
        "width": sample.width,
        "question": sample.question,
        "answer": sample.answer,
        "q_type": sample.q_type,
        "obj_ids": list(sample.obj_ids),
        "span": list(sample.span) if sample.span is not None else None,
        "masks": {str(i): rles[i] for i in sorted(rles)},
        "choices": sample.choices,
        "correct_choice": sample.correct_choice,
    }
    if sample.frames is not None:
        record["frame_ext"] = sample.frame_ext
    else:
        record["num_frames"] = sample.num_frames
    return record


def write_samples_jsonl(
    samples: Iterable[VideoSample], path: str | os.PathLike, root: str | os.PathLike
) -> int:
    """Write samples atomically; returns the number written."""
    lines = [json.dumps(sample_record(s, root), separators=(",", ":")) for s in samples]
    write_text_atomic(path, "".join(line + "\n" for line in lines))
    return len(lines)
