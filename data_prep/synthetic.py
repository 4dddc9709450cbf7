"""Synthetic motion-reasoning dataset in GroundMoRe's on-disk format.

    python -m data_prep.synthetic --out D --num-videos N --seed S [--size 64] [--frames 24 36]

Writes ``D/{train,val,test}.json`` and ``D/annotations/<video_id>/{images,masks}`` (JPEG frames at 6 fps
named ``frame_%06d.jpg``; palette mask PNGs, value = object id, for every object on every frame: GroundMoRe's
protocol empties the ground truth outside each question's span, and training can supervise the answer
object's masks outside its motion too). Video ids end in ``_MMSS_MMSS``; action_start/action_end are MM:SS on the
source-video clock, so GroundMoRe's span formula gives exactly the frames where the answer object
moves. The same seed gives byte-identical files; video ``i`` depends only on (seed, i). The dataset is
written into a temporary folder and renamed into place, so an interrupted run never leaves a folder
that looks complete.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from mora.data.readers.groundmore import format_mmss
from mora.data.synthetic_plan import SceneSettings, plan_scene
from mora.data.synthetic_questions import pick_questions
from mora.data.synthetic_scene import FPS, Scene, render
from mora.utils.io import atomic_path
from mora.utils.logging import get_logger, setup_cli_logging

logger = get_logger("data_prep")

SPLITS = ("train", "val", "test")
# DAVIS-style palette: index 0 black, then distinct colours for object ids 1..
_PALETTE = [0, 0, 0, 128, 0, 0, 0, 128, 0, 128, 128, 0, 0, 0, 128, 128, 0, 128, 0, 128, 128, 128, 128, 128]
_PALETTE += [0] * (768 - len(_PALETTE))


@dataclass
class GeneratedVideo:
    video_id: str
    scene: Scene
    questions: dict[str, dict]
    annotated: list[int]  # frame indices with a mask PNG (every frame)


def _png_bytes(labels: np.ndarray) -> bytes:
    image = Image.frombytes("P", (labels.shape[1], labels.shape[0]), np.ascontiguousarray(labels).tobytes())
    image.putpalette(_PALETTE)
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def _jpg_bytes(frame: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(frame).save(buf, format="JPEG", quality=95, subsampling=0)
    return buf.getvalue()


def generate_video(seed: int, index: int, settings: SceneSettings) -> GeneratedVideo:
    """Plan one scene with at least one question; depends only on (seed, index, settings)."""
    rng = np.random.default_rng([seed, index])
    while True:
        scene = plan_scene(rng, settings)
        picked = pick_questions(rng, scene)
        if picked:
            break
    clip_start = int(rng.integers(0, 59 * 60 - scene.seconds))
    clip_end = clip_start + scene.seconds
    video_id = f"synth{index:05d}_{format_mmss(clip_start).replace(':', '')}_{format_mmss(clip_end).replace(':', '')}"
    questions = {}
    for qid, (q, text) in enumerate(picked):
        questions[str(qid)] = {
            "question": text,
            "answer": f"the {scene.objects[q.answer].name}",
            "obj_id": str(q.answer + 1),
            "q_type": q.q_type,
            "action_start": format_mmss(clip_start + q.start),
            "action_end": format_mmss(clip_start + q.end),
        }
    return GeneratedVideo(video_id, scene, questions, list(range(scene.num_frames)))


def write_video(video: GeneratedVideo, annotations: Path) -> None:
    frames, labels = render(video.scene)
    vdir = annotations / video.video_id
    (vdir / "images").mkdir(parents=True)
    (vdir / "masks").mkdir()
    for t, frame in enumerate(frames):
        (vdir / "images" / f"frame_{t:06d}.jpg").write_bytes(_jpg_bytes(frame))
    for t in video.annotated:
        (vdir / "masks" / f"frame_{t:06d}.png").write_bytes(_png_bytes(labels[t]))


def split_of(num_videos: int, seed: int, val_fraction: float, test_fraction: float) -> list[str]:
    """Split name per video index (deterministic by seed; at least one val/test video when N >= 3)."""
    n_val = int(round(num_videos * val_fraction))
    n_test = int(round(num_videos * test_fraction))
    if num_videos >= 3:
        n_val, n_test = max(1, n_val) if val_fraction > 0 else 0, max(1, n_test) if test_fraction > 0 else 0
    if n_val + n_test >= num_videos:
        raise ValueError(f"{num_videos} videos leave none for training with val {n_val} / test {n_test}")
    order = np.random.default_rng([seed, 1_000_003]).permutation(num_videos)
    names = ["train"] * num_videos
    for i in order[:n_val]:
        names[int(i)] = "val"
    for i in order[n_val : n_val + n_test]:
        names[int(i)] = "test"
    return names


def generate_dataset(
    out: str | os.PathLike,
    *,
    num_videos: int,
    seed: int = 0,
    settings: SceneSettings | None = None,
    val_fraction: float = 0.1,
    test_fraction: float = 0.1,
    overwrite: bool = False,
    progress: bool = False,
) -> dict[str, int]:
    """Write the dataset to ``out`` atomically; returns the number of questions per split."""
    out = Path(out)
    settings = settings or SceneSettings()
    if num_videos < 1:
        raise ValueError(f"--num-videos must be >= 1, got {num_videos}")
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} exists and is not a folder")
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise FileExistsError(f"{out} exists and is not empty (pass --overwrite to replace it)")
    splits = split_of(num_videos, seed, val_fraction, test_fraction)
    metas: dict[str, dict] = {name: {"videos": {}} for name in SPLITS}
    with atomic_path(out) as tmp:
        annotations = tmp / "annotations"
        annotations.mkdir(parents=True)
        for index in tqdm(range(num_videos), desc="synthetic videos", disable=not progress):
            video = generate_video(seed, index, settings)
            write_video(video, annotations)
            metas[splits[index]]["videos"][video.video_id] = {"questions": video.questions}
        for name in SPLITS:  # meta files last: a folder without them is never mistaken for a dataset
            (tmp / f"{name}.json").write_text(json.dumps(metas[name], indent=1, sort_keys=True) + "\n")
    counts = {name: sum(len(v["questions"]) for v in metas[name]["videos"].values()) for name in SPLITS}
    logger.info("wrote %d videos to %s; questions per split: %s", num_videos, out, counts)
    return counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m data_prep.synthetic", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--out", required=True, type=Path, help="output dataset folder")
    parser.add_argument("--num-videos", required=True, type=int, help="number of videos over all splits")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--size", type=int, default=64, help="frame side in pixels (default 64)")
    parser.add_argument(
        "--frames",
        type=int,
        nargs=2,
        default=(24, 36),
        metavar=("MIN", "MAX"),
        help=f"clip length range in frames, whole seconds at {FPS} fps (default 24 36)",
    )
    parser.add_argument("--objects", type=int, nargs=2, default=(2, 4), metavar=("MIN", "MAX"))
    parser.add_argument(
        "--object-size",
        type=int,
        nargs=2,
        default=None,
        metavar=("MIN", "MAX"),
        help="object side range in pixels (default 8..16, scaled with --size)",
    )
    parser.add_argument("--val-fraction", type=float, default=0.1)
    parser.add_argument("--test-fraction", type=float, default=0.1)
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    args = parser.parse_args(argv)
    setup_cli_logging()
    try:
        lo, hi = args.frames
        if lo % FPS or hi % FPS:
            raise ValueError(
                f"--frames must be multiples of {FPS} (whole seconds at {FPS} fps), got {lo} {hi}"
            )
        scale = args.size / 64
        object_size = args.object_size or (max(4, round(8 * scale)), max(4, round(16 * scale)))
        settings = SceneSettings(
            size=args.size,
            min_seconds=lo // FPS,
            max_seconds=hi // FPS,
            min_objects=args.objects[0],
            max_objects=args.objects[1],
            min_object_size=object_size[0],
            max_object_size=object_size[1],
        )
        generate_dataset(
            args.out,
            num_videos=args.num_videos,
            seed=args.seed,
            settings=settings,
            val_fraction=args.val_fraction,
            test_fraction=args.test_fraction,
            overwrite=args.overwrite,
            progress=True,
        )
    except (ValueError, RuntimeError, OSError) as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
