"""Stage 3: per-object masks on every frame, kept as COCO RLE, with boxes derived from the masks and smoothed.

* ``sam2``: transformers' ``Sam2VideoModel`` (any SAM2/SAM2.1 Hub id or folder, e.g. the project's
  converted checkpoints). Objects are seeded with their detection box on the frame where they were
  first detected (frame 0, or a re-detection frame for objects that appear later) and propagated
  forward in a hand-built ``Sam2VideoInferenceSession`` (one per seed frame; no torchvision processor).
* ``colour``: the rule-based reference tracker: pixels within ``colour_tolerance`` of the object's
  colour, the connected component nearest the previous centroid. Exact on flat-coloured synthetic
  scenes; what the tests use to check the later stages on meaningful tracks.

Re-detection: a detection on a re-detection frame that overlaps no tracked object
(box IoU < ``detect.match_iou``, any name) starts a new object there (MotionSight matches by mask IoU instead).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from data_prep.foundation_motion.config import DetectConfig, TrackConfig
from data_prep.foundation_motion.detect import Detection, Detections, box_iou
from mora.data.masks import RLE, decode_rle, encode_rle
from mora.processing.image_ops import frames_to_tensor, mask_engine_frame_settings


@dataclass
class Seed:
    obj_id: int
    name: str
    frame: int
    box: tuple[float, float, float, float]
    colour: tuple[int, int, int] | None = None


@dataclass
class Track:
    """One object through the clip: an RLE per frame (empty where not visible), smoothed boxes, centroids."""

    obj_id: int
    name: str
    start_frame: int
    masks: list[RLE]
    boxes: list[list[float] | None]  # (x0, y0, x1, y1) pixels, smoothed; None where not visible
    centroids: list[list[float] | None]  # (x, y) pixels of the mask
    areas: list[int]

    def mask(self, frame: int) -> np.ndarray:
        return decode_rle(self.masks[frame])

    def to_dict(self) -> dict:
        return {
            "obj_id": self.obj_id,
            "name": self.name,
            "start_frame": self.start_frame,
            "masks": self.masks,
            "boxes": self.boxes,
            "centroids": self.centroids,
            "areas": self.areas,
        }

    @classmethod
    def from_dict(cls, d: dict) -> Track:
        return cls(
            **{k: d[k] for k in ("obj_id", "name", "start_frame", "masks", "boxes", "centroids", "areas")}
        )


def mask_box(mask: np.ndarray) -> list[float] | None:
    ys, xs = np.nonzero(mask)
    if not len(xs):
        return None
    return [float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)]


def smooth_boxes(boxes: list[list[float] | None], window: int) -> list[list[float] | None]:
    """Centred moving average over the visible neighbours of each visible frame."""
    half = max(0, window // 2)
    out: list[list[float] | None] = []
    for t, box in enumerate(boxes):
        if box is None:
            out.append(None)
            continue
        near = [b for b in boxes[max(0, t - half) : t + half + 1] if b is not None]
        out.append([round(float(v), 2) for v in np.mean(near, axis=0)])
    return out


def make_track(seed: Seed, masks: np.ndarray, config: TrackConfig) -> Track:
    """A ``Track`` from boolean masks [T, H, W]; masks under ``min_area_px`` count as not visible."""
    rles, boxes, centroids, areas = [], [], [], []
    for t, mask in enumerate(masks):
        area = int(mask.sum())
        if area < config.min_area_px or t < seed.frame:
            mask = np.zeros_like(mask)
            area = 0
        rles.append(encode_rle(mask))
        areas.append(area)
        boxes.append(mask_box(mask))
        if area:
            ys, xs = np.nonzero(mask)
            centroids.append([round(float(xs.mean()) + 0.5, 3), round(float(ys.mean()) + 0.5, 3)])
        else:
            centroids.append(None)
    return Track(
        seed.obj_id, seed.name, seed.frame, rles, smooth_boxes(boxes, config.smooth_window), centroids, areas
    )


class ColourTracker:
    """Rule-based tracker for flat-coloured objects (see the module docstring)."""

    def __init__(self, config: TrackConfig) -> None:
        self.config = config

    def track(self, frames: np.ndarray, seeds: list[Seed]) -> dict[int, np.ndarray]:
        out = {}
        for seed in seeds:
            colour = np.asarray(
                seed.colour if seed.colour is not None else _box_colour(frames[seed.frame], seed.box)
            )
            dist = np.linalg.norm(frames.astype(np.float32) - colour.astype(np.float32), axis=-1)  # [T, H, W]
            near = dist < self.config.colour_tolerance
            x0, y0, x1, y1 = seed.box
            centre = ((x0 + x1) / 2, (y0 + y1) / 2)
            masks = np.zeros(near.shape, dtype=bool)
            x0, y0, x1, y1 = seed.box
            max_area = 4 * max(
                1.0, (x1 - x0) * (y1 - y0)
            )  # a blob much larger than the seed is not the object
            for t in range(seed.frame, frames.shape[0]):
                count, labels, stats, cents = cv2.connectedComponentsWithStats(
                    near[t].astype(np.uint8), connectivity=8
                )
                best, best_d = None, np.inf
                for k in range(1, count):
                    if not self.config.min_area_px <= stats[k, cv2.CC_STAT_AREA] <= max_area:
                        continue
                    d = float(np.hypot(cents[k][0] - centre[0], cents[k][1] - centre[1]))
                    if d < best_d:
                        best, best_d = k, d
                if best is not None:
                    masks[t] = labels == best
                    centre = tuple(cents[best])
            out[seed.obj_id] = masks
        return out


def _box_colour(frame: np.ndarray, box) -> tuple[int, int, int]:
    x0, y0, x1, y1 = (int(round(v)) for v in box)
    patch = frame[y0 : max(y1, y0 + 1), x0 : max(x1, x0 + 1)].reshape(-1, 3)
    return tuple(int(v) for v in np.median(patch, axis=0))


class Sam2Tracker:
    """Box-prompted multi-object tracking with transformers' ``Sam2VideoModel`` (forward propagation)."""

    def __init__(self, model, device: str = "cpu", dtype: torch.dtype = torch.float32) -> None:
        self.model = model.eval().to(device=device, dtype=dtype)
        self.device, self.dtype = device, dtype
        self.settings = mask_engine_frame_settings(model.config)

    @classmethod
    def from_pretrained(cls, name_or_path: str, device: str = "cpu", dtype: str = "float32") -> Sam2Tracker:
        from transformers import Sam2VideoModel

        return cls(Sam2VideoModel.from_pretrained(name_or_path), device, getattr(torch, dtype))

    @torch.no_grad()
    def track(self, frames: np.ndarray, seeds: list[Seed]) -> dict[int, np.ndarray]:
        """Boolean masks [T, H, W] per seeded object id (empty before its seed frame)."""
        T, H, W, _ = frames.shape
        s = self.settings
        pixels, _ = frames_to_tensor(
            frames, s.image_size, "squash", s.image_mean, s.image_std
        )  # [T, 3, S, S]
        pixels = pixels.to(self.device, self.dtype)
        out: dict[int, np.ndarray] = {}
        for start in sorted({seed.frame for seed in seeds}):
            group = [seed for seed in seeds if seed.frame == start]
            logits = self._propagate(pixels, group, start, (H, W))  # obj_id -> [T', H, W]
            for seed in group:
                masks = np.zeros((T, H, W), dtype=bool)
                masks[start:] = logits[seed.obj_id] > 0
                out[seed.obj_id] = masks
        return out

    def _propagate(self, pixels: torch.Tensor, group: list[Seed], start: int, size: tuple[int, int]) -> dict:
        from transformers import Sam2VideoInferenceSession

        H, W = size
        S = self.settings.image_size
        session = Sam2VideoInferenceSession(
            video=pixels,
            video_height=H,
            video_width=W,
            inference_device=self.device,
            inference_state_device=self.device,
            video_storage_device=self.device,
            dtype=self.dtype,  # explicit: the string default fails on CPU
            max_vision_features_cache_size=1,
        )
        ids = [seed.obj_id for seed in group]
        for seed in group:
            x0, y0, x1, y1 = seed.box
            coords = torch.tensor(
                [[[[x0 * S / W, y0 * S / H], [x1 * S / W, y1 * S / H]]]], dtype=torch.float32
            )
            labels = torch.tensor([[[2, 3]]], dtype=torch.int32)  # SAM2's box corner labels
            session.add_point_inputs(
                session.obj_id_to_idx(seed.obj_id), start, {"point_coords": coords, "point_labels": labels}
            )
        session.obj_with_new_inputs = ids
        self.model(session, frame_idx=start)
        frames: dict[int, torch.Tensor] = {}
        for output in self.model.propagate_in_video_iterator(session, start_frame_idx=start):
            frames[output.frame_idx] = output.pred_masks  # [O, 1, h, w] in session object order
        order = [session.obj_idx_to_id(i) for i in range(session.get_obj_num())]
        result = {}
        for k, obj_id in enumerate(order):
            low = torch.stack([frames[t][k, 0] for t in sorted(frames)])  # [T', h, w]
            up = F.interpolate(low[:, None].float(), size=(H, W), mode="bilinear", align_corners=False)[:, 0]
            result[obj_id] = up.cpu().numpy()
        return result


def seeds_from(detections: list[Detection], next_id: int) -> list[Seed]:
    return [Seed(next_id + i, d.name, d.frame, d.box, d.colour) for i, d in enumerate(detections)]


def run_tracking(
    frames: np.ndarray, detections: Detections, detect: DetectConfig, config: TrackConfig, tracker
) -> list[Track]:
    """Stage 3 on one clip: seed on frame 0, add objects that appear at re-detection frames, track all."""
    tracks: list[Track] = []
    next_id = 1
    for f in detections.frames:
        dets = detections.per_frame.get(f, [])
        if f > 0:
            dets = [d for d in dets if not any(_matches(d, t, f, detect.match_iou) for t in tracks)]
        dets = dets[: max(0, detect.max_objects - len(tracks))]
        if not dets:
            continue
        seeds = seeds_from(dets, next_id)
        next_id += len(seeds)
        masks = tracker.track(frames, seeds)
        tracks.extend(make_track(seed, masks[seed.obj_id], config) for seed in seeds)
    return tracks


def _matches(det: Detection, track: Track, frame: int, iou: float) -> bool:
    box = track.boxes[frame]  # names are not compared: a detector may name one object differently later
    return box is not None and box_iou(box, det.box) >= iou
