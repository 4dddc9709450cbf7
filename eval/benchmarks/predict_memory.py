"""Peak memory of `mora predict` against video length: a 300- and a 3,000-frame video, same frame size.

    python eval/benchmarks/predict_memory.py [--frames 300 3000] [--size 256] [--engine sam2] [--threads 1]

Writes moving-shape mp4s (256 x 256, 30 fps) and a tiny random checkpoint into a temporary folder, runs
``mora predict`` on each video in its own process (each measured by a wrapper process: the peak resident set
size of its child, from ``getrusage``), and prints peak RSS, wall time, frames/s and the stage timings
from ``prediction.json`` (`predict_speed` splits them by stage for the tiny and small presets), then the ratio of the longest video's peak RSS to the shortest's (target: at most
1.5: frames are streamed, so memory must not grow with the number of frames).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
WRAPPER = (
    "import resource, subprocess, sys; r = subprocess.run(sys.argv[1:]); "
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(r.returncode)"
)


def write_video(path: Path, num_frames: int, size: int, fps: int = 30) -> Path:
    """Two squares moving across a noisy background (H.264)."""
    import av

    rng = np.random.default_rng(0)
    background = rng.integers(0, 50, (size, size, 3), dtype=np.uint8)
    container = av.open(str(path), "w")
    stream = container.add_stream("libx264", rate=Fraction(fps))
    stream.width = stream.height = size
    stream.pix_fmt = "yuv420p"
    side = size // 8
    for i in range(num_frames):
        frame = background.copy()
        x = int((size - side) * (0.5 + 0.5 * np.sin(i / 40)))
        y = int((size - side) * (0.5 + 0.5 * np.cos(i / 55)))
        frame[size // 4 : size // 4 + side, x : x + side] = (230, 40, 40)
        frame[y : y + side, size // 2 : size // 2 + side] = (40, 220, 60)
        for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)
    container.close()
    return path


def run_predict(model: Path, video: Path, out: Path, threads: int, extra: list[str]) -> tuple[int, float]:
    """(peak RSS in MiB, wall seconds) of one ``mora predict`` process."""
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "OMP_NUM_THREADS": str(threads),
        "PYTHONPATH": str(REPO),
    }
    command = [sys.executable, "-m", "mora.cli", "predict", "--model", str(model), "--video", str(video)]
    command += ["--question", "Which object moves to the right?", "--out", str(out), "--mode", "template"]
    command += ["--quiet", *extra]
    start = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-c", WRAPPER, *command], cwd=REPO, env=env, capture_output=True, text=True
    )
    wall = time.perf_counter() - start
    if result.returncode != 0:
        sys.exit(f"mora predict failed on {video}:\n{result.stderr[-2000:]}")
    return int(result.stdout.strip().splitlines()[-1]) // 1024, wall


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of both `mora predict` benchmarks: video lengths and size, threads, work folder, extras."""
    parser.add_argument("--frames", type=int, nargs="+", default=[300, 3000])
    parser.add_argument("--size", type=int, default=256, help="frame width and height of the videos")
    parser.add_argument("--threads", type=int, default=1, help="torch/OpenMP threads of each run")
    parser.add_argument(
        "--keep", default=None, help="work in this folder and keep it (default: a temp folder)"
    )
    parser.add_argument("extra", nargs="*", help="more `mora predict` options, after --")


def work_folder(keep: str | None, prefix: str) -> Path:
    work = Path(keep) if keep else Path(tempfile.mkdtemp(prefix=prefix))
    work.mkdir(parents=True, exist_ok=True)
    return work


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_run_arguments(parser)
    parser.add_argument("--engine", choices=("sam2", "sam"), default="sam2")
    args = parser.parse_args()
    work = work_folder(args.keep, "predict_memory_")
    model = work / f"tiny_{args.engine}"
    if not (model / "config.json").is_file():
        subprocess.run(
            [
                sys.executable,
                "-m",
                "mora.cli",
                "init-tiny",
                "--out",
                str(model),
                "--mask-engine",
                args.engine,
            ],
            cwd=REPO,
            env={**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"},
            check=True,
            capture_output=True,
        )
    rows = []
    for n in args.frames:
        video = work / f"shapes_{n}.mp4"
        if not video.is_file():
            write_video(video, n, args.size)
        out = work / f"pred_{n}"
        rss, wall = run_predict(model, video, out, args.threads, args.extra)
        record = json.loads((out / "prediction.json").read_text())
        assert len(record["masks"]) == n, (len(record["masks"]), n)
        rows.append((n, rss, wall, record["timings"]))
    print(
        f"tiny {args.engine} model, {args.size}x{args.size} frames, {args.threads} thread(s); work folder {work}"
    )
    print(f"{'frames':>7} {'peak RSS':>9} {'wall s':>7} {'frames/s':>9}  stages (s)")
    for n, rss, wall, stages in rows:
        print(f"{n:>7} {rss:>7} MiB {wall:>7.1f} {n / wall:>9.1f}  {stages}")
    ratio = rows[-1][1] / rows[0][1]
    print(f"peak RSS ratio {rows[-1][0]} / {rows[0][0]} frames: {ratio:.2f} (target <= 1.5)")


if __name__ == "__main__":
    main()
