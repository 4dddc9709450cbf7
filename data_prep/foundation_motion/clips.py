"""Stage 1: clip selection and the camera-motion gate.

One clip per source video, FoundationMotion's rule: a video up to ``min_seconds`` long is kept whole;
a longer one gets a clip of length ~ U(min, min(max, duration)) around its middle, jittered by up to
min(0.2 duration, slack / 2), seeded by (seed, video name) so reruns select the same clip. The clip is
decoded with PyAV (``mora.data.video``), optionally resampled and downscaled.

Camera gate: dense Farneback optical flow (OpenCV) between consecutive downscaled frames; the median
flow vector of a frame pair is the global (camera) motion estimate, since the background covers most
pixels. Score = mean median-flow magnitude as a fraction of the frame diagonal per second. Clips above
``camera.threshold`` are dropped (``action: drop``) or kept with a ``camera_motion`` tag; the facts of
a tagged clip are computed relative to the background (the per-frame global displacement is
subtracted from the objects' motion).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from data_prep.foundation_motion.config import CameraConfig, ClipConfig
from mora.data.video import decode_video_frames, probe_video


class ClipSkipped(Exception):
    """The video yields no usable clip (too long, camera motion); the reason is the message."""


@dataclass
class Clip:
    """A decoded clip. ``frames`` [T, H, W, 3] uint8; ``source_indices`` [T] frame indices in the source."""

    clip_id: str
    source: str
    frames: np.ndarray
    fps: float
    source_fps: float
    source_indices: list[int]
    start_seconds: float
    camera_motion: float = 0.0
    tags: list[str] = field(default_factory=list)
    camera_steps: np.ndarray | None = None  # [T, 2] global displacement per frame (pixels), when gated

    @property
    def num_frames(self) -> int:
        return int(self.frames.shape[0])

    @property
    def size(self) -> tuple[int, int]:
        return int(self.frames.shape[1]), int(self.frames.shape[2])

    def info(self) -> dict:
        return {
            "clip_id": self.clip_id,
            "source": self.source,
            "num_frames": self.num_frames,
            "fps": self.fps,
            "source_fps": self.source_fps,
            "start_seconds": round(self.start_seconds, 4),
            "source_indices": [self.source_indices[0], self.source_indices[-1]],
            "height": self.size[0],
            "width": self.size[1],
            "camera_motion": round(self.camera_motion, 5),
            "tags": list(self.tags),
        }


def clip_window(name: str, duration: float, config: ClipConfig) -> tuple[float, float]:
    """(start, length) in seconds of the clip FoundationMotion would cut from a ``duration`` s video."""
    if duration <= config.min_seconds:
        return 0.0, duration
    rng = np.random.default_rng([config.seed, zlib.crc32(name.encode("utf-8"))])
    length = float(rng.uniform(config.min_seconds, min(config.max_seconds, duration)))
    slack = duration - length
    jitter = min(0.2 * duration, slack / 2)
    start = duration / 2 - length / 2 + float(rng.uniform(-jitter, jitter))
    return float(np.clip(start, 0.0, slack)), length


def clip_indices(
    num_frames: int, source_fps: float, start: float, length: float, fps: float | None
) -> list[int]:
    """Source frame indices of the window, resampled to ``fps`` when given."""
    first = min(num_frames - 1, int(round(start * source_fps)))
    last = min(num_frames - 1, max(first, int(round((start + length) * source_fps)) - 1))
    if fps is None or fps <= 0:
        return list(range(first, last + 1))
    count = max(1, int(np.floor((last - first) / source_fps * fps)) + 1)
    return sorted({min(last, first + int(round(i * source_fps / fps))) for i in range(count)})


def _downscale(frames: np.ndarray, max_side: int | None) -> np.ndarray:
    T, H, W, _ = frames.shape
    if max_side is None or max(H, W) <= max_side:
        return frames
    scale = max_side / max(H, W)
    size = (max(1, round(W * scale)), max(1, round(H * scale)))
    return np.stack([np.asarray(Image.fromarray(f).resize(size, Image.BILINEAR)) for f in frames])


def global_motion(frames: np.ndarray, max_side: int = 160) -> np.ndarray:
    """``[T, 2]`` camera (global) displacement (dx, dy) in pixels of ``frames`` from frame t-1 to t
    (row 0 is zero): the median Farneback flow of each consecutive pair of downscaled frames."""
    out = np.zeros((frames.shape[0], 2), dtype=np.float64)
    if frames.shape[0] < 2:
        return out
    small = _downscale(frames, max_side)
    scale = frames.shape[2] / small.shape[2]
    grey = [cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in small]
    for t, (a, b) in enumerate(zip(grey[:-1], grey[1:]), start=1):
        flow = cv2.calcOpticalFlowFarneback(a, b, None, 0.5, 3, 15, 3, 5, 1.2, 0)  # [h, w, 2]
        out[t] = np.median(flow.reshape(-1, 2), axis=0) * scale
    return out


def camera_motion_score(
    frames: np.ndarray, fps: float, max_side: int = 160, motion: np.ndarray | None = None
) -> float:
    """Mean global motion of a clip [T, H, W, 3]: fraction of the frame diagonal per second."""
    if frames.shape[0] < 2:
        return 0.0
    motion = global_motion(frames, max_side) if motion is None else motion
    diag = float(np.hypot(*frames.shape[1:3]))
    return float(np.hypot(motion[1:, 0], motion[1:, 1]).mean()) / diag * fps


def load_clip(path: str | Path, config: ClipConfig, camera: CameraConfig, clip_id: str | None = None) -> Clip:
    """Select, decode and gate the clip of one source video.

    Raises:
        DatasetFormatError: the video cannot be opened or decoded.
        ClipSkipped: the clip is too long or dominated by camera motion (``action: drop``).
    """
    path = Path(path)
    num_frames, source_fps, _, _ = probe_video(path)
    if num_frames < 2:
        raise ClipSkipped(f"video has {num_frames} frames")
    start, length = clip_window(path.name, num_frames / source_fps, config)
    indices = clip_indices(num_frames, source_fps, start, length, config.fps)
    if len(indices) > config.max_frames:
        raise ClipSkipped(f"clip has {len(indices)} frames > max_frames {config.max_frames}")
    frames = _downscale(decode_video_frames(path, indices), config.max_side)
    fps = float(config.fps) if config.fps else source_fps
    clip = Clip(
        clip_id=clip_id or path.stem,
        source=str(path),
        frames=frames,
        fps=fps,
        source_fps=source_fps,
        source_indices=indices,
        start_seconds=start,
    )
    if camera.enabled:
        clip.camera_steps = global_motion(frames, camera.max_side)
        clip.camera_motion = camera_motion_score(frames, fps, motion=clip.camera_steps)
        if clip.camera_motion > camera.threshold:
            if camera.action == "drop":
                raise ClipSkipped(
                    f"camera motion {clip.camera_motion:.3f} > {camera.threshold} (diagonal per second)"
                )
            clip.tags.append("camera_motion")
    return clip
