"""Scan a dataset and list every problem found, without stopping at the first.

    python -m data_prep.validate --format groundmore --root D [--meta FILE] [--images header|full|none]
    python -m data_prep.validate --format refytvos|mevis|revos --root D [--split S] [--meta FILE]
    python -m data_prep.validate --format jsonl --root D [--meta samples.jsonl]

GroundMoRe: every meta JSON at the root (train/val/test.json, test_v2.json, trainval.json, ...) unless
``--meta`` names one. Checks: missing fields, unknown q_type, malformed ids/times/obj_id, spans outside
the clip, frame count vs the ``_MMSS_MMSS`` duration, unreadable frames or masks, mask size vs frame
size, obj_id absent from every mask of its span, listed frames missing, paths escaping the root.
Prints one line per problem; exits 1 if there are any, 0 if none, 2 on bad arguments.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from mora.constants import GROUNDMORE_FPS, GROUNDMORE_Q_TYPES
from mora.data.errors import DatasetFormatError
from mora.data.masks import PaletteMaskTrack, read_label_png
from mora.data.readers import groundmore, jsonl, mevis, refytvos
from mora.data.readers.common import load_json
from mora.data.schema import VideoSample
from mora.utils.logging import setup_cli_logging

FORMATS = ("groundmore", "refytvos", "mevis", "revos", "jsonl")
COUNT_TOLERANCE = GROUNDMORE_FPS  # frames: extraction may round the clip length by up to a second


class Checker:
    """Collects problems; caches per-video label sets so each mask file is decoded once."""

    def __init__(self, images: str) -> None:
        self.images = images
        self.problems: list[str] = []
        self._labels: dict[Path, set[int] | None] = {}
        self._checked: set[Path] = set()

    def add(self, path, problem: str) -> None:
        self.problems.append(str(DatasetFormatError(path, problem)))

    def image(self, path: Path, expected: tuple[int, int] | None) -> None:
        if self.images == "none" or path in self._checked:
            return
        self._checked.add(path)
        try:
            with Image.open(path) as image:
                if self.images == "full":
                    image.load()
                size = (image.height, image.width)
        except FileNotFoundError:
            self.add(path, "frame file is missing")
            return
        except (OSError, SyntaxError) as exc:
            self.add(path, f"unreadable image ({exc})")
            return
        if expected is not None and size != expected:
            self.add(
                path, f"frame is {size[0]}x{size[1]}, the video's first frame is {expected[0]}x{expected[1]}"
            )

    def labels(self, path: Path, expected: tuple[int, int] | None) -> set[int] | None:
        if path not in self._labels:
            try:
                array = read_label_png(path)
                if expected is not None and array.shape != expected:
                    self.add(
                        path,
                        f"mask is {array.shape[0]}x{array.shape[1]}, frames are {expected[0]}x{expected[1]}",
                    )
                self._labels[path] = {int(v) for v in np.unique(array)}
            except DatasetFormatError as exc:
                self.add(exc.path, exc.problem)
                self._labels[path] = None
        return self._labels[path]

    def frames(self, sample: VideoSample) -> None:
        if sample.frames is None:
            return
        size = (sample.height, sample.width) if sample.height else None
        for i in range(sample.num_frames):
            self.image(sample.frame_path(i), size)

    def palette_objects(self, sample: VideoSample, frames: Iterable[int]) -> None:
        """obj_ids must appear in at least one mask PNG of the given frames."""
        track = sample.masks
        if not isinstance(track, PaletteMaskTrack) or not sample.obj_ids:
            return
        files = [track.files[i] for i in frames if track.files[i] is not None]
        if not files:
            return
        size = (sample.height, sample.width) if sample.height else None
        seen: set[int] = set()
        for f in files:
            seen |= self.labels(f, size) or set()
        absent = [o for o in sample.obj_ids if o not in seen]
        if absent:
            self.add(
                files[0].parent, f"sample {sample.id}: obj_id {absent} absent from all {len(files)} masks"
            )


def validate_groundmore(root: Path, meta: str | None, check: Checker) -> int:
    metas = [root / meta] if meta else groundmore.find_meta_files(root)
    if not metas:
        check.add(root, "no meta JSON at the dataset root")
    total = 0
    for meta_path in metas:
        try:
            data = load_json(meta_path)
            samples = groundmore.read_groundmore(root, meta_path, issues=check.problems)
        except DatasetFormatError as exc:
            check.add(exc.path, exc.problem)
            continue
        total += len(samples)
        by_id = {s.id: s for s in samples}
        for video_id, entry in data.get("videos", {}).items():
            for qid, q in (entry.get("questions") or {}).items() if isinstance(entry, dict) else ():
                if not isinstance(q, dict):
                    continue
                missing = [k for k in ("answer", "q_type") if k not in q]
                if missing:
                    check.add(meta_path, f"video {video_id!r} question {qid!r} lacks {missing}")
                elif q["q_type"] not in GROUNDMORE_Q_TYPES:
                    check.add(
                        meta_path, f"video {video_id!r} question {qid!r}: unknown q_type {q['q_type']!r}"
                    )
                sample = by_id.get(f"{video_id}/{qid}")
                if sample is not None:
                    start, end = groundmore.span_frames(q["action_start"], q["action_end"], video_id)
                    if start < 0 or end > sample.num_frames - 1:
                        check.add(
                            meta_path,
                            f"{sample.id}: span [{start}, {end}] beyond the {sample.num_frames} frames",
                        )
        for sample in tqdm(samples, desc=meta_path.name, disable=len(samples) < 200):
            clip_start, clip_end = groundmore.clip_bounds(sample.video_id)
            expected = (clip_end - clip_start) * GROUNDMORE_FPS
            if abs(sample.num_frames - expected) > COUNT_TOLERANCE:
                check.add(
                    sample.video,
                    f"{sample.num_frames} frames, but the id's clip lasts {clip_end - clip_start} s ({expected} frames at 6 fps)",
                )
            check.frames(sample)
            check.palette_objects(sample, range(sample.span[0], sample.span[1] + 1))
    return total


def validate_referring(fmt: str, root: Path, split: str, meta: str | None, check: Checker) -> int:
    try:
        if fmt == "refytvos":
            samples = refytvos.read_refytvos(root, split, meta=meta, issues=check.problems)
        elif fmt == "mevis":
            samples = mevis.read_mevis(root, split, meta=meta, issues=check.problems)
        else:
            samples = mevis.read_revos(root, split, meta=meta, issues=check.problems)
    except DatasetFormatError as exc:
        check.add(exc.path, exc.problem)
        return 0
    for sample in tqdm(samples, desc=fmt, disable=len(samples) < 200):
        check.frames(sample)
        if fmt == "refytvos":
            check.palette_objects(sample, range(sample.num_frames))
            continue
        size = (sample.height, sample.width) if sample.height else None
        if sample.obj_ids and sample.masks.size is not None and size and sample.masks.size != size:
            check.add(sample.video, f"sample {sample.id}: masks are {sample.masks.size}, frames are {size}")
        no_target = sample.extra.get("type_id") == 2 or not sample.obj_ids
        if not no_target and not any(sample.masks.present(i) for i in range(sample.num_frames)):
            check.add(
                sample.video,
                f"sample {sample.id}: anno_id {sample.extra.get('anno_ids')} empty on every frame",
            )
    return len(samples)


def validate_jsonl(root: Path, meta: str | None, check: Checker) -> int:
    try:
        samples = jsonl.read_samples_jsonl(root, meta or "samples.jsonl", issues=check.problems)
    except DatasetFormatError as exc:
        check.add(exc.path, exc.problem)
        return 0
    for sample in samples:
        check.frames(sample)
    return len(samples)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m data_prep.validate", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--format", required=True, choices=FORMATS)
    parser.add_argument("--root", required=True, type=Path, help="dataset root folder")
    parser.add_argument("--meta", help="one meta file (relative to --root); default: all / the split's")
    parser.add_argument("--split", default="train", help="refytvos/mevis/revos split (default train)")
    parser.add_argument(
        "--images",
        choices=("header", "full", "none"),
        default="header",
        help="check frames by header (default), by fully decoding them, or not at all",
    )
    args = parser.parse_args(argv)
    setup_cli_logging()
    root = args.root.resolve()
    if not root.is_dir():
        sys.stderr.write(f"error: --root {args.root} is not a folder\n")
        return 2
    if args.meta and not (root / args.meta).is_file():
        sys.stderr.write(f"error: --meta {root / args.meta} does not exist\n")
        return 2
    check = Checker(args.images)
    if args.format == "groundmore":
        count = validate_groundmore(root, args.meta, check)
    elif args.format == "jsonl":
        count = validate_jsonl(root, args.meta, check)
    else:
        count = validate_referring(args.format, root, args.split, args.meta, check)
    for problem in check.problems:
        sys.stdout.write(problem + "\n")
    sys.stdout.write(f"{args.format} {root}: {count} samples read, {len(check.problems)} problems\n")
    return 1 if check.problems else 0


if __name__ == "__main__":
    sys.exit(main())
