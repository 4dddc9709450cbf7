"""Random scene scripts: which object moves when, where, and because of whom.

``plan_scene`` draws a script (motions on whole seconds, push / follow dependencies, sequential
chains, independent movers, still objects) and then places the objects so that every trajectory
stays in the frame, unrelated objects never touch, and a pushed object is touched by its pusher
exactly from the frame before it starts moving.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mora.data.synthetic_scene import (
    COLOURS,
    DIRECTIONS,
    FPS,
    SHAPES,
    Motion,
    Scene,
    SceneObject,
    layout_ok,
    make_background,
)


@dataclass(frozen=True)
class SceneSettings:
    size: int = 64  # frame side, pixels
    min_seconds: int = 4
    max_seconds: int = 6
    min_objects: int = 2
    max_objects: int = 4
    min_object_size: int = 8
    max_object_size: int = 16

    def __post_init__(self) -> None:
        if not 2 <= self.min_objects <= self.max_objects <= min(len(SHAPES), len(COLOURS)):
            raise ValueError(
                f"objects per video must satisfy 2 <= min <= max <= 5, got {self.min_objects}..{self.max_objects}"
            )
        if not 3 <= self.min_seconds <= self.max_seconds:
            raise ValueError(f"clip length must be >= 3 s, got {self.min_seconds}..{self.max_seconds}")
        if not 4 <= self.min_object_size <= self.max_object_size <= self.size // 3:
            raise ValueError(
                f"object sizes {self.min_object_size}..{self.max_object_size} do not fit {self.size}px frames"
            )


def _speed(seconds: int) -> int:
    return 2 if seconds <= 2 else 1


def _direction(rng: np.random.Generator, used: set[str]) -> str:
    free = [d for d in DIRECTIONS if d not in used]
    pool = free if free and rng.random() < 0.85 else list(DIRECTIONS)
    return str(pool[rng.integers(len(pool))])


def _length(rng: np.random.Generator, room: int, lo: int = 2, hi: int = 4) -> int:
    """A motion length in seconds: ``lo..hi`` where the clip leaves room, else as much as fits."""
    return int(rng.integers(min(lo, room), min(hi, room) + 1))


def _dependency(
    rng: np.random.Generator, D: int, cause: int, kind: str, direction: str
) -> tuple[Motion, Motion]:
    if kind == "push":  # pusher [a0, e), pushed [c, e): approach 1-2 s, push 1-3 s
        a0 = int(rng.integers(0, max(0, D - 4) + 1))
        c = a0 + int(rng.integers(1, 3)) if D - a0 >= 4 else a0 + 1
        e = c + _length(rng, D - c, 1, 3)
        speed = _speed(e - a0)
        return Motion(a0, e, direction, speed), Motion(c, e, direction, speed, cause=cause, kind="push")
    l0 = int(rng.integers(0, max(0, D - 4) + 1))  # leader [l0, l1), follower one second later
    l1 = l0 + _length(rng, D - 1 - l0, 2, 3)
    speed = _speed(l1 - l0)
    return Motion(l0, l1, direction, speed), Motion(
        l0 + 1, l1 + 1, direction, speed, cause=cause, kind="follow"
    )


def plan_motions(rng: np.random.Generator, D: int, n: int) -> list[Motion | None]:
    """One motion (or None = still) per object for a clip of ``D`` seconds."""
    motions: list[Motion | None] = [None] * n
    order = [int(i) for i in rng.permutation(n)]
    num_deps = 2 if n >= 4 and rng.random() < 0.3 else 1
    if n == 2 and rng.random() < 0.3:
        num_deps = 0
    used: set[str] = set()
    for _ in range(num_deps):
        a, b = order.pop(), order.pop()
        kind = "push" if rng.random() < 0.65 else "follow"
        direction = _direction(rng, used)
        used.add(direction)
        motions[a], motions[b] = _dependency(rng, D, a, kind, direction)
    for j in order:
        movers = [m for m in motions if m is not None]
        r = rng.random()
        if movers and r < 0.7:
            m = movers[rng.integers(len(movers))]
            if m.end < D and (m.start == 0 or rng.random() < 0.6):
                s = m.end
                e = s + _length(rng, D - s)
            elif m.start > 0:
                e = m.start
                s = e - _length(rng, e)
            else:
                continue
            kind = "seq"
        elif not movers or r < 0.9:
            length = _length(rng, D)
            s = int(rng.integers(0, D - length + 1))
            e = s + length
            kind = "solo"
        else:
            continue
        direction = _direction(rng, used)
        used.add(direction)
        motions[j] = Motion(s, e, direction, _speed(e - s), kind=kind)
    return motions


def _travel(m: Motion | None) -> int:
    return 0 if m is None else m.speed * (m.end - m.start) * FPS


def _free_position(rng: np.random.Generator, obj: SceneObject, S: int) -> bool:
    m, d = obj.motion, _travel(obj.motion)
    dx, dy = DIRECTIONS[m.direction] if m else (0, 0)
    lo_x, hi_x = 1 + max(0, -dx * d), S - 1 - obj.size - max(0, dx * d)
    lo_y, hi_y = 1 + max(0, -dy * d), S - 1 - obj.size - max(0, dy * d)
    if lo_x > hi_x or lo_y > hi_y:
        return False
    obj.x, obj.y = int(rng.integers(lo_x, hi_x + 1)), int(rng.integers(lo_y, hi_y + 1))
    return True


def _place_dependent(rng: np.random.Generator, obj: SceneObject, cause: SceneObject) -> None:
    """Put a pushed object in its pusher's way, or a follower behind its leader."""
    m = obj.motion
    dx, dy = DIRECTIONS[m.direction]
    if m.kind == "push":  # touching at frame start * FPS - 1, after the pusher moved (c - a0) seconds
        ahead = m.speed * (m.start - cause.motion.start) * FPS
    else:
        ahead = -int(rng.integers(3, 9))  # gap between the follower's front and the leader's back
    jitter_range = max(0, min(obj.size, cause.size) // 4)
    jitter = int(rng.integers(-jitter_range, jitter_range + 1))
    across = (cause.size - obj.size) // 2 + jitter
    if dx:
        obj.y = cause.y + across
        if m.kind == "push":
            obj.x = cause.x + ahead + cause.size if dx > 0 else cause.x - ahead - obj.size
        else:
            obj.x = cause.x + ahead - obj.size if dx > 0 else cause.x + cause.size - ahead
    else:
        obj.x = cause.x + across
        if m.kind == "push":
            obj.y = cause.y + ahead + cause.size if dy > 0 else cause.y - ahead - obj.size
        else:
            obj.y = cause.y + ahead - obj.size if dy > 0 else cause.y + cause.size - ahead


def plan_scene(
    rng: np.random.Generator, settings: SceneSettings = SceneSettings(), max_tries: int = 500
) -> Scene:
    """Draw a scene whose layout satisfies ``layout_ok``."""
    S = settings.size
    for _ in range(max_tries):
        D = int(rng.integers(settings.min_seconds, settings.max_seconds + 1))
        n = int(rng.integers(settings.min_objects, settings.max_objects + 1))
        colours = [str(c) for c in rng.choice(list(COLOURS), n, replace=False)]
        shapes = [str(s) for s in rng.choice(SHAPES, n, replace=False)]
        sizes = rng.integers(settings.min_object_size, settings.max_object_size + 1, n)
        motions = plan_motions(rng, D, n)
        objects = [SceneObject(c, s, int(z), motion=m) for c, s, z, m in zip(colours, shapes, sizes, motions)]
        scene = Scene(size=S, seconds=D, objects=objects, background=np.zeros((S, S, 3), np.uint8))
        independent = [o for o in objects if o.motion is None or o.motion.cause is None]
        for _ in range(40):
            if not all(_free_position(rng, o, S) for o in independent):
                continue
            for o in objects:
                if o.motion is not None and o.motion.cause is not None:
                    _place_dependent(rng, o, objects[o.motion.cause])
            if layout_ok(scene):
                scene.background = make_background(rng, S)
                return scene
    raise RuntimeError(f"could not lay out a scene in {max_tries} tries; relax the scene settings")
