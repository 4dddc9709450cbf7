"""Small generated videos for the `mora predict` tests: moving shapes and deliberately broken files."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np


def shapes_frame(i: int, height: int, width: int) -> np.ndarray:
    """Frame ``i``: a red square moving right, a green one moving down, on a dark noisy background."""
    rng = np.random.default_rng(i)
    frame = rng.integers(0, 40, (height, width, 3), dtype=np.uint8)
    x = (3 * i) % max(1, width - 12)
    y = (2 * i) % max(1, height - 10)
    frame[8:20, x : x + 12] = (230, 40, 40)
    frame[y : y + 10, width // 2 : width // 2 + 10] = (40, 220, 60)
    return frame


def write_shapes_video(
    path: Path,
    num_frames: int,
    *,
    height: int = 48,
    width: int = 64,
    fps: float = 10,
    codec: str = "libx264",
    container_format: str | None = None,
    options: dict | None = None,
) -> Path:
    container = av.open(str(path), "w", format=container_format, options=options or {})
    stream = container.add_stream(codec, rate=Fraction(fps).limit_denominator(1001))
    stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
    if num_frames == 0:
        container.start_encoding()  # write the header of a video without frames
    for i in range(num_frames):
        frame = av.VideoFrame.from_ndarray(shapes_frame(i, height, width), format="rgb24")
        for packet in stream.encode(frame):
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)
    container.close()
    return path


def read_all_frames(path: Path) -> np.ndarray:
    with av.open(str(path)) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])


def broken_videos(folder: Path) -> dict[str, Path]:
    """One file per kind of bad video: unreadable, truncated, zero frames, unsupported codec."""
    folder.mkdir(parents=True, exist_ok=True)
    unreadable = folder / "unreadable.mp4"
    unreadable.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    full = write_shapes_video(folder / "full.mp4", 30, options={"movflags": "faststart"})
    truncated = folder / "truncated.mp4"
    data = full.read_bytes()
    truncated.write_bytes(data[: len(data) // 2])  # header and index intact, half the frames' data gone
    zero = write_shapes_video(folder / "zero.avi", 0, codec="mpeg4", container_format="avi")
    avi = write_shapes_video(folder / "good.avi", 5, codec="mpeg4", container_format="avi")
    unsupported = folder / "unsupported.avi"
    unsupported.write_bytes(avi.read_bytes().replace(b"FMP4", b"ZZZ9"))  # a FourCC no decoder knows
    return {
        "unreadable": unreadable,
        "truncated": truncated,
        "zero frames": zero,
        "unsupported codec": unsupported,
    }
