"""Speed of J&F: vectorised metrics vs the frame-by-frame reference, and GroundMoRe scoring time.

    OMP_NUM_THREADS=1 python eval/benchmarks/metrics_speed.py [--frames 60] [--questions 1000]

Prints (1) frames/s (median of --repeats) of the fast J+F and F paths (one thread; the kernels are
compiled before timing) and of the reference algorithm (cv2.dilate with a skimage disk per frame, as
davis2017-evaluation) on 480x854 and 720x1280 masks, their ratio and the largest difference between
the two (must be 0 up to 1e-12); (2) the peak memory of scoring 10 and 100
videos in one process; (3) the wall time to score N GroundMoRe-protocol questions (20 frames at 720p
each, PNG decoding included) from a synthetic prediction folder, with 1 and 2 worker processes.
Masks are moving ellipses; predictions are shifted / dilated / noisy copies, so boundaries are
realistic rather than salt-and-pepper.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from mora.evaluation import groundmore  # noqa: E402
from mora.evaluation.predictions import encode_png  # noqa: E402
from mora.metrics import boundary_f, jaccard_and_boundary_f  # noqa: E402
from mora.metrics.reference import f_measure_frame, jaccard_and_f_per_frame  # noqa: E402


def synthetic_pair(T: int, H: int, W: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``gt, pred`` uint8 ``[T, H, W]``: a moving ellipse and an imperfect prediction of it."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:H, :W]
    gt = np.zeros((T, H, W), np.uint8)
    pred = np.zeros((T, H, W), np.uint8)
    cy, cx = rng.uniform(0.3, 0.7) * H, rng.uniform(0.3, 0.7) * W
    a, b = rng.uniform(0.1, 0.3) * H, rng.uniform(0.1, 0.3) * W
    vy, vx = rng.uniform(-2, 2), rng.uniform(-4, 4)
    for t in range(T):
        y, x = cy + vy * t, cx + vx * t
        gt[t] = ((yy - y) / a) ** 2 + ((xx - x) / b) ** 2 <= 1
        dy, dx, s = rng.normal(0, 4), rng.normal(0, 6), rng.uniform(0.85, 1.15)
        pred[t] = ((yy - y - dy) / (a * s)) ** 2 + ((xx - x - dx) / (b * s)) ** 2 <= 1
        if t % 5 == 0:  # a spurious blob now and then
            pred[t, int(0.1 * H) : int(0.1 * H) + 20, int(0.8 * W) : int(0.8 * W) + 30] = 1
    return gt, pred


def bench_metrics(frames: int, repeats: int) -> None:
    print("== metric throughput (single process) ==")
    print(f"cv2 threads: {cv2.getNumThreads()}, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}")
    jaccard_and_boundary_f(*synthetic_pair(2, 48, 64, seed=0))  # compile the kernels (first use only)
    for H, W in ((480, 854), (720, 1280)):
        gt, pred = synthetic_pair(frames, H, W, seed=H)
        # fast and reference interleaved, so both see the same load from other processes; medians
        times = np.array(
            [
                [
                    _timed(fn, gt, pred)
                    for fn in (jaccard_and_boundary_f, boundary_f, jaccard_and_f_per_frame, _reference_f)
                ]
                for _ in range(repeats)
            ]
        )
        fast_jf, fast_f, ref_jf, ref_f = np.median(times, axis=0)
        j, f = jaccard_and_boundary_f(gt, pred)
        jr, fr = jaccard_and_f_per_frame(gt, pred)
        diff = max(np.abs(j - jr).max(), np.abs(f - fr).max())
        print(
            f"{H}x{W}: J+F fast {frames / fast_jf:8.0f} fr/s  reference {frames / ref_jf:6.0f} fr/s  "
            f"ratio {ref_jf / fast_jf:5.1f}x | F only fast {frames / fast_f:8.0f} fr/s  reference "
            f"{frames / ref_f:6.0f} fr/s  ratio {ref_f / fast_f:5.1f}x | max |diff| {diff:.1e}"
        )


def _timed(fn, *args, **kwargs) -> float:
    t0 = time.perf_counter()
    fn(*args, **kwargs)
    return time.perf_counter() - t0


def _reference_f(gt: np.ndarray, pred: np.ndarray) -> list[float]:
    return [f_measure_frame(p, g) for g, p in zip(gt, pred)]


def bench_memory() -> None:
    print("== peak memory while scoring videos one after another (36 frames at 480x854 each) ==")
    gt, pred = synthetic_pair(36, 480, 854, seed=0)
    for n_videos in (10, 100):
        tracemalloc.start()
        for _ in range(n_videos):
            jaccard_and_boundary_f(gt, pred)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        print(f"{n_videos:4d} videos: peak traced allocations {peak / 2**20:6.1f} MiB")


def make_groundmore_fixture(root: Path, n_questions: int, per_video: int = 20) -> tuple[Path, Path]:
    """GroundMoRe-format data (720p, 40 frames per clip) + a prediction folder for every question."""
    H, W, N = 720, 1280, 40
    n_videos = (n_questions + per_video - 1) // per_video
    pred_dir = root / "pred"
    videos = {}
    idx = groundmore.sample_indices(N)
    for v in range(n_videos):
        vid = f"vid{v:04d}_0010_0020"
        vdir = root / "annotations" / vid
        (vdir / "images").mkdir(parents=True)
        (vdir / "masks").mkdir()
        gt, pred = synthetic_pair(N, H, W, seed=v)
        Image.fromarray(np.zeros((H, W, 3), np.uint8)).save(vdir / "images" / "frame_000000.jpg")
        for i in range(1, N):  # frame files only need to exist for listing; 1x1 placeholders are enough
            (vdir / "images" / f"frame_{i:06d}.jpg").write_bytes(b"")
        for i in range(6, 30):
            (vdir / "masks" / f"frame_{i:06d}.png").write_bytes(encode_png(gt[i]))
        shared = root / "shared_pred" / vid
        shared.mkdir(parents=True)
        for i in idx:
            (shared / f"frame_{i:06d}.png").write_bytes(encode_png(pred[i]))
        questions = {}
        for q in range(min(per_video, n_questions - v * per_video)):
            qdir = pred_dir / vid / str(q)
            qdir.mkdir(parents=True)
            for png in shared.iterdir():
                os.link(png, qdir / png.name)  # same bytes, decoded again for each question
            questions[str(q)] = {
                "question": "q",
                "obj_id": "1",
                "q_type": "Causal",
                "action_start": "00:11",
                "action_end": "00:15",
            }
        videos[vid] = {"questions": questions}
    meta = root / "test.json"
    meta.write_text(json.dumps({"videos": videos}))
    return meta, pred_dir


def bench_groundmore(n_questions: int) -> None:
    print(f"== scoring {n_questions} GroundMoRe-protocol questions (20 frames at 720x1280, PNGs decoded) ==")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        meta, pred_dir = make_groundmore_fixture(root, n_questions)
        for workers in (1, 2):
            t = _timed(
                groundmore.evaluate,
                root,
                meta,
                root / f"out{workers}",
                pred_dir=pred_dir,
                num_workers=workers,
            )
            print(f"workers={workers}: {t:6.1f} s total, {1e3 * t / n_questions:6.1f} ms per question")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--frames", type=int, default=60, help="frames per resolution for the metric timing")
    parser.add_argument(
        "--repeats",
        type=int,
        default=5,
        help="repeats of every timing (fast and reference interleaved); the median is reported",
    )
    parser.add_argument("--questions", type=int, default=1000, help="GroundMoRe questions to score (0: skip)")
    args = parser.parse_args()
    bench_metrics(args.frames, args.repeats)
    bench_memory()
    if args.questions > 0:
        bench_groundmore(args.questions)


if __name__ == "__main__":
    main()
