"""The pipeline's stages as Ray tasks (CPU) and actors (detection + tracking, GPU when available).

Imported only when the Ray executor is chosen. Each clip is a chain: ``clip_task`` (select, decode,
camera gate) -> ``ModelActor.run`` (detect + track; the actor keeps its models loaded) ->
``finish_task`` (facts, QA with the configured backend, outputs). Every step returns instead of
raising, so one bad video never fails the run.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import ray

from data_prep.foundation_motion.clips import ClipSkipped
from data_prep.foundation_motion.config import PipelineConfig
from data_prep.foundation_motion.pipeline import (
    Models,
    failure_record,
    stage_clip,
    stage_finish,
    stage_models,
)

_BACKENDS: dict = {}


@ray.remote(num_cpus=1)
def clip_task(video: Path, clip_id: str, config: PipelineConfig, out: Path):
    t = time.perf_counter()
    try:
        clip = stage_clip(video, clip_id, config)
        return {"clip": clip, "timings": {"clip": time.perf_counter() - t}}
    except ClipSkipped as exc:
        return failure_record(out, video, clip_id, "skipped", str(exc), {"clip": time.perf_counter() - t})
    except Exception as exc:
        return failure_record(
            out, video, clip_id, "failed", f"{type(exc).__name__}: {exc}", {"clip": time.perf_counter() - t}
        )


@ray.remote
class ModelActor:
    def __init__(self, config: PipelineConfig, out: Path) -> None:
        self.config, self.out = config, out
        self.models = Models.load(config, out, gpu=True, cpu=False)

    def run(self, item: dict, video: Path, clip_id: str):
        if "clip" not in item:
            return item
        try:
            detections, tracks, timings = stage_models(item["clip"], self.config, self.models)
            return {
                **item,
                "detections": detections,
                "tracks": tracks,
                "timings": {**item["timings"], **timings},
            }
        except ClipSkipped as exc:
            return failure_record(self.out, video, clip_id, "skipped", str(exc), item["timings"])
        except Exception as exc:
            return failure_record(
                self.out, video, clip_id, "failed", f"{type(exc).__name__}: {exc}", item["timings"]
            )


@ray.remote(num_cpus=1)
def finish_task(item: dict, video: Path, clip_id: str, config: PipelineConfig, out: Path):
    if "clip" not in item:
        return item
    try:
        if "backend" not in _BACKENDS:  # one backend (LLM client, cache) per Ray worker process
            _BACKENDS["backend"] = Models.load(config, out, gpu=False, cpu=True).backend
        return stage_finish(
            item["clip"],
            item["detections"],
            item["tracks"],
            item["timings"],
            config,
            _BACKENDS["backend"],
            out,
        )
    except Exception as exc:
        return failure_record(out, video, clip_id, "failed", f"{type(exc).__name__}: {exc}", item["timings"])


def run(
    jobs: list[tuple[Path, str]], config: PipelineConfig, out: Path, workers: int, gpus_per_actor: float
) -> Iterator[dict]:
    n = max(1, workers)
    # An actor holds its CPU for its lifetime: reserve one per actor only when the tasks keep at least
    # one CPU, else the tasks would wait for ever (e.g. 2 actors on a 2-CPU machine).
    actor_cpus = 1.0 if float(ray.cluster_resources().get("CPU", 0)) - n >= 1 else 0.0
    actors = [
        ModelActor.options(num_cpus=actor_cpus, num_gpus=gpus_per_actor).remote(config, out) for _ in range(n)
    ]
    pending = []
    for k, (video, clip_id) in enumerate(jobs):
        clip = clip_task.remote(video, clip_id, config, out)
        tracked = actors[k % len(actors)].run.remote(clip, video, clip_id)
        pending.append(finish_task.remote(tracked, video, clip_id, config, out))
    while pending:
        done, pending = ray.wait(pending, num_returns=1)
        yield ray.get(done[0])
