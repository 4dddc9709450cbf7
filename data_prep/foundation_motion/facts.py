"""Stage 4: trajectory facts per object, from the tracks alone.

Speeds are in units of the frame diagonal per second; positions are normalised to 0..1.

* visibility: runs of frames where the mask is non-empty;
* motion spans: frames whose (smoothed) centroid speed crosses ``speed_high`` start a span, which
  ends when the speed falls below ``speed_low`` (hysteresis); spans shorter than ``min_span_frames``
  are dropped, spans separated by fewer than ``merge_gap_frames`` still frames merged. Frame t moves
  when the centroid changed between t-1 and t (the GroundMoRe/synthetic convention);
* per span: direction (left/right/up/down, or a diagonal), displacement, path length, mean and peak speed;
* repetitions: reversals of the motion along the dominant axis, both legs travelling at least
  ``min_repetition_fraction`` of the diagonal;
* contacts: runs of frames where two objects' boxes come within ``contact_px`` pixels (``masks_touch``
  when the masks do too); a contact during A's
  motion at which B starts moving (within 2 frames) records A pushing B.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import cv2
import numpy as np

from data_prep.foundation_motion.config import FactsConfig
from data_prep.foundation_motion.track import Track

REGIONS_X = ("left", "centre", "right")
REGIONS_Y = ("top", "middle", "bottom")


@dataclass
class MotionSpan:
    start: int  # inclusive frame indices
    end: int
    direction: str
    displacement: list[float]  # (dx, dy) normalised by the diagonal
    path_length: float  # diagonals
    mean_speed: float  # diagonals per second
    peak_speed: float


@dataclass
class ObjectFacts:
    obj_id: int
    name: str
    visible: list[list[int]]  # inclusive runs of visible frames
    spans: list[MotionSpan]
    repetitions: int
    path_length: float
    mean_speed: float  # over the motion spans
    start_position: list[float] | None  # (x, y) in 0..1 at first visibility
    end_position: list[float] | None
    start_region: str | None
    end_region: str | None

    @property
    def moving(self) -> bool:
        return bool(self.spans)

    @property
    def main_span(self) -> MotionSpan | None:
        """The longest motion span."""
        return max(self.spans, key=lambda s: s.end - s.start) if self.spans else None


@dataclass
class Contact:
    a: int
    b: int
    start: int
    end: int
    masks_touch: bool = False


@dataclass
class Push:
    pusher: int
    pushed: int
    frame: int  # the frame the pushed object starts moving


@dataclass
class ClipFacts:
    clip_id: str
    num_frames: int
    fps: float
    height: int
    width: int
    objects: list[ObjectFacts]
    contacts: list[Contact] = field(default_factory=list)
    pushes: list[Push] = field(default_factory=list)

    def obj(self, obj_id: int) -> ObjectFacts:
        for o in self.objects:
            if o.obj_id == obj_id:
                return o
        raise KeyError(f"no object {obj_id} in clip {self.clip_id}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> ClipFacts:
        objects = [ObjectFacts(**{**o, "spans": [MotionSpan(**s) for s in o["spans"]]}) for o in d["objects"]]
        return cls(
            **{k: d[k] for k in ("clip_id", "num_frames", "fps", "height", "width")},
            objects=objects,
            contacts=[Contact(**c) for c in d.get("contacts", [])],
            pushes=[Push(**p) for p in d.get("pushes", [])],
        )


def runs(flags) -> list[list[int]]:
    """Inclusive [start, end] runs of True."""
    out, start = [], None
    for t, f in enumerate(list(flags) + [False]):
        if f and start is None:
            start = t
        elif not f and start is not None:
            out.append([start, t - 1])
            start = None
    return out


def direction_name(dx: float, dy: float) -> str:
    if abs(dx) >= 2 * abs(dy):
        return "right" if dx > 0 else "left"
    if abs(dy) >= 2 * abs(dx):
        return "down" if dy > 0 else "up"
    return f"{'down' if dy > 0 else 'up'}-{'right' if dx > 0 else 'left'}"


def region(pos: list[float] | None) -> str | None:
    if pos is None:
        return None
    col = REGIONS_X[min(2, int(pos[0] * 3))]
    row = REGIONS_Y[min(2, int(pos[1] * 3))]
    return "centre" if (row, col) == ("middle", "centre") else f"{row} {col}"


def _smoothed_centroids(track: Track, window: int, camera_steps: np.ndarray | None = None) -> np.ndarray:
    """[T, 2] centroids (NaN where not visible), in background coordinates when ``camera_steps`` is
    given (the camera's cumulative displacement subtracted), moving average over visible neighbours."""
    c = np.array([p if p is not None else [np.nan, np.nan] for p in track.centroids], dtype=np.float64)
    if camera_steps is not None:
        c -= np.cumsum(np.asarray(camera_steps, dtype=np.float64), axis=0)
    half = max(0, window // 2)
    out = np.full_like(c, np.nan)
    for t in range(len(c)):
        if np.isnan(c[t, 0]):
            continue
        near = c[max(0, t - half) : t + half + 1]
        out[t] = np.nanmean(near, axis=0)
    return out


def speeds(
    track: Track, fps: float, diag: float, window: int, camera_steps: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame speed [T] (diagonals/s; 0 where unknown) and steps [T, 2] (pixels moved since t-1,
    relative to the background when ``camera_steps`` [T, 2], the camera's displacement, is given)."""
    c = _smoothed_centroids(track, window, camera_steps)
    steps = np.zeros_like(c)
    steps[1:] = c[1:] - c[:-1]
    steps[np.isnan(steps)] = 0.0
    return np.hypot(steps[:, 0], steps[:, 1]) / diag * fps, steps


def hysteresis_spans(speed: np.ndarray, config: FactsConfig) -> list[list[int]]:
    moving, flags = False, []
    for v in speed:
        moving = v > config.speed_high if not moving else v >= config.speed_low
        flags.append(moving)
    spans = runs(flags)
    merged: list[list[int]] = []
    for s in spans:
        if merged and s[0] - merged[-1][1] - 1 < config.merge_gap_frames:
            merged[-1][1] = s[1]
        else:
            merged.append(list(s))
    return [s for s in merged if s[1] - s[0] + 1 >= config.min_span_frames]


def count_repetitions(steps: np.ndarray, spans: list[list[int]], diag: float, min_fraction: float) -> int:
    """Reversals along the dominant axis inside the motion spans (legs of at least min_fraction)."""
    if not spans:
        return 0
    idx = np.concatenate([np.arange(a, b + 1) for a, b in spans])
    moves = steps[idx]
    axis = int(np.argmax(np.abs(moves).sum(0)))
    legs: list[float] = []
    for v in moves[:, axis]:
        if v == 0:
            continue
        if legs and np.sign(legs[-1]) == np.sign(v):
            legs[-1] += v
        else:
            legs.append(float(v))
    legs = [leg for leg in legs if abs(leg) >= min_fraction * diag]
    return sum(1 for a, b in zip(legs[:-1], legs[1:]) if np.sign(a) != np.sign(b))


def object_facts(
    track: Track,
    fps: float,
    size: tuple[int, int],
    config: FactsConfig,
    camera_steps: np.ndarray | None = None,
) -> ObjectFacts:
    H, W = size
    diag = float(np.hypot(H, W))
    speed, steps = speeds(track, fps, diag, config.smooth_frames, camera_steps)
    spans = []
    for a, b in hysteresis_spans(speed, config):
        disp = steps[a : b + 1].sum(0)
        seg = speed[a : b + 1]
        spans.append(
            MotionSpan(
                start=a,
                end=b,
                direction=direction_name(*disp),
                displacement=[round(float(v) / diag, 4) for v in disp],
                path_length=round(float(np.hypot(steps[a : b + 1, 0], steps[a : b + 1, 1]).sum()) / diag, 4),
                mean_speed=round(float(seg.mean()), 4),
                peak_speed=round(float(seg.max()), 4),
            )
        )
    visible = runs([a > 0 for a in track.areas])
    cents = [c for c in track.centroids if c is not None]
    start = [round(cents[0][0] / W, 4), round(cents[0][1] / H, 4)] if cents else None
    end = [round(cents[-1][0] / W, 4), round(cents[-1][1] / H, 4)] if cents else None
    return ObjectFacts(
        obj_id=track.obj_id,
        name=track.name,
        visible=visible,
        spans=spans,
        repetitions=count_repetitions(
            steps, [[s.start, s.end] for s in spans], diag, config.min_repetition_fraction
        ),
        path_length=round(sum(s.path_length for s in spans), 4),
        mean_speed=round(float(np.mean([s.mean_speed for s in spans])), 4) if spans else 0.0,
        start_position=start,
        end_position=end,
        start_region=region(start),
        end_region=region(end),
    )


def contacts(tracks: list[Track], config: FactsConfig) -> list[Contact]:
    """Runs of frames where two objects' boxes come within ``contact_px``; ``masks_touch`` when their
    masks do too on some frame of the run (boxes touch first for non-convex shapes and pushes by a corner)."""
    out = []
    kernel = np.ones((2 * config.contact_px + 1, 2 * config.contact_px + 1), np.uint8)
    for i, a in enumerate(tracks):
        for b in tracks[i + 1 :]:
            near = [
                bool(a.areas[t] and b.areas[t] and _boxes_near(a.boxes[t], b.boxes[t], config.contact_px))
                for t in range(len(a.masks))
            ]
            for s, e in runs(near):
                touch = any(
                    bool(((cv2.dilate(a.mask(t).astype(np.uint8), kernel) > 0) & b.mask(t)).any())
                    for t in range(s, e + 1)
                )
                out.append(Contact(a.obj_id, b.obj_id, s, e, touch))
    return out


def _boxes_near(a, b, margin: float) -> bool:
    return a[0] - margin <= b[2] and b[0] - margin <= a[2] and a[1] - margin <= b[3] and b[1] - margin <= a[3]


def pushes(objects: list[ObjectFacts], touch: list[Contact]) -> list[Push]:
    """A pushes B: they touch while A moves and B starts its first motion within 2 frames of the contact."""
    by_id = {o.obj_id: o for o in objects}
    out = []
    for c in touch:
        for p, q in ((c.a, c.b), (c.b, c.a)):
            mover, other = by_id[p], by_id[q]
            if not other.spans or not mover.spans:
                continue
            first = other.spans[0].start
            if not c.start - 2 <= first <= c.end + 2:
                continue
            if any(s.start <= first <= s.end + 1 and s.start < first for s in mover.spans):
                out.append(Push(pusher=p, pushed=q, frame=first))
    return out


def compute_facts(
    clip_id: str,
    tracks: list[Track],
    fps: float,
    size: tuple[int, int],
    config: FactsConfig,
    camera_steps: np.ndarray | None = None,
) -> ClipFacts:
    """Stage 4 on one clip; ``camera_steps`` [T, 2]: the camera's displacement per frame, subtracted from
    the objects' (a clip tagged for camera motion). Positions and regions stay in image coordinates."""
    objects = [object_facts(t, fps, size, config, camera_steps) for t in tracks]
    touch = contacts(tracks, config)
    num_frames = len(tracks[0].masks) if tracks else 0
    return ClipFacts(clip_id, num_frames, fps, size[0], size[1], objects, touch, pushes(objects, touch))
