"""Video input: mp4 files (PyAV) and frame folders, decoding only the frames asked for."""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path

import numpy as np
from PIL import Image

from mora.data.decoded_cache import read_cached
from mora.data.errors import DatasetFormatError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
_DIGITS = re.compile(r"\d+")
_SEEK_GAP = 48  # seek instead of decoding through when the next wanted frame is further ahead


def frame_sort_key(stem: str) -> tuple[int, int, str]:
    """Numeric order by the last run of digits in a frame stem (``frame_000123`` and ``0000123`` alike)."""
    runs = _DIGITS.findall(stem)
    return (0, int(runs[-1]), stem) if runs else (1, 0, stem)


def list_frame_files(folder: str | os.PathLike) -> list[Path]:
    """Image files of a frame folder, sorted numerically by the digits of their stem."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DatasetFormatError(folder, "frame folder does not exist")
    files = [p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")]
    return sorted(files, key=lambda p: frame_sort_key(p.stem))


def frame_file(folder: str | os.PathLike, stem: str) -> Path:
    """The image file of frame ``stem`` in ``folder``: the first of ``IMAGE_SUFFIXES`` that exists
    (``<stem>.jpg`` when none does, so that the error names the usual file)."""
    folder = Path(folder)
    for suffix in IMAGE_SUFFIXES:
        path = folder / f"{stem}{suffix}"
        if path.is_file():
            return path
    return folder / f"{stem}{IMAGE_SUFFIXES[0]}"


def image_size(path: str | os.PathLike) -> tuple[int, int]:
    """(H, W) of an image file, read from its header.

    Raises:
        DatasetFormatError: the file is missing or not an image.
    """
    try:
        with Image.open(path) as image:
            return image.height, image.width
    except (OSError, SyntaxError) as exc:
        raise DatasetFormatError(path, f"unreadable image ({exc})") from exc


def linspace_indices(num_total: int, num_frames: int) -> list[int]:
    """GroundMoRe's sampling: ``np.linspace(0, N - 1, T).astype(int)``."""
    if num_total <= 0:
        raise ValueError("cannot sample frames from an empty video")
    return np.linspace(0, num_total - 1, num_frames).astype(int).tolist()


def fps_indices(num_total: int, source_fps: float, fps: float) -> list[int]:
    """Indices of the frames nearest to a ``fps`` grid starting at frame 0."""
    if fps <= 0 or source_fps <= 0:
        raise ValueError(f"fps must be positive (asked {fps}, source {source_fps})")
    step = source_fps / fps
    count = max(1, int(np.floor((num_total - 1) / step)) + 1)
    return sorted({min(num_total - 1, int(round(i * step))) for i in range(count)})


def read_image(path: Path) -> np.ndarray:
    """``[H, W, 3]`` uint8 RGB (read-only when the decoded-file cache is on, `mora.data.decoded_cache`)."""
    return read_cached(path, _decode_image)


def _decode_image(path: Path) -> np.ndarray:
    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"))
    except (OSError, SyntaxError) as exc:
        raise DatasetFormatError(path, f"unreadable image ({exc})") from exc


def read_frame_files(files: Sequence[Path]) -> np.ndarray:
    """``[T, H, W, 3]`` uint8 from image files that must share one size."""
    frames = [read_image(f) for f in files]
    if len({f.shape for f in frames}) > 1:
        raise DatasetFormatError(
            files[0].parent, f"frames differ in size: {sorted({f.shape for f in frames})}"
        )
    return np.stack(frames)


def _open(path: Path):
    import av

    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, OSError) as exc:
        raise DatasetFormatError(path, f"cannot open video ({exc})") from exc
    if not container.streams.video:
        container.close()
        raise DatasetFormatError(path, "file has no video stream")
    return container


def _stream_fps(stream) -> float:
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    if not rate:
        raise DatasetFormatError(None, "video stream has no frame rate")
    return float(rate)


def probe_video(path: str | os.PathLike) -> tuple[int, float, int, int]:
    """(number of frames, fps, height, width) of a video file; counts packets if the header has no count."""
    path = Path(path)
    container = _open(path)
    try:
        stream = container.streams.video[0]
        fps = _stream_fps(stream)
        count = stream.frames
        if not count:
            count = sum(1 for packet in container.demux(stream) if packet.size)
        return int(count), fps, int(stream.codec_context.height), int(stream.codec_context.width)
    finally:
        container.close()


