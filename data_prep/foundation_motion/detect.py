"""Stage 2: object proposals (names, and boxes for the rule-based backend) and open-vocabulary detection.

* Rule-based proposals (``detect.proposals: rule-based``): saturated colour blobs on the first frame
  (OpenCV connected components of an HSV saturation mask), each named ``"<colour> <shape>"`` from a
  colour table and the blob's footprint. They also carry the blob's colour (the colour tracker uses it).
* ``vocabulary``: the names in ``detect.vocabulary``, no boxes.
* ``vlm``: names of the objects on the first frame from a vision model on the OpenAI-compatible
  endpoint (``models.vlm``; FoundationMotion asks Qwen2.5-VL), no boxes; cached like the QA requests.
* Detection: OWLv2 (``Owlv2ForObjectDetection``) queried with the names on frame 0 and every
  ``redetect_interval`` frames; score = sigmoid logit of the (box, name) pair, kept above both the
  box and text thresholds (0.25), NMS per name, area filters. Or GroundingDINO
  (``GroundingDinoForObjectDetection``, ``detect.detector: grounding-dino``) with the names joined
  into one ``"a. b. c."`` prompt, box and text thresholds as in the original pipeline. ``detect.detector: none`` uses the
  rule-based proposals on every detection frame instead.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np
import torch

from data_prep.foundation_motion.clips import ClipSkipped
from data_prep.foundation_motion.config import DetectConfig
from mora.data.synthetic_scene import COLOURS

# the named colours of the rule-based proposals: the synthetic generator's palette (its test videos)
COLOUR_NAMES: dict[str, tuple[int, int, int]] = COLOURS


@dataclass
class Detection:
    """One box on one frame: ``box`` (x0, y0, x1, y1) in pixels, exclusive ends."""

    frame: int
    box: tuple[float, float, float, float]
    score: float
    name: str
    colour: tuple[int, int, int] | None = None  # rule-based proposals only

    def to_dict(self) -> dict:
        return {
            "frame": self.frame,
            "box": [round(float(v), 2) for v in self.box],
            "score": round(float(self.score), 4),
            "name": self.name,
            "colour": None if self.colour is None else list(self.colour),
        }

    @classmethod
    def from_dict(cls, d: dict) -> Detection:
        colour = d.get("colour")
        return cls(
            d["frame"], tuple(d["box"]), d["score"], d["name"], None if colour is None else tuple(colour)
        )


@dataclass
class Detections:
    """Stage-2 output: the object names and the detections of every detection frame."""

    names: list[str]
    frames: list[int]
    per_frame: dict[int, list[Detection]] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {
            "names": self.names,
            "frames": self.frames,
            "detections": {str(f): [d.to_dict() for d in self.per_frame.get(f, [])] for f in self.frames},
        }


def box_iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def nms(dets: list[Detection], iou: float) -> list[Detection]:
    kept: list[Detection] = []
    for d in sorted(dets, key=lambda d: -d.score):
        if all(k.name != d.name or box_iou(k.box, d.box) < iou for k in kept):
            kept.append(d)
    return kept


def _shape_name(footprint: np.ndarray) -> str:
    """Shape of a blob's [h, w] footprint: square, circle, triangle, diamond or cross."""
    h, w = footprint.shape
    fill = footprint.mean()
    if fill > 0.93:
        return "square"
    if fill > 0.72:
        return "circle"
    corner = footprint[: max(1, h // 4), : max(1, w // 4)].mean()
    centre_row = footprint[h // 2].mean()
    if fill < 0.66 and corner < 0.05 and centre_row > 0.9 and footprint[:, w // 2].mean() > 0.9:
        top, bottom = footprint[: h // 3].mean(), footprint[-(h // 3) :].mean()
        if abs(top - bottom) > 0.25:
            return "triangle"
        points = [footprint[int(fy * h), int(fx * w)] for fy in (0.3, 0.7) for fx in (0.3, 0.7)]
        return "diamond" if np.mean(points) > 0.5 else "cross"  # a cross leaves these four points empty
    top, bottom = footprint[: max(1, h // 3)].mean(), footprint[-max(1, h // 3) :].mean()
    return "triangle" if bottom - top > 0.25 else "object"


def colour_name(rgb) -> str:
    rgb = np.asarray(rgb, dtype=np.float64)
    return min(COLOUR_NAMES, key=lambda n: float(np.linalg.norm(rgb - np.asarray(COLOUR_NAMES[n]))))


def colour_blobs(frame: np.ndarray, config: DetectConfig, frame_idx: int = 0) -> list[Detection]:
    """Rule-based proposals: saturated blobs of one colour each, named and boxed."""
    hsv = cv2.cvtColor(frame, cv2.COLOR_RGB2HSV)
    saturated = (hsv[..., 1] >= config.min_saturation) & (hsv[..., 2] >= 60)
    H, W = saturated.shape
    out: list[Detection] = []
    # quantise hue so that touching objects of different colours fall into different components
    names = np.full((H, W), -1, dtype=np.int64)
    table = list(COLOUR_NAMES)
    pix = frame[saturated].astype(np.float64)
    if len(pix):
        ref = np.asarray([COLOUR_NAMES[n] for n in table], dtype=np.float64)
        dist = ((pix[:, None, :] - ref[None]) ** 2).sum(-1)  # [N, colours]
        nearest = np.argmin(dist, axis=1)
        nearest[dist.min(1) > config.colour_distance**2] = -1  # blended edges and other colours
        names[saturated] = nearest
    for ci, cname in enumerate(table):
        if not (names == ci).any():
            continue
        binary = (names == ci).astype(np.uint8)
        count, labels, stats, _ = cv2.connectedComponentsWithStats(binary, connectivity=8)
        for k in range(1, count):
            x, y, w, h, area = (int(v) for v in stats[k])
            if area < config.min_area_px or area > config.max_area_fraction * H * W:
                continue
            footprint = labels[y : y + h, x : x + w] == k
            colour = tuple(int(v) for v in np.median(frame[labels == k], axis=0))
            out.append(
                Detection(frame_idx, (x, y, x + w, y + h), 1.0, f"{cname} {_shape_name(footprint)}", colour)
            )
    return sorted(out, key=lambda d: (d.box[1], d.box[0]))[: config.max_objects]


class Owlv2Detector:
    """Open-vocabulary detection with transformers' ``Owlv2ForObjectDetection`` (any OWLv2 Hub id or folder)."""

    def __init__(self, model, image_processor, tokenizer, device: str = "cpu") -> None:
        self.model = model.eval().to(device)
        self.image_processor = image_processor
        self.tokenizer = tokenizer
        self.device = device
        self.max_text_len = int(model.config.text_config.max_position_embeddings)

    @classmethod
    def from_pretrained(cls, name_or_path: str, device: str = "cpu") -> Owlv2Detector:
        from transformers import AutoImageProcessor, AutoTokenizer, Owlv2ForObjectDetection

        model = Owlv2ForObjectDetection.from_pretrained(name_or_path)
        image_processor = AutoImageProcessor.from_pretrained(name_or_path)
        tokenizer = AutoTokenizer.from_pretrained(name_or_path)
        return cls(model, image_processor, tokenizer, device)

    @torch.no_grad()
    def detect(self, frames: list[np.ndarray], frame_ids: list[int], names: list[str], config: DetectConfig):
        """Detections per frame id: boxes in pixels of the original frames."""
        if not names or not frames:
            return {f: [] for f in frame_ids}
        text = self.tokenizer(
            names, padding="max_length", truncation=True, max_length=self.max_text_len, return_tensors="pt"
        )
        pixels = self.image_processor(images=list(frames), return_tensors="pt")["pixel_values"]
        out = {}
        for i, frame_id in enumerate(frame_ids):
            outputs = self.model(
                input_ids=text["input_ids"].to(self.device),
                attention_mask=text["attention_mask"].to(self.device),
                pixel_values=pixels[i : i + 1].to(self.device),
            )
            out[frame_id] = self._boxes(outputs, frames[i].shape[:2], frame_id, names, config)
        return out

    def _boxes(self, outputs, size, frame_id: int, names: list[str], config: DetectConfig) -> list[Detection]:
        H, W = size
        side = max(H, W)  # OWLv2 pads to a square at the bottom/right: boxes are relative to it
        probs = torch.sigmoid(outputs.logits[0].float())  # [N, Q]
        scores, labels = probs.max(-1)  # [N]
        boxes = outputs.pred_boxes[0].float()  # [N, 4] cx, cy, w, h in 0..1 of the padded square
        threshold = max(config.box_threshold, config.text_threshold)
        dets = []
        for k in torch.nonzero(scores > threshold).flatten().tolist():
            cx, cy, w, h = (boxes[k] * side).tolist()
            x0, y0 = max(0.0, cx - w / 2), max(0.0, cy - h / 2)
            x1, y1 = min(float(W), cx + w / 2), min(float(H), cy + h / 2)
            area = (x1 - x0) * (y1 - y0)
            if x1 <= x0 or y1 <= y0 or area < config.min_area_px or area > config.max_area_fraction * H * W:
                continue
            dets.append(Detection(frame_id, (x0, y0, x1, y1), float(scores[k]), names[int(labels[k])]))
        return nms(dets, config.nms_iou)[: config.max_objects]


class GroundingDinoDetector:
    """Open-vocabulary detection with transformers' ``GroundingDinoForObjectDetection`` (e.g.
    IDEA-Research/grounding-dino-tiny): one prompt ``"name1. name2. ..."`` per frame, as the original
    pipeline's per-name prompts joined. A query is kept when its best token's probability exceeds
    ``box_threshold``; its label is the name whose tokens score highest, kept above ``text_threshold``."""

    def __init__(self, model, image_processor, tokenizer, device: str = "cpu") -> None:
        self.model = model.eval().to(device)
        self.image_processor = image_processor
        self.tokenizer = tokenizer
        self.device = device
        self.max_text_len = int(model.config.max_text_len)

    @classmethod
    def from_pretrained(cls, name_or_path: str, device: str = "cpu") -> GroundingDinoDetector:
        from transformers import AutoImageProcessor, AutoTokenizer, GroundingDinoForObjectDetection

        model = GroundingDinoForObjectDetection.from_pretrained(name_or_path)
        image_processor = AutoImageProcessor.from_pretrained(name_or_path)
        tokenizer = AutoTokenizer.from_pretrained(name_or_path)
        return cls(model, image_processor, tokenizer, device)

    def _prompt(self, names: list[str]) -> tuple[dict, list[list[int]]]:
        """Tokenised prompt and, per name, the token positions that belong to it."""
        text = " ".join(f"{n}." for n in names)
        enc = self.tokenizer(
            text,
            return_offsets_mapping=True,
            truncation=True,
            max_length=self.max_text_len,
            return_tensors="pt",
        )
        bounds, start = [], 0
        for n in names:
            bounds.append((start, start + len(n)))
            start += len(n) + 2  # "name. "
        positions: list[list[int]] = [[] for _ in names]
        for i, (a, b) in enumerate(enc.pop("offset_mapping")[0].tolist()):
            for k, (lo, hi) in enumerate(bounds):
                if b > a and lo <= a and b <= hi:
                    positions[k].append(i)
        return enc, positions

    @torch.no_grad()
    def detect(self, frames: list[np.ndarray], frame_ids: list[int], names: list[str], config: DetectConfig):
        if not names or not frames:
            return {f: [] for f in frame_ids}
        enc, positions = self._prompt(names)
        out = {}
        for frame, frame_id in zip(frames, frame_ids):
            pixels = self.image_processor(images=[frame], return_tensors="pt")
            outputs = self.model(
                **{k: v.to(self.device) for k, v in enc.items()},
                pixel_values=pixels["pixel_values"].to(self.device),
                pixel_mask=pixels["pixel_mask"].to(self.device),
            )
            out[frame_id] = self._boxes(outputs, frame.shape[:2], frame_id, names, positions, config)
        return out

    def _boxes(self, outputs, size, frame_id, names, positions, config: DetectConfig) -> list[Detection]:
        H, W = size
        probs = torch.sigmoid(outputs.logits[0].float())  # [Q, max_text_len]
        boxes = outputs.pred_boxes[0].float()  # [Q, 4] cx, cy, w, h in 0..1 of the image
        dets = []
        for q in range(probs.shape[0]):
            if float(probs[q].max()) <= config.box_threshold:
                continue
            per_name = [float(probs[q, pos].max()) if pos else 0.0 for pos in positions]
            k = int(np.argmax(per_name))
            if per_name[k] <= config.text_threshold:
                continue
            cx, cy, w, h = boxes[q].tolist()
            x0, y0 = max(0.0, (cx - w / 2) * W), max(0.0, (cy - h / 2) * H)
            x1, y1 = min(float(W), (cx + w / 2) * W), min(float(H), (cy + h / 2) * H)
            area = (x1 - x0) * (y1 - y0)
            if x1 <= x0 or y1 <= y0 or area < config.min_area_px or area > config.max_area_fraction * H * W:
                continue
            dets.append(Detection(frame_id, (x0, y0, x1, y1), per_name[k], names[k]))
        return nms(dets, config.nms_iou)[: config.max_objects]


def detection_frames(num_frames: int, interval: int) -> list[int]:
    return list(range(0, num_frames, max(1, interval)))


def run_detection(
    frames: np.ndarray,
    config: DetectConfig,
    detector: Owlv2Detector | GroundingDinoDetector | None,
    namer=None,
) -> Detections:
    """Stage 2 on one clip [T, H, W, 3]: names from the proposals, detections on every detection frame.

    ``namer`` (``detect.proposals: vlm``): an object with ``propose_names(frame, max_objects)``.

    Raises:
        ClipSkipped: fewer than ``min_names`` names were proposed.
    """
    first = colour_blobs(frames[0], config, 0) if config.proposals == "rule-based" else []
    if config.proposals == "rule-based":
        names = list(dict.fromkeys(d.name for d in first))
    elif config.proposals == "vocabulary":
        names = list(config.vocabulary)
    elif config.proposals == "vlm":
        if namer is None:
            raise ValueError("detect.proposals: vlm needs a vision-model client")
        names = namer.propose_names(frames[0], config.max_objects)
    else:
        raise ValueError(f"detect.proposals must be rule-based, vocabulary or vlm, got {config.proposals!r}")
    if len(names) < config.min_names:
        raise ClipSkipped(f"{len(names)} object names proposed (< min_names {config.min_names})")
    ids = detection_frames(frames.shape[0], config.redetect_interval)
    result = Detections(names=names, frames=ids)
    if config.detector == "none":
        if config.proposals != "rule-based":
            raise ValueError("detect.detector: none needs the rule-based proposals' boxes")
        for f in ids:
            result.per_frame[f] = first if f == 0 else colour_blobs(frames[f], config, f)
    elif config.detector in ("owlv2", "grounding-dino"):
        if detector is None:
            raise ValueError(f"detect.detector: {config.detector} needs a loaded detector")
        result.per_frame = detector.detect([frames[f] for f in ids], ids, names, config)
    else:
        raise ValueError(f"detect.detector must be owlv2, grounding-dino or none, got {config.detector!r}")
    return result
