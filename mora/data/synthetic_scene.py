"""Procedural motion scenes for the synthetic motion-reasoning dataset.

A scene is a few flat-coloured shapes on a static textured background. Each object moves at most once,
along one of four directions at a constant integer speed, starting and stopping on whole seconds
(6 frames a second), so the frames where an object moves are exactly the GroundMoRe span
``[start * 6, end * 6 - 1]``. Motions may depend on each other: a *push* (the pusher reaches the
other object at a whole second and both move on together) or a *follow* (the follower starts one
second after the leader, behind it, and stops one second after it). Everything is drawn from one
``numpy.random.Generator``, so a seed fixes the scene.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from mora.constants import GROUNDMORE_FPS

FPS = GROUNDMORE_FPS
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (225, 35, 35),
    "green": (40, 200, 60),
    "blue": (40, 90, 240),
    "yellow": (245, 225, 30),
    "purple": (170, 50, 215),
    "orange": (255, 135, 15),
    "cyan": (30, 215, 225),
}
SHAPES = ("square", "circle", "triangle", "diamond", "cross")
DIRECTIONS: dict[str, tuple[int, int]] = {"left": (-1, 0), "right": (1, 0), "up": (0, -1), "down": (0, 1)}


@dataclass
class Motion:
    """One motion of one object: it moves on frames ``[start * FPS, end * FPS - 1]``."""

    start: int  # seconds from the clip start
    end: int  # seconds, exclusive
    direction: str
    speed: int  # pixels per frame
    cause: int | None = None  # index of the object whose motion triggers this one
    kind: str = "solo"  # solo | push | follow | seq

    @property
    def frames(self) -> tuple[int, int]:
        """Inclusive frame span."""
        return self.start * FPS, self.end * FPS - 1


@dataclass
class SceneObject:
    colour: str
    shape: str
    size: int
    x: int = 0  # top-left column at frame 0
    y: int = 0  # top-left row at frame 0
    motion: Motion | None = None

    @property
    def name(self) -> str:
        return f"{self.colour} {self.shape}"


@dataclass
class Scene:
    size: int  # frame side in pixels
    seconds: int
    objects: list[SceneObject]
    background: np.ndarray = field(repr=False)  # [H, W, 3] uint8

    @property
    def num_frames(self) -> int:
        return self.seconds * FPS

    def offsets(self, index: int) -> np.ndarray:
        """``[T, 2]`` int (dx, dy) of object ``index`` at every frame."""
        obj = self.objects[index]
        out = np.zeros((self.num_frames, 2), dtype=np.int64)
        if obj.motion is not None:
            m = obj.motion
            steps = np.clip(np.arange(self.num_frames) - m.start * FPS + 1, 0, (m.end - m.start) * FPS)
            out[:] = steps[:, None] * np.asarray(DIRECTIONS[m.direction]) * m.speed
        return out

    def boxes(self) -> np.ndarray:
        """``[O, T, 4]`` int boxes (x0, y0, x1, y1), exclusive ends."""
        out = np.zeros((len(self.objects), self.num_frames, 4), dtype=np.int64)
        for i, obj in enumerate(self.objects):
            off = self.offsets(i)
            out[i, :, 0], out[i, :, 1] = obj.x + off[:, 0], obj.y + off[:, 1]
            out[i, :, 2], out[i, :, 3] = out[i, :, 0] + obj.size, out[i, :, 1] + obj.size
        return out


def shape_template(shape: str, size: int) -> np.ndarray:
    """``[size, size]`` bool footprint of a shape."""
    rows, cols = np.mgrid[0:size, 0:size].astype(np.float64)
    c = (size - 1) / 2
    if shape == "square":
        return np.ones((size, size), dtype=bool)
    if shape == "circle":
        return (rows - c) ** 2 + (cols - c) ** 2 <= (size / 2) ** 2
    if shape == "triangle":  # apex up, base on the bottom row
        half = (rows + 1) / size * (size / 2)
        return np.abs(cols - c) <= half
    if shape == "diamond":
        return np.abs(rows - c) + np.abs(cols - c) <= size / 2
    if shape == "cross":
        arm = max(1, size // 3)
        lo = (size - arm) // 2
        band = np.zeros(size, dtype=bool)
        band[lo : lo + arm] = True
        return band[:, None] | band[None, :]
    raise ValueError(f"unknown shape {shape!r}")


def make_background(rng: np.random.Generator, size: int) -> np.ndarray:
    """Static, muted texture: smooth noise, stripes or a checkerboard in low-saturation greys."""
    kind = rng.integers(3)
    base = rng.uniform(70, 115, size=3)
    tint = rng.uniform(-8, 8, size=3)
    if kind == 0:
        coarse = rng.uniform(-1, 1, size=(size // 8 + 2, size // 8 + 2))
        grid = np.linspace(0, coarse.shape[0] - 1.001, size)
        i0 = grid.astype(int)
        t = grid - i0
        rowsmooth = coarse[i0] * (1 - t)[:, None] + coarse[i0 + 1] * t[:, None]
        field_ = rowsmooth[:, i0] * (1 - t)[None, :] + rowsmooth[:, i0 + 1] * t[None, :]
        pattern = 18 * field_
    elif kind == 1:
        period = rng.integers(6, 14)
        axis = np.arange(size)
        rows, cols = np.meshgrid(axis, axis, indexing="ij")
        coord = rows + cols if rng.integers(2) else rows
        pattern = 14 * ((coord // (period // 2)) % 2 * 2 - 1)
    else:
        cell = rng.integers(5, 12)
        rows, cols = np.mgrid[0:size, 0:size]
        pattern = 12 * (((rows // cell + cols // cell) % 2) * 2 - 1)
    grain = rng.normal(0, 3, size=(size, size))
    image = base[None, None, :] + tint[None, None, :] + (pattern + grain)[:, :, None]
    return np.clip(image, 0, 255).astype(np.uint8)


def render(scene: Scene) -> tuple[np.ndarray, np.ndarray]:
    """Frames ``[T, H, W, 3]`` uint8 and labels ``[T, H, W]`` uint8 (0 background, i + 1 = object i)."""
    T, S = scene.num_frames, scene.size
    frames = np.repeat(scene.background[None], T, axis=0)
    labels = np.zeros((T, S, S), dtype=np.uint8)
    boxes = scene.boxes()
    for i, obj in enumerate(scene.objects):
        footprint = shape_template(obj.shape, obj.size)
        colour = np.asarray(COLOURS[obj.colour], dtype=np.uint8)
        for t in range(T):
            x0, y0, x1, y1 = boxes[i, t]
            frames[t, y0:y1, x0:x1][footprint] = colour
            labels[t, y0:y1, x0:x1][footprint] = i + 1
    return frames, labels


def layout_ok(scene: Scene, margin: int = 1, gap: int = 2) -> bool:
    """Objects stay inside the frame and never come closer than ``gap`` pixels, except that a pusher
    approaches its target and touches it (never overlapping) from the frame before the push on."""
    boxes = scene.boxes()
    S = scene.size
    if (boxes[..., :2] < margin).any() or (boxes[..., 2:] > S - margin).any():
        return False
    n = len(scene.objects)
    for i in range(n):
        for j in range(i + 1, n):
            a, b = boxes[i], boxes[j]
            sep_x = np.maximum(a[:, 0] - b[:, 2], b[:, 0] - a[:, 2])  # [T] gap along x (negative = overlap)
            sep_y = np.maximum(a[:, 1] - b[:, 3], b[:, 1] - a[:, 3])
            separation = np.maximum(sep_x, sep_y)
            mi, mj = scene.objects[i].motion, scene.objects[j].motion
            pushed = (mj and mj.kind == "push" and mj.cause == i) or (
                mi and mi.kind == "push" and mi.cause == j
            )
            if pushed:
                m = mj if (mj and mj.cause == i) else mi
                touch_from = m.start * FPS - 1
                if (separation[:touch_from] < 1).any() or (separation[touch_from:] != 0).any():
                    return False
            elif (separation < gap).any():
                return False
    return True
