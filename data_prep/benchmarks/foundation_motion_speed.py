"""Clips per minute of the auto-labelling pipeline on CPU, with the per-stage breakdown.

    python -m data_prep.benchmarks.foundation_motion_speed [--videos 8] [--size 96] [--workers 1] [--threads 1] [--out DIR]

Generates ``--videos`` synthetic moving-shape mp4s (5-6 s at 6 fps) and runs the pipeline on them in
two settings: ``tiny models`` (tiny random OWLv2 at frame 0 and every 10 frames over a 6-name
vocabulary, tiny random SAM2 tracking, up to ``--max-objects`` objects, rule-based QA) and ``rule-based``
(colour-blob proposals + the colour tracker, no neural model). Prints clips/minute (model loading
excluded) and the mean seconds per clip of every stage; writes the numbers to ``<out>/speed.json``.
The tiny models' cost says little about real models (SAM2.1-L on a GPU): it measures the pipeline's
own overhead (decoding, gating, RLE, facts, QA, writing) and the per-frame/per-object structure.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from data_prep.foundation_motion.config import PipelineConfig
from data_prep.foundation_motion.pipeline import STAGES
from data_prep.foundation_motion.run import parse_args, run
from data_prep.foundation_motion.sample_videos import write_scene_video
from data_prep.foundation_motion.tiny_models import build_tiny_models


def _settings(models: Path, max_objects: int) -> dict[str, PipelineConfig]:
    facts = {"speed_high": 0.02, "speed_low": 0.01}
    return {
        "tiny models": PipelineConfig.tiny(
            models, detect={"proposals": "vocabulary", "max_objects": max_objects}, facts=facts
        ),
        "rule-based": PipelineConfig.tiny(
            models,
            detect={"detector": "none", "max_objects": max_objects},
            track={"tracker": "colour"},
            facts=facts,
        ),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--videos", type=int, default=8)
    p.add_argument("--size", type=int, default=96)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--max-objects", type=int, default=4)
    p.add_argument(
        "--threads", type=int, default=1, help="torch threads of the in-process run (workers split the cores)"
    )
    p.add_argument("--out", default=None)
    args = p.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    root = Path(args.out or tempfile.mkdtemp(prefix="fm_speed_"))
    for i in range(args.videos):
        write_scene_video(root / "videos" / f"v{i:03d}.mp4", 0, i, size=args.size)
    models = build_tiny_models(root / "models")
    results = {}
    for name, config in _settings(models, args.max_objects).items():
        out = root / name.replace(" ", "_")
        t = time.perf_counter()
        manifest = run(
            parse_args(
                [
                    "--videos",
                    str(root / "videos"),
                    "--out",
                    str(out),
                    "--workers",
                    str(args.workers),
                    "--no-progress",
                ]
            ),
            config,
        )
        results[name] = {
            "wall_s": round(time.perf_counter() - t, 2),
            "clips_per_minute": manifest["timing"]["clips_per_minute"],
            "stage_mean_s": manifest["timing"]["stage_mean_s"],
            "counts": {
                k: manifest["counts"][k]
                for k in ("clips_ok", "frames", "objects", "qas_kept", "qas_rejected")
            },
        }
    print(
        f"{args.videos} clips of {args.size}x{args.size}, {args.workers} worker(s), {args.threads} torch thread(s)"
    )
    print(f"{'setting':<12} {'clips/min':>9} " + " ".join(f"{s:>7}" for s in STAGES) + "   (mean s per clip)")
    for name, r in results.items():
        stages = " ".join(f"{r['stage_mean_s'][s]:>7.3f}" for s in STAGES)
        print(f"{name:<12} {r['clips_per_minute']:>9.1f} {stages}   {r['counts']}")
    (root / "speed.json").write_text(json.dumps(results, indent=2) + "\n")
    print(f"written {root / 'speed.json'}")


if __name__ == "__main__":
    main()