def _frame_index(frame, start_pts: int, time_base: Fraction, fps: float) -> int:
    return int(round(float((frame.pts - start_pts) * time_base) * fps))


def _runs(wanted: list[int]) -> list[list[int]]:
    """Split sorted indices into runs decoded in one pass (gaps up to ``_SEEK_GAP``)."""
    runs: list[list[int]] = [[wanted[0]]]
    for i in wanted[1:]:
        if i - runs[-1][-1] > _SEEK_GAP:
            runs.append([])
        runs[-1].append(i)
    return runs


def decode_video_frames(path: str | os.PathLike, indices: Sequence[int]) -> np.ndarray:
    """``[T, H, W, 3]`` uint8 frames at ``indices`` (any order, repeats allowed) of a video file.

    Wanted frames are grouped into runs; each run seeks to the key frame before it and decodes
    forward, converting only the wanted frames to RGB.
    """
    path = Path(path)
    wanted = sorted({int(i) for i in indices})
    if not wanted:
        raise ValueError("no frame indices given")
    container = _open(path)
    found: dict[int, np.ndarray] = {}
    try:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        fps, time_base = _stream_fps(stream), stream.time_base
        start_pts = stream.start_time or 0
        for run in _runs(wanted):
            todo = set(run)
            first = 0 if run[0] <= _SEEK_GAP else run[0]
            container.seek(start_pts + int(first / fps / time_base), stream=stream, backward=True)
            for frame in container.decode(stream):
                if frame.pts is None:
                    continue
                index = _frame_index(frame, start_pts, time_base, fps)
                if index in todo:
                    found[index] = frame.to_ndarray(format="rgb24")
                    todo.discard(index)
                if index >= run[-1] or not todo:
                    break
    finally:
        container.close()
    missing = [i for i in wanted if i not in found]
    if missing:
        raise DatasetFormatError(
            path, f"could not decode frames {missing[:10]} (video shorter than expected?)"
        )
    return np.stack([found[int(i)] for i in indices])


def read_video(
    path: str | os.PathLike,
    *,
    num_frames: int | None = None,
    fps: float | None = None,
    indices: Sequence[int] | None = None,
    folder_fps: float | None = None,
) -> tuple[np.ndarray, list[int], float | None]:
    """Read a video file or a frame folder.

    Exactly one of ``num_frames`` (linspace over the whole video), ``fps`` (resample to that rate) or
    ``indices`` may be given; none reads every frame. ``folder_fps`` is the frame rate of a frame folder
    (unknown otherwise, so ``fps=`` on a folder needs it).

    Returns (frames [T, H, W, 3] uint8, frame_indices into the source video, source fps or None).
    """
    path = Path(path)
    if sum(x is not None for x in (num_frames, fps, indices)) > 1:
        raise ValueError("give at most one of num_frames, fps, indices")
    if num_frames is not None and num_frames <= 0:
        raise ValueError(f"num_frames must be positive, got {num_frames}")
    if not path.exists():
        raise DatasetFormatError(path, "video file or frame folder does not exist")
    if path.is_dir():
        files = list_frame_files(path)
        total, source_fps = len(files), folder_fps
    else:
        files = None
        total, source_fps, _, _ = probe_video(path)
    if total == 0:
        raise DatasetFormatError(path, "video has no frames")
    if indices is not None:
        chosen = [int(i) for i in indices]
        bad = [i for i in chosen if not 0 <= i < total]
        if bad:
            raise IndexError(f"{path}: frame indices {bad[:10]} outside [0, {total})")
    elif num_frames is not None:
        chosen = linspace_indices(total, num_frames)
    elif fps is not None:
        if source_fps is None:
            raise ValueError(
                f"{path}: frame folder has no known frame rate; pass folder_fps= to sample by fps"
            )
        chosen = fps_indices(total, source_fps, fps)
    else:
        chosen = list(range(total))
    frames = (
        read_frame_files([files[i] for i in chosen])
        if files is not None
        else decode_video_frames(path, chosen)
    )
    return frames, chosen, source_fps
