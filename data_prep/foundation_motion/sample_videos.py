"""Test and benchmark inputs: mp4s of the synthetic moving-shape scenes (mora.data.synthetic_*).

``write_scene_video`` renders scene (seed, index) and encodes it with PyAV (libx264, 6 fps); ``pan``
shifts the whole frame by that many pixels per frame (a camera pan, for the camera-motion gate).
The scene is returned too, so tests can compare facts with the scene's ground-truth motions.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from mora.data.synthetic_plan import SceneSettings, plan_scene
from mora.data.synthetic_scene import FPS, Scene, render


def scene_for(seed: int, index: int, size: int = 96, seconds: tuple[int, int] = (4, 6)) -> Scene:
    settings = SceneSettings(
        size=size,
        min_seconds=seconds[0],
        max_seconds=seconds[1],
        min_object_size=max(4, size // 8),
        max_object_size=max(4, size // 5),
    )
    return plan_scene(np.random.default_rng([seed, index]), settings)


def encode_mp4(frames: np.ndarray, path: str | os.PathLike, fps: int = FPS) -> Path:
    import av

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.height, stream.width = frames.shape[1], frames.shape[2]
        stream.pix_fmt = "yuv444p"
        stream.options = {"crf": "12", "preset": "veryfast"}
        for frame in frames:
            for packet in stream.encode(
                av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
            ):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def write_scene_video(
    path: str | os.PathLike, seed: int, index: int, *, size: int = 96, pan: int = 0
) -> Scene:
    scene = scene_for(seed, index, size)
    frames, _ = render(scene)
    if pan:
        frames = np.stack([np.roll(f, pan * t, axis=1) for t, f in enumerate(frames)])
    encode_mp4(frames, path)
    return scene


def write_corrupt_video(path: str | os.PathLike) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x00\x00\x00\x18ftypmp42" + os.urandom(2048))
    return path
