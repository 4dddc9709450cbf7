"""Loader throughput: decode + preprocess 720p video to the mask engine's input, and dataset indexing.

    python -m data_prep.benchmarks.loader_speed [--size 1024] [--clips 24] [--num-frames 8] [--index-videos 1000]

Synthesises a 720p H.264 mp4 (PyAV) and a 720p JPEG frame folder, then measures frames/s of
"decode T jittered-linspace frames + resize/normalise/pad to S x S" through a torch DataLoader with 1
and 2 workers, and the time to index a GroundMoRe-format dataset of N videos (written by the synthetic
generator). Prints the figures.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import av
import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from data_prep.synthetic import generate_dataset
from mora.data.dataset import DatasetSpec, build_dataset
from mora.data.readers.groundmore import read_groundmore
from mora.data.sampling import jittered_linspace
from mora.data.video import decode_video_frames, list_frame_files, read_frame_files
from mora.processing.image_ops import frames_to_tensor

H, W = 720, 1280
SAM_MEAN, SAM_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def _frame(i: int) -> np.ndarray:
    """A textured 720p frame with a moving square (so the codec has real work to do)."""
    rng = np.random.default_rng(i // 30)
    y, x = np.mgrid[0:H, 0:W]
    frame = np.stack([(x + 3 * i) % 256, (y + 2 * i) % 256, ((x ^ y) + i) % 256], -1).astype(np.uint8)
    frame[200:400, 100 + 10 * i % 900 : 300 + 10 * i % 900] = rng.integers(0, 255, 3)
    return frame


def write_inputs(folder: Path, num_frames: int) -> tuple[Path, Path]:
    mp4, frames_dir = folder / "clip720p.mp4", folder / "frames720p"
    frames_dir.mkdir()
    container = av.open(str(mp4), mode="w")
    stream = container.add_stream("libx264", rate=30)
    stream.height, stream.width, stream.pix_fmt = H, W, "yuv420p"
    for i in range(num_frames):
        frame = _frame(i)
        Image.fromarray(frame).save(frames_dir / f"frame_{i:06d}.jpg", quality=90)
        for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)
    container.close()
    return mp4, frames_dir


class ClipDataset(Dataset):
    """Each item: T jittered-linspace frames of one video, decoded and mapped to the S x S canvas."""

    def __init__(self, source: Path, total: int, clips: int, num_frames: int, size: int | None) -> None:
        self.source, self.total, self.clips, self.num_frames, self.size = (
            source,
            total,
            clips,
            num_frames,
            size,
        )
        self.files = list_frame_files(source) if source.is_dir() else None

    def __len__(self) -> int:
        return self.clips

    def __getitem__(self, index: int) -> torch.Tensor:
        indices = jittered_linspace(self.total, self.num_frames, np.random.default_rng(index))
        if self.files is not None:
            frames = read_frame_files([self.files[i] for i in indices])
        else:
            frames = decode_video_frames(self.source, indices)
        if self.size is None:  # decode only
            return torch.from_numpy(frames)  # [T, H, W, 3]
        pixels, _ = frames_to_tensor(frames, self.size, "longest_pad", SAM_MEAN, SAM_STD)
        return pixels  # [T, 3, S, S]


def throughput(dataset: ClipDataset, workers: int) -> float:
    loader = DataLoader(dataset, batch_size=1, num_workers=workers, collate_fn=lambda b: b[0])
    start = time.perf_counter()
    count = sum(clip.shape[0] for clip in loader)
    return count / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m data_prep.benchmarks.loader_speed", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--size", type=int, default=1024, help="mask-engine input side S (1024: SAM/SAM2)")
    parser.add_argument("--clips", type=int, default=16, help="clips decoded per measurement")
    parser.add_argument("--num-frames", type=int, default=8, help="frames per clip (T)")
    parser.add_argument("--video-frames", type=int, default=120, help="length of the synthesised 720p video")
    parser.add_argument("--index-videos", type=int, default=1000, help="videos in the indexing benchmark")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        mp4, frames_dir = write_inputs(tmp, args.video_frames)
        print(
            f"{args.clips} clips x {args.num_frames} jittered-linspace frames of a {args.video_frames}-frame 720p video"
        )
        for name, source in (("mp4 (PyAV)", mp4), ("jpg folder", frames_dir)):
            for size in (None, args.size):
                what = "decode only" if size is None else f"decode + preprocess to {size}x{size}"
                dataset = ClipDataset(source, args.video_frames, args.clips, args.num_frames, size)
                rates = "  ".join(f"workers={w}: {throughput(dataset, w):6.1f} frames/s" for w in (1, 2))
                print(f"  {name:11s} {what:34s} {rates}")
        generate_dataset(
            tmp / "gm", num_videos=args.index_videos, seed=0, val_fraction=0.0, test_fraction=0.0
        )
        start = time.perf_counter()
        samples = read_groundmore(tmp / "gm", "train.json")
        elapsed = time.perf_counter() - start
        print(
            f"index {args.index_videos} GroundMoRe-format videos ({len(samples)} questions): {elapsed:.2f} s"
        )
        dataset = build_dataset(
            DatasetSpec(format="groundmore", root=str(tmp / "gm"), meta="train.json"), num_frames=8, seed=0
        )
        start = time.perf_counter()
        for i in range(200):
            dataset[i]
        per_example = (time.perf_counter() - start) / 200
        print(f"synthetic 64x64 TrainingExample (T=8, no preprocessing): {per_example * 1000:.1f} ms each")
    return 0


if __name__ == "__main__":
    sys.exit(main())
