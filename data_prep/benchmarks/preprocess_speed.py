"""Per-frame cost of the mask-engine preprocessing in `mora.processing.image_ops` at 720p.

    OMP_NUM_THREADS=1 python -m data_prep.benchmarks.preprocess_speed [--frames 8] [--repeats 5]

Times, on a clip of T textured 1280x720 uint8 frames, `frames_to_tensor` ("after") against the former
float pipeline kept here as `_frames_to_tensor_float` ("before": uint8 -> float -> antialiased
bilinear -> normalise -> copy into a zeroed canvas), for 720p -> 1024 and 720p -> 64 (longest_pad),
plus a PIL bilinear resize for scale, and `masks_to_canvas` / `logits_to_frames` against their former
float versions. Prints ms/frame (best of the repeats) and frames/s.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from mora.processing.image_ops import ResizeGeometry, frames_to_tensor, logits_to_frames, masks_to_canvas

H, W = 720, 1280
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def _frames_to_tensor_float(frames: np.ndarray, size: int) -> torch.Tensor:
    """The former implementation (longest_pad), for the "before" column."""
    geometry = ResizeGeometry.compute(frames.shape[1:3], size, "longest_pad")
    h, w = geometry.resized_size
    mean, std = torch.tensor(MEAN).view(1, 3, 1, 1), torch.tensor(STD).view(1, 3, 1, 1)
    out = torch.zeros(len(frames), 3, size, size)
    for start in range(0, len(frames), 16):
        chunk = torch.from_numpy(frames[start : start + 16]).permute(0, 3, 1, 2).float() / 255.0
        chunk = F.interpolate(chunk, size=(h, w), mode="bilinear", align_corners=False, antialias=True)
        out[start : start + len(chunk), :, :h, :w] = (chunk - mean) / std
    return out


def _masks_to_canvas_float(masks: np.ndarray, geometry: ResizeGeometry) -> torch.Tensor:
    h, w = geometry.resized_size
    values = F.interpolate(torch.from_numpy(masks).float().unsqueeze(1), size=(h, w), mode="nearest-exact")
    return F.pad(values, (0, geometry.canvas - w, 0, geometry.canvas - h)).squeeze(1)


def _logits_to_frames_full(logits: torch.Tensor, geometry: ResizeGeometry) -> torch.Tensor:
    h, w = geometry.resized_size
    values = F.interpolate(logits.unsqueeze(1), size=(geometry.canvas,) * 2, mode="bilinear")
    return F.interpolate(values[..., :h, :w], size=geometry.orig_size, mode="bilinear").squeeze(1)


def _frames(num_frames: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:H, 0:W]
    base = np.stack([x % 256, y % 256, (x ^ y) % 256], -1)
    return np.stack(
        [(base + 3 * t + rng.integers(0, 16, base.shape)) % 256 for t in range(num_frames)]
    ).astype(np.uint8)


def _ms_per_frame(fn: Callable[[], object], num_frames: int, repeats: int) -> float:
    fn()  # warm-up
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return 1000.0 * best / num_frames


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--frames", type=int, default=8, help="frames per clip (T)")
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats; the best is reported")
    args = parser.parse_args()
    T, repeats = args.frames, args.repeats
    frames = _frames(T)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), T={T}, best of {repeats}, 720p input"
    )

    def row(name: str, before: Callable[[], object] | None, after: Callable[[], object]) -> None:
        after_ms = _ms_per_frame(after, T, repeats)
        text = f"  after {after_ms:7.2f} ms/frame ({1000 / after_ms:7.1f} frames/s)"
        if before is not None:
            before_ms = _ms_per_frame(before, T, repeats)
            text = f"  before {before_ms:7.2f} ms/frame ({1000 / before_ms:6.1f} frames/s)" + text
            text += f"  x{before_ms / after_ms:.1f}"
        print(f"{name:<34}{text}")

    for size in (1024, 64):
        geometry = ResizeGeometry.compute((H, W), size, "longest_pad")
        h, w = geometry.resized_size
        row(
            f"frames_to_tensor 720p -> {size}",
            lambda size=size: _frames_to_tensor_float(frames, size),
            lambda size=size: frames_to_tensor(frames, size, "longest_pad", MEAN, STD),
        )
        row(
            f"  (PIL bilinear resize only, {w}x{h})",
            None,
            lambda w=w, h=h: [Image.fromarray(f).resize((w, h), Image.BILINEAR) for f in frames],
        )
    geometry = ResizeGeometry.compute((H, W), 1024, "longest_pad")
    masks = np.random.default_rng(1).random((T, H, W)) > 0.5
    row(
        "masks_to_canvas 720p -> 1024",
        lambda: _masks_to_canvas_float(masks, geometry),
        lambda: masks_to_canvas(masks, geometry),
    )
    logits = torch.randn(T, 256, 256)
    row(
        "logits_to_frames 256 -> 720p",
        lambda: _logits_to_frames_full(logits, geometry),
        lambda: logits_to_frames(logits, geometry),
    )


if __name__ == "__main__":
    main()
