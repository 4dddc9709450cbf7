"""Running the per-clip pipeline over many videos: in-process, a process pool on one machine, or Ray.

* ``local`` with ``workers=1``: one process, models loaded once.
* ``local`` with ``workers=N``: a spawn-context process pool; every worker loads the models once
  (initializer) and runs whole clips; torch threads are split between workers.
* ``ray``: the same stage functions on Ray (``ray.init(address)``: a local instance by default, a
  cluster with ``--ray-address``). Clip selection/decoding and facts/QA/writing run as Ray tasks (CPU);
  detection + tracking run in a pool of Ray actors that keep the models loaded (``gpus_per_actor``
  GPUs each when there are GPUs). Ray is an optional extra (``pip install -e .[prep]``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context
from pathlib import Path

from data_prep.foundation_motion.config import PipelineConfig
from data_prep.foundation_motion.pipeline import Models, failure_record, process_video

Job = tuple[Path, str]  # (video, clip_id)

_WORKER: dict = {}


def run_local(jobs: list[Job], config: PipelineConfig, out: Path, load_seconds: dict) -> Iterator[dict]:
    models = Models.load(config, out)
    load_seconds.update(models.load_seconds)
    for video, clip_id in jobs:
        yield process_video(video, clip_id, config, models, out)


def _init_worker(config: PipelineConfig, out: Path, threads: int) -> None:
    import torch

    torch.set_num_threads(threads)
    _WORKER["models"] = Models.load(config, out)
    _WORKER["config"], _WORKER["out"] = config, out


def _work(video: Path, clip_id: str) -> dict:
    return process_video(video, clip_id, _WORKER["config"], _WORKER["models"], _WORKER["out"])


def run_pool(
    jobs: list[Job], config: PipelineConfig, out: Path, workers: int, load_seconds: dict
) -> Iterator[dict]:
    threads = max(1, (os.cpu_count() or 1) // workers)
    with ProcessPoolExecutor(
        max_workers=workers,
        mp_context=get_context("spawn"),
        initializer=_init_worker,
        initargs=(config, out, threads),
    ) as pool:
        futures = {pool.submit(_work, video, clip_id): (video, clip_id) for video, clip_id in jobs}
        for future in as_completed(futures):
            video, clip_id = futures[future]
            try:
                yield future.result()
            except Exception as exc:  # a crashed worker process: record and go on
                yield failure_record(out, video, clip_id, "failed", f"{type(exc).__name__}: {exc}", {})


def run_ray(
    jobs: list[Job],
    config: PipelineConfig,
    out: Path,
    workers: int,
    address: str | None,
    gpus_per_actor: float,
    load_seconds: dict,
) -> Iterator[dict]:
    try:
        import ray
    except ImportError as exc:
        raise RuntimeError("the ray executor needs Ray: pip install -e .[prep]") from exc
    from data_prep.foundation_motion import ray_stages

    ray.init(address=address, ignore_reinit_error=True, log_to_driver=False, include_dashboard=False)
    try:
        yield from ray_stages.run(jobs, config, out, workers, gpus_per_actor)
    finally:
        ray.shutdown()
