"""Frames of a video file (PyAV) or a frame folder, read a few at a time: random access for the key frames
and forward streams of chunks for the mask engine and the overlay, so memory stays bounded.

Every problem with the input is a `VideoInputError` with a one-line message naming the file.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mora.data.errors import DatasetFormatError
from mora.data.video import (
    _SEEK_GAP,
    _frame_index,
    _stream_fps,
    decode_video_frames,
    fps_indices,
    linspace_indices,
    list_frame_files,
    read_frame_files,
)


class VideoInputError(ValueError):
    """The video cannot be used: missing, unreadable, truncated, without frames or in an unsupported codec."""


@dataclass(frozen=True)
class VideoInfo:
    """What a video holds.

    Attributes:
        path: the file or frame folder.
        num_frames: N frames.
        fps: frames per second (None for a frame folder without a given rate).
        height, width: frame size in pixels.
        is_folder: a folder of image files.
    """

    path: Path
    num_frames: int
    fps: float | None
    height: int
    width: int
    is_folder: bool


def _av():
    import av

    return av


def _probe_file(path: Path) -> VideoInfo:
    av = _av()
    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, OSError, UnicodeDecodeError) as err:
        raise VideoInputError(f"{path}: cannot open the video ({_reason(err)})") from None
    try:
        if not container.streams.video:
            raise VideoInputError(f"{path}: the file has no video stream")
        stream = container.streams.video[0]
        if stream.codec_context is None:
            tag = getattr(stream, "codec_tag", "") or "unknown"
            raise VideoInputError(f"{path}: unsupported video codec ({tag}); re-encode it, e.g. to H.264 mp4")
        height, width = int(stream.codec_context.height), int(stream.codec_context.width)
        try:
            fps = _stream_fps(stream)
        except DatasetFormatError:
            raise VideoInputError(f"{path}: the video stream has no frame rate") from None
        count = int(stream.frames or 0)
        if not count:
            count = sum(1 for packet in container.demux(stream) if packet.size)
    except av.error.FFmpegError as err:
        raise VideoInputError(f"{path}: cannot read the video ({_reason(err)})") from None
    finally:
        container.close()
    if count == 0:
        raise VideoInputError(f"{path}: the video has no frames")
    if height <= 0 or width <= 0:
        raise VideoInputError(f"{path}: the video stream has no frame size")
    return VideoInfo(path, count, fps, height, width, False)


def _reason(err: Exception) -> str:
    text = getattr(err, "strerror", None) or str(err)
    return " ".join(str(text).split())


class VideoSource:
    """A video file or frame folder (``folder_fps``: the frame rate of a folder, unknown otherwise)."""

    def __init__(self, path: str | os.PathLike, folder_fps: float | None = None) -> None:
        path = Path(path)
        if not path.exists():
            raise VideoInputError(f"{path}: no such video file or frame folder")
        self._files: list[Path] | None = None
        if path.is_dir():
            try:
                files = list_frame_files(path)
            except DatasetFormatError as err:
                raise VideoInputError(str(err)) from None
            if not files:
                raise VideoInputError(f"{path}: the frame folder holds no image files")
            first = self._read_files(files[:1])[0]
            self._files = files
            self.info = VideoInfo(path, len(files), folder_fps, first.shape[0], first.shape[1], True)
        else:
            self.info = _probe_file(path)

    @property
    def frame_names(self) -> list[str]:
        """Name of every frame: the image stems of a folder, ``00000``, ``00001``, ... for a file."""
        if self._files is not None:
            return [f.stem for f in self._files]
        return [f"{i:05d}" for i in range(self.info.num_frames)]

    def read(self, indices: Sequence[int]) -> np.ndarray:
        """``[n, H, W, 3]`` uint8 frames at ``indices`` (random access: a few frames, e.g. key frames)."""
        if self._files is not None:
            return self._read_files([self._files[i] for i in indices])
        try:
            frames = decode_video_frames(self.info.path, indices)
        except DatasetFormatError:
            raise self._truncated(max(indices)) from None
        except _av().error.FFmpegError as err:
            raise VideoInputError(
                f"{self.info.path}: cannot decode the video (truncated or corrupt file? {_reason(err)})"
            ) from None
        return self._check_size(frames)

    def stream(self, indices: Sequence[int]) -> Iterator[tuple[int, np.ndarray]]:
        """``(index, [H, W, 3] uint8)`` for the sorted ``indices``, decoded forward in one pass."""
        wanted = [int(i) for i in indices]
        if not wanted:
            return
        if self._files is not None:
            for i in wanted:
                yield i, self._read_files([self._files[i]])[0]
            return
        yield from self._stream_file(wanted)

    def chunks(self, indices: Sequence[int], size: int) -> Iterator[tuple[list[int], np.ndarray]]:
        """The sorted ``indices`` in chunks of up to ``size`` frames: ``(indices, [n, H, W, 3])``."""
        batch: list[tuple[int, np.ndarray]] = []
        for item in self.stream(indices):
            batch.append(item)
            if len(batch) == size:
                yield [i for i, _ in batch], np.stack([f for _, f in batch])
                batch = []
        if batch:
            yield [i for i, _ in batch], np.stack([f for _, f in batch])

    def _stream_file(self, wanted: list[int]) -> Iterator[tuple[int, np.ndarray]]:
        av = _av()
        path = self.info.path
        container = av.open(str(path))
        try:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            fps, time_base = _stream_fps(stream), stream.time_base
            start_pts = stream.start_time or 0
            if wanted[0] > _SEEK_GAP:
                container.seek(start_pts + int(wanted[0] / fps / time_base), stream=stream, backward=True)
            pos = 0
            try:
                for frame in container.decode(stream):
                    if frame.pts is None:
                        continue
                    index = _frame_index(frame, start_pts, time_base, fps)
                    if index < wanted[pos]:
                        continue
                    rgb = None
                    while pos < len(wanted) and wanted[pos] <= index:  # a skipped index gets the next frame
                        rgb = frame.to_ndarray(format="rgb24") if rgb is None else rgb
                        yield wanted[pos], self._check_size(rgb[None])[0]
                        pos += 1
                    if pos == len(wanted):
                        return
            except av.error.FFmpegError as err:
                raise VideoInputError(
                    f"{path}: decoding failed near frame {wanted[pos]} of {self.info.num_frames} "
                    f"(truncated or corrupt file? {_reason(err)})"
                ) from None
            raise self._truncated(wanted[pos])
        finally:
            container.close()

    def _truncated(self, index: int) -> VideoInputError:
        return VideoInputError(
            f"{self.info.path}: frame {index} cannot be decoded although the file announces "
            f"{self.info.num_frames} frames (truncated or corrupt file?)"
        )

    def _read_files(self, files: Sequence[Path]) -> np.ndarray:
        try:
            return self._check_size(read_frame_files(files))
        except DatasetFormatError as err:
            raise VideoInputError(" ".join(str(err).split())) from None

    def _check_size(self, frames: np.ndarray) -> np.ndarray:
        info = getattr(self, "info", None)
        if info is not None and frames.shape[1:3] != (info.height, info.width):
            raise VideoInputError(
                f"{info.path}: frames change size ({frames.shape[1]}x{frames.shape[2]} after "
                f"{info.height}x{info.width})"
            )
        return frames


def select_frames(
    info: VideoInfo,
    *,
    start: float | None = None,
    end: float | None = None,
    fps: float | None = None,
    max_frames: int | None = None,
) -> list[int]:
    """Indices of the frames to segment: those in ``[start, end)`` seconds, resampled to ``fps`` (never
    above the video's rate), then at most ``max_frames`` of them spread evenly.

    Raises:
        ValueError: a bad option, or a window without frames (the message names the option).
    """
    first, stop = 0, info.num_frames
    if start is not None or end is not None or fps is not None:
        if info.fps is None:
            raise ValueError(
                "--start/--end/--fps need the video's frame rate; give --folder-fps for a frame folder"
            )
    if start is not None:
        if start < 0:
            raise ValueError(f"--start must be >= 0 seconds, got {start}")
        first = math.ceil(start * info.fps - 1e-6)
    if end is not None:
        if start is not None and end <= start:
            raise ValueError(f"--end ({end}) must be after --start ({start})")
        stop = min(stop, math.ceil(end * info.fps - 1e-6))
    if first >= stop:
        duration = info.num_frames / info.fps if info.fps else info.num_frames
        raise ValueError(
            f"--start/--end select no frame of the video ({duration:.2f} s, {info.num_frames} frames)"
        )
    indices = list(range(first, stop))
    if fps is not None:
        if fps <= 0:
            raise ValueError(f"--fps must be positive, got {fps}")
        if fps < info.fps:
            indices = [first + i for i in fps_indices(len(indices), info.fps, fps)]
    if max_frames is not None:
        if max_frames < 1:
            raise ValueError(f"--max-frames must be >= 1, got {max_frames}")
        if len(indices) > max_frames:
            indices = [indices[i] for i in linspace_indices(len(indices), max_frames)]
    return indices
