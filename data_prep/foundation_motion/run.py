"""Command line: raw videos -> ``D/samples.jsonl`` + ``D/manifest.json`` (see data_prep/README.md).

python -m data_prep.foundation_motion --videos V --out D [--llm rule-based|openai|local] [--workers N]
    [--config models.yaml] [--executor local|ray] [--ray-address ADDR] [--retry-failed] [--limit N]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from tqdm import tqdm

from data_prep.foundation_motion.config import QA_BACKENDS, PipelineConfig
from data_prep.foundation_motion.executors import run_local, run_pool, run_ray
from data_prep.foundation_motion.pipeline import (
    build_manifest,
    clip_id_for,
    collect_samples,
    finished,
    list_videos,
)
from mora.utils.io import write_json_atomic
from mora.utils.logging import get_logger, setup_cli_logging

logger = get_logger("data_prep.foundation_motion")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m data_prep.foundation_motion", description=__doc__.split("\n")[0]
    )
    p.add_argument("--videos", required=True, help="a folder of videos (searched recursively) or one video")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument(
        "--llm", choices=QA_BACKENDS, default=None, help="QA backend (default: the config's, rule-based)"
    )
    p.add_argument("--workers", type=int, default=1, help="parallel workers (processes, or Ray model actors)")
    p.add_argument("--config", default=None, help="pipeline YAML (models by Hub id, thresholds)")
    p.add_argument("--executor", choices=("local", "ray"), default="local")
    p.add_argument("--ray-address", default=None, help="Ray cluster address (default: a local Ray instance)")
    p.add_argument("--gpus-per-actor", type=float, default=0.0, help="GPUs per Ray detection/tracking actor")
    p.add_argument("--device", default=None, help="torch device for the models (overrides track.device)")
    p.add_argument("--retry-failed", action="store_true", help="reprocess clips that failed with an error")
    p.add_argument("--limit", type=int, default=None, help="first N videos only")
    p.add_argument("--no-progress", action="store_true")
    return p.parse_args(argv)


def run(args: argparse.Namespace, config: PipelineConfig | None = None) -> dict:
    """Run the pipeline; returns the manifest (also written to ``<out>/manifest.json``)."""
    config = config or (PipelineConfig.from_yaml(args.config) if args.config else PipelineConfig())
    if args.llm:
        config.qa.backend = args.llm
    if args.device:
        config.track.device = args.device
    if args.workers < 1:
        raise ValueError(f"--workers must be >= 1, got {args.workers}")
    root, out = Path(args.videos), Path(args.out)
    if not root.exists():
        raise FileNotFoundError(f"--videos {root} does not exist")
    out.mkdir(parents=True, exist_ok=True)
    videos = list_videos(root)[: args.limit]
    jobs_all = [(v, clip_id_for(v, root)) for v in videos]
    if len({c for _, c in jobs_all}) != len(jobs_all):
        raise ValueError("two videos map to the same clip id")
    summaries, jobs = [], []
    for video, clip_id in jobs_all:
        done = finished(out, clip_id, args.retry_failed)
        (summaries.append(done) if done else jobs.append((video, clip_id)))
    resumed = len(summaries)
    logger.info("%d videos: %d finished earlier, %d to process", len(jobs_all), resumed, len(jobs))
    load_seconds: dict = {}
    start = time.perf_counter()
    if not jobs:
        results = iter(())
    elif args.executor == "ray":
        results = run_ray(
            jobs, config, out, args.workers, args.ray_address, args.gpus_per_actor, load_seconds
        )
    elif args.workers > 1:
        results = run_pool(jobs, config, out, args.workers, load_seconds)
    else:
        results = run_local(jobs, config, out, load_seconds)
    bar = tqdm(total=len(jobs), desc="clips", unit="clip", disable=args.no_progress or not jobs)
    for result in results:
        summaries.append(result)
        bar.update(1)
        bar.set_postfix(
            ok=sum(s["status"] == "ok" for s in summaries),
            failed=sum(s["status"] == "failed" for s in summaries),
        )
    bar.close()
    elapsed = time.perf_counter() - start
    num_samples = collect_samples(out, [c for _, c in jobs_all])
    executor = "ray" if args.executor == "ray" else ("pool" if args.workers > 1 else "local")
    manifest = build_manifest(
        summaries,
        config=config,
        elapsed=elapsed,
        executor=executor,
        workers=args.workers,
        processed=len(jobs),
        processed_ok=sum(1 for s in summaries[resumed:] if s["status"] == "ok"),
        resumed=resumed,
        num_samples=num_samples,
        load_seconds=load_seconds,
    )
    write_json_atomic(out / "manifest.json", manifest)
    c = manifest["counts"]
    logger.info(
        "%d clips ok, %d skipped, %d failed; %d samples -> %s",
        c["clips_ok"],
        c["skipped"],
        c["failed"],
        num_samples,
        out,
    )
    return manifest


def main(argv: list[str] | None = None) -> int:
    setup_cli_logging()
    run(parse_args(argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
