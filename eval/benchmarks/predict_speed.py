"""`mora predict` speed on CPU per stage, and peak RSS against video length, for the tiny and small presets.

    OMP_NUM_THREADS=1 python eval/benchmarks/predict_speed.py [--presets tiny small] [--engines sam2 sam]
        [--frames 300 3000] [--size 256] [--threads 1] [--json OUT] [--keep DIR] [-- PREDICT OPTIONS]

Writes random-weight checkpoints of each preset and mask engine (`mora.presets.tiny`, `mora.presets.small`)
and moving-shape mp4s (``--size`` px, 30 fps) into a temporary folder, runs ``mora predict`` once per setting
in its own process (peak RSS of that process from ``getrusage``, as `predict_memory` does) and prints a
Markdown table: frames/s over the whole ``predict_video`` call, and the seconds and frames/s of each stage
recorded in ``prediction.json``'s ``timings`` (decode, backbone + language model, mask engine, writing of
RLE / PNGs / JSON, overlay rendering). Every run passes ``--no-gate`` (every frame goes through the mask
engine, whatever the random span head says) and ``--mode template``. The load average is printed with the
table: on a shared machine the speeds are lower bounds.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from eval.benchmarks.predict_memory import (  # noqa: E402
    add_run_arguments,
    run_predict,
    work_folder,
    write_video,
)
from mora.inference.timing import STAGES  # noqa: E402

PRESETS = ("tiny", "small")
ENGINES = ("sam2", "sam")


def write_checkpoint(preset: str, engine: str, out: Path) -> Path:
    """A random-weight ``preset`` checkpoint with the ``engine`` mask engine (kept if ``out`` has one)."""
    if (out / "config.json").is_file():
        return out
    from mora import presets
    from mora.cli import build_random_model

    config = presets.tiny("llava", engine) if preset == "tiny" else presets.small(engine)
    build_random_model(config).save_pretrained(out)
    return out


def measure(model: Path, video: Path, out: Path, frames: int, threads: int, extra: list[str]) -> dict:
    """One ``mora predict`` run: peak RSS, wall time and ``prediction.json``'s stage timings."""
    rss, wall = run_predict(model, video, out, threads, ["--no-gate", *extra])
    record = json.loads((out / "prediction.json").read_text())
    if len(record["masks"]) != frames:
        sys.exit(f"{out}: {len(record['masks'])} masks for {frames} frames")
    return {"frames": frames, "peak_rss_mib": rss, "wall_s": round(wall, 3), "timings": record["timings"]}


def table(rows: list[dict]) -> str:
    """Markdown: preset, engine, frames, frames/s, each stage's seconds (frames/s), peak RSS."""
    head = ["preset", "engine", "frames", "wall s", "frames/s", *STAGES, "peak RSS"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        n, t = row["frames"], row["timings"]
        stages = [f"{t[s]:.2f} s ({n / t[s]:,.0f}/s)" if t[s] > 0 else "0" for s in STAGES]
        cells = [row["preset"], row["engine"], f"{n:,}", f"{row['wall_s']:.1f}", f"{n / t['total']:.1f}"]
        lines.append("| " + " | ".join([*cells, *stages, f"{row['peak_rss_mib']} MiB"]) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", choices=PRESETS, default=list(PRESETS))
    parser.add_argument("--engines", nargs="+", choices=ENGINES, default=list(ENGINES))
    add_run_arguments(parser)
    parser.add_argument("--json", default=None, help="also write the rows (and the load averages) here")
    args = parser.parse_args()
    work = work_folder(args.keep, "predict_speed_")
    load_before = os.getloadavg()
    rows = []
    for preset in args.presets:
        for engine in args.engines:
            model = write_checkpoint(preset, engine, work / f"{preset}_{engine}")
            for n in args.frames:
                video = work / f"shapes_{n}_{args.size}.mp4"
                if not video.is_file():
                    write_video(video, n, args.size)
                out = work / f"pred_{preset}_{engine}_{n}"
                row = {"preset": preset, "engine": engine}
                rows.append({**row, **measure(model, video, out, n, args.threads, args.extra)})
                print(f"{preset} {engine} {n} frames: {rows[-1]}", flush=True)
    load_after = os.getloadavg()
    print(
        f"\n{args.size}x{args.size} frames, {args.threads} thread(s), `mora predict --no-gate --mode template "
        f"{' '.join(args.extra)}`; load average (1/5/15 min) before {load_before}, after {load_after}; "
        f"work folder {work}\n"
    )
    print(table(rows))
    if args.json:
        payload = {"load_average": {"before": load_before, "after": load_after}, "rows": rows}
        Path(args.json).write_text(json.dumps(payload, indent=1))


if __name__ == "__main__":
    main()
