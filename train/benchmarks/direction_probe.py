"""Does a trained model know which way things move? Two probes of an export on the synthetic test split.

Descriptive questions ("Which object moves up?") name no object: the answer is picked by its direction of
motion alone. Two things must hold for a model to answer them, and each probe checks one:

* ``features``: a linear probe (logistic regression, fitted on 70 % of the test videos and scored on the
  rest) of each grid cell's direction of motion (left / right / up / down, cells at least 40 % covered by an
  object while it moves) from the grid tokens before and after the video adapter, and from the motion
  estimate `normal_flow` itself. Chance is 0.25.
* ``words``: the model's masks (before span gating) for the same clip asked with each of the four canonical
  direction questions; the object each in-span frame covers best, for the question's own direction word and
  for the other three. A model that reads the direction word segments the answer for its own word and
  other objects for the others; one that ignores it gives the same masks for all four.
  Beside the masks: how far apart the ``[SEG]`` / ``[LOC]`` states of the four questions lie, as the language
  model gives them and after the grounding reader (distance from their mean relative to its norm), which
  shows where the direction word is lost.

    python train/benchmarks/direction_probe.py --model runs/tiny/export [--videos 120] [--questions 60]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import mora  # noqa: E402
from data_prep.synthetic import generate_video  # noqa: E402
from mora.constants import GROUNDMORE_FPS  # noqa: E402
from mora.data.readers.groundmore import parse_mmss  # noqa: E402
from mora.data.synthetic_plan import SceneSettings  # noqa: E402
from mora.data.video import read_frame_files  # noqa: E402
from mora.model.video_adapter import normal_flow  # noqa: E402

DIRECTIONS = ("left", "right", "up", "down")
QUESTIONS = {
    "left": "Which object moves to the left?",
    "right": "Which object moves to the right?",
    "up": "Which object moves up?",
    "down": "Which object moves down?",
}
MIN_COVER = 0.4


def _clip(root: Path, video_id: str, num_frames: int) -> tuple[list[Path], np.ndarray]:
    files = sorted((root / "annotations" / video_id / "images").glob("*.jpg"))
    return files, np.linspace(0, len(files) - 1, num_frames).astype(int)


def _labels(root: Path, video_id: str, frame: Path) -> np.ndarray:
    """``[H, W]`` object labels of one frame (i + 1 = object i, 0 = background)."""
    return np.array(Image.open(root / "annotations" / video_id / "masks" / f"{frame.stem}.png"))


def cell_directions(labels: np.ndarray, scene, t: int, grid: int) -> np.ndarray:
    """``[grid, grid]`` direction index of the object moving in each cell at frame ``t``; -1 elsewhere."""
    side = labels.shape[0] // grid
    out = np.full((grid, grid), -1)
    for cy in range(grid):
        for cx in range(grid):
            values, counts = np.unique(
                labels[cy * side : (cy + 1) * side, cx * side : (cx + 1) * side], return_counts=True
            )
            obj = int(values[np.argmax(counts)])
            if obj == 0 or counts.max() < MIN_COVER * side * side:
                continue
            motion = scene.objects[obj - 1].motion
            if motion is not None and motion.frames[0] <= t <= motion.frames[1]:
                out[cy, cx] = DIRECTIONS.index(motion.direction)
    return out


def linear_probe(x: np.ndarray, y: np.ndarray, train: np.ndarray, steps: int = 500) -> float:
    """Held-out accuracy of a class-balanced logistic regression of ``y [N]`` on ``x [N, C]``."""
    xt = torch.tensor(x, dtype=torch.float32)
    xt = (xt - xt[train].mean(0)) / (xt[train].std(0) + 1e-5)
    yt = torch.tensor(y)
    weight = torch.tensor(
        1.0 / np.maximum(np.bincount(y[train], minlength=len(DIRECTIONS)), 1), dtype=torch.float32
    )
    head = torch.nn.Linear(x.shape[1], len(DIRECTIONS))
    opt = torch.optim.Adam(head.parameters(), lr=1e-2, weight_decay=1e-4)
    for _ in range(steps):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(head(xt[train]), yt[train], weight=weight).backward()
        opt.step()
    with torch.no_grad():
        return float((head(xt[~train]).argmax(1) == yt[~train]).float().mean())


def probe_features(model, root: Path, videos: list[str], seed: int, num_frames: int) -> dict[str, float]:
    settings = SceneSettings()
    feats: dict[str, list[np.ndarray]] = {"grid": [], "adapted grid": [], "normal_flow": []}
    labels, groups = [], []
    for v, video_id in enumerate(videos):
        scene = generate_video(seed, int(video_id[5:10]), settings).scene
        files, idx = _clip(root, video_id, num_frames)
        pixel_values = model.processor.prepare_frames(read_frame_files([files[i] for i in idx]))[0]
        pixel_values = pixel_values.unsqueeze(0).to(model.device, model.dtype)  # [1, T, 3, I, I]
        with torch.no_grad():
            raw = model.adapter.frame_features(pixel_values).tokens[0]  # [T, n, D]
            adapted = model.encode_video(pixel_values)[0].tokens[0]
        grid = int(round(raw.shape[1] ** 0.5))
        flow = normal_flow(pixel_values.float(), (grid, grid))[0].flatten(1, 2)  # [T, n, 4]
        first = int(files[0].stem.split("_")[1])
        for k, i in enumerate(idx):
            dirs = cell_directions(
                _labels(root, video_id, files[i]), scene, int(files[i].stem.split("_")[1]) - first, grid
            )
            cells = np.nonzero(dirs.reshape(-1) >= 0)[0]
            labels += dirs.reshape(-1)[cells].tolist()
            groups += [v] * len(cells)
            for name, tokens in (("grid", raw), ("adapted grid", adapted), ("normal_flow", flow)):
                feats[name].append(tokens[k, cells].float().cpu().numpy())
    y, train = np.array(labels), np.array(groups) < int(0.7 * len(videos))
    return {name: linear_probe(np.concatenate(x), y, train) for name, x in feats.items()} | {"cells": len(y)}


def probe_words(model, root: Path, meta: dict, max_questions: int) -> dict:
    counts = {True: Counter(), False: Counter()}
    overlaps, n = [], 0
    spreads: dict[str, list[float]] = {name: [] for name in QUERY_STAGES}
    for video_id, entry in sorted(meta.items()):
        for q in entry["questions"].values():
            if q["q_type"] != "Descriptive" or n >= max_questions:
                continue
            n += 1
            files, idx = _clip(root, video_id, 20)
            frames = read_frame_files([files[i] for i in idx])
            clip_start = parse_mmss(video_id.split("_")[1][:2] + ":" + video_id.split("_")[1][2:])
            first = (parse_mmss(q["action_start"]) - clip_start) * GROUNDMORE_FPS
            last = (parse_mmss(q["action_end"]) - clip_start) * GROUNDMORE_FPS - 1
            inside = [k for k, i in enumerate(idx) if first <= i <= last]
            truth = next(d for d in ("left", "right", "up", "down") if d in q["question"].lower())
            with _recording_queries(model) as recorded:
                masks = {d: model.predict(frames, text, gate=False).masks for d, text in QUESTIONS.items()}
            for name, states in recorded.items():
                spreads[name].append(_spread(torch.cat(states)))
            answer = int(q["obj_id"])
            for d, pred in masks.items():
                for k in inside:
                    counts[d == truth][
                        _best_object(pred[k], _labels(root, video_id, files[idx[k]]), answer)
                    ] += 1
            opposite = {"left": "right", "right": "left", "up": "down", "down": "up"}[truth]
            a, b = masks[truth][inside], masks[opposite][inside]
            overlaps.append((a & b).sum() / max((a | b).sum(), 1))
    share = {
        k: {c: round(v / max(sum(cnt.values()), 1), 3) for c, v in cnt.items()} for k, cnt in counts.items()
    }
    return {
        "own word": share[True],
        "other words": share[False],
        "IoU own vs opposite": float(np.mean(overlaps)),
        "query spread": {name: float(np.mean(v)) for name, v in spreads.items()},
        "questions": n,
    }


QUERY_STAGES = ("[SEG] from the LM", "[SEG] after the reader", "[LOC] from the LM", "[LOC] after the reader")


@contextlib.contextmanager
def _recording_queries(model):
    """Record the ``[SEG]``/``[LOC]`` states going into and out of ``model.read_video`` while in the block."""
    recorded: dict[str, list[torch.Tensor]] = {name: [] for name in QUERY_STAGES}
    read_video = model.read_video

    def recording(seg, loc, *args, **kwargs):
        out = read_video(seg, loc, *args, **kwargs)
        for name, state in zip(QUERY_STAGES, (seg, out[0], loc, out[1]), strict=True):
            recorded[name].append(state.detach().float())
        return out

    model.read_video = recording
    try:
        yield recorded
    finally:
        del model.read_video


def _spread(states: torch.Tensor) -> float:
    """Mean distance of ``states [4, D]`` (one per direction word) from their mean, relative to its norm."""
    centre = states.mean(0, keepdim=True)
    return float((states - centre).norm(dim=-1).mean() / centre.norm().clamp_min(1e-8))


def _best_object(pred: np.ndarray, labels: np.ndarray, answer: int, min_iou: float = 0.3) -> str:
    if not pred.any():
        return "none"
    ious = {
        int(o): (pred & (labels == o)).sum() / (pred | (labels == o)).sum()
        for o in np.unique(labels[labels > 0])
    }
    best = max(ious, key=ious.get) if ious else None
    if best is None or ious[best] < min_iou:
        return "none"
    return "answer" if best == answer else "other"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="an export folder (runs/tiny/export)")
    parser.add_argument("--data-root", type=Path, default=Path("data/synthetic"))
    parser.add_argument("--meta", default="test.json")
    parser.add_argument("--seed", type=int, default=0, help="seed the synthetic dataset was generated with")
    parser.add_argument("--videos", type=int, default=120, help="videos for the feature probe")
    parser.add_argument("--questions", type=int, default=60, help="Descriptive questions for the word probe")
    parser.add_argument("--frames", type=int, default=12)
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    model = mora.load_model(args.model)
    meta = json.loads((args.data_root / args.meta).read_text())["videos"]
    features = probe_features(model, args.data_root, sorted(meta)[: args.videos], args.seed, args.frames)
    print("direction of motion of moving cells, linear probe, held-out accuracy (chance 0.25):")
    print("  " + ", ".join(f"{k} {v:.3f}" if k != "cells" else f"{v} cells" for k, v in features.items()))
    words = probe_words(model, args.data_root, meta, args.questions)
    print(f"Descriptive masks on in-span frames ({words['questions']} questions), best-covered object:")
    print(f"  own direction word:    {words['own word']}")
    print(f"  other direction words: {words['other words']}")
    print(f"  IoU of the masks for the own and the opposite word: {words['IoU own vs opposite']:.3f}")
    print("  query states of the four questions, distance from their mean relative to its norm:")
    print("    " + ", ".join(f"{k} {v:.4f}" for k, v in words["query spread"].items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
