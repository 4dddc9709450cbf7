"""The per-clip pipeline: stage functions, per-clip outputs, resume, and the final samples.jsonl/manifest.

Layout of ``--out D``:

    D/clips/<clip_id>/00000.jpg ...   the clip's frames (what samples.jsonl points at)
    D/work/<clip_id>.json             per-clip record: status, clip info, every stage's output, timings
    D/samples.jsonl                   the unified format (mora/data/readers/jsonl.py)
    D/manifest.json                   counts, per-stage timing, skipped and failed videos, config

A clip is finished when its ``work/<clip_id>.json`` exists (written atomically after its frames);
reruns skip finished clips (``retry_failed`` reruns those that failed with an error).
"""

from __future__ import annotations

import io
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from data_prep.foundation_motion.clips import Clip, ClipSkipped, load_clip
from data_prep.foundation_motion.config import PipelineConfig
from data_prep.foundation_motion.detect import Detections, GroundingDinoDetector, Owlv2Detector, run_detection
from data_prep.foundation_motion.facts import ClipFacts, compute_facts
from data_prep.foundation_motion.llm import build_backend
from data_prep.foundation_motion.qa import QA, verify
from data_prep.foundation_motion.track import ColourTracker, Sam2Tracker, Track, run_tracking
from mora.utils.io import atomic_path, write_json_atomic, write_text_atomic
from mora.utils.logging import get_logger

logger = get_logger("data_prep.foundation_motion")

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v")
STAGES = ("clip", "detect", "track", "facts", "qa", "write")
SOURCE = "foundation_motion"


def list_videos(root: str | os.PathLike) -> list[Path]:
    root = Path(root)
    if root.is_file():
        return [root]
    return sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES)


def clip_id_for(video: Path, root: Path) -> str:
    rel = video.relative_to(root) if root.is_dir() else Path(video.name)
    return "__".join(rel.with_suffix("").parts).replace(" ", "_")


@dataclass
class Models:
    """The loaded models of one worker (or Ray actor); built once, used for every clip."""

    config: PipelineConfig
    out_dir: Path
    detector: Owlv2Detector | None = None
    tracker: object = None
    backend: object = None
    namer: object = None  # detect.proposals: vlm
    load_seconds: dict = field(default_factory=dict)

    @classmethod
    def load(
        cls, config: PipelineConfig, out_dir: str | os.PathLike, *, gpu: bool = True, cpu: bool = True
    ) -> Models:
        models = cls(config, Path(out_dir))
        t = time.perf_counter()
        if gpu and config.detect.detector == "owlv2":
            models.detector = Owlv2Detector.from_pretrained(config.models.detector, config.track.device)
        elif gpu and config.detect.detector == "grounding-dino":
            models.detector = GroundingDinoDetector.from_pretrained(
                config.models.grounding_dino, config.track.device
            )
        if gpu and config.detect.proposals == "vlm":
            from data_prep.foundation_motion.llm import OpenAIBackend

            models.namer = OpenAIBackend(config, Path(out_dir) / "llm_cache")
        if gpu:
            if config.track.tracker == "sam2":
                models.tracker = Sam2Tracker.from_pretrained(
                    config.models.tracker, config.track.device, config.track.dtype
                )
            elif config.track.tracker == "colour":
                models.tracker = ColourTracker(config.track)
            else:
                raise ValueError(f"track.tracker must be sam2 or colour, got {config.track.tracker!r}")
        if cpu:
            models.backend = build_backend(config, out_dir)
        models.load_seconds["models"] = round(time.perf_counter() - t, 3)
        return models


# ------------------------------------------------------------------------------------------- stages


def stage_clip(video: Path, clip_id: str, config: PipelineConfig) -> Clip:
    return load_clip(video, config.clip, config.camera, clip_id=clip_id)


def stage_models(clip: Clip, config: PipelineConfig, models: Models) -> tuple[Detections, list[Track], dict]:
    """Detection and tracking (the GPU stages)."""
    timings = {}
    t = time.perf_counter()
    detections = run_detection(clip.frames, config.detect, models.detector, models.namer)
    timings["detect"] = time.perf_counter() - t
    t = time.perf_counter()
    tracks = run_tracking(clip.frames, detections, config.detect, config.track, models.tracker)
    timings["track"] = time.perf_counter() - t
    return detections, tracks, timings


def stage_qa(facts: ClipFacts, backend) -> tuple[list[QA], list[QA]]:
    """Generate with the backend, keep what passes ``verify``; returns (kept, rejected)."""
    kept, rejected, seen = [], [], set()
    for qa in backend.generate(facts):
        qa.problems = verify(qa, facts)
        if not qa.problems and qa.question in seen:
            qa.problems = ["duplicate question"]
        (rejected if qa.problems else kept).append(qa)
        seen.add(qa.question)
    return kept, rejected


def sample_records(
    clip: Clip, tracks: list[Track], qas: list[QA], frames_rel: str, stems: list[str]
) -> list[dict]:
    """samples.jsonl records: the answer object's mask on every frame (empty where it is not visible)."""
    by_id = {t.obj_id: t for t in tracks}
    H, W = clip.size
    out = []
    for k, qa in enumerate(qas):
        track = by_id[qa.obj_id]
        out.append(
            {
                "id": f"{clip.clip_id}_{k:03d}",
                "source": SOURCE,
                "video": frames_rel,
                "frames": stems,
                "frame_ext": ".jpg",
                "fps": clip.fps,
                "height": H,
                "width": W,
                "question": qa.question,
                "answer": qa.answer,
                "q_type": qa.q_type,
                "obj_ids": [qa.obj_id],
                "span": qa.span,
                "masks": {str(i): rle for i, rle in enumerate(track.masks)},
                "choices": qa.choices,
                "correct_choice": qa.correct_choice,
            }
        )
    return out


def write_frames(clip: Clip, folder: Path) -> list[str]:
    stems = [f"{i:05d}" for i in range(clip.num_frames)]
    with atomic_path(folder) as tmp:
        tmp.mkdir(parents=True)
        for stem, frame in zip(stems, clip.frames):
            buf = io.BytesIO()
            Image.fromarray(frame).save(buf, format="JPEG", quality=95)
            (tmp / f"{stem}.jpg").write_bytes(buf.getvalue())
    return stems


def stage_finish(
    clip: Clip,
    detections: Detections,
    tracks: list[Track],
    timings: dict,
    config: PipelineConfig,
    backend,
    out: Path,
) -> dict:
    """Facts, QA and the clip's outputs; returns the per-clip record (also written to work/)."""
    t = time.perf_counter()
    camera = clip.camera_steps if "camera_motion" in clip.tags else None
    facts = compute_facts(clip.clip_id, tracks, clip.fps, clip.size, config.facts, camera)
    timings["facts"] = time.perf_counter() - t
    t = time.perf_counter()
    kept, rejected = stage_qa(facts, backend)
    timings["qa"] = time.perf_counter() - t
    t = time.perf_counter()
    stems = write_frames(clip, out / "clips" / clip.clip_id)
    samples = sample_records(clip, tracks, kept, f"clips/{clip.clip_id}", stems)
    timings["write"] = time.perf_counter() - t
    record = {
        "status": "ok",
        "clip": clip.info(),
        "timings": {k: round(v, 4) for k, v in timings.items()},
        "detections": detections.to_dict(),
        "tracks": [tr.to_dict() for tr in tracks],
        "facts": facts.to_dict(),
        "qas": [q.to_dict() for q in kept],
        "rejected": [q.to_dict() for q in rejected],
        "samples": samples,
    }
    write_text_atomic(work_path(out, clip.clip_id), json.dumps(record, separators=(",", ":")) + "\n")
    return summary(record)


def work_path(out: Path, clip_id: str) -> Path:
    return Path(out) / "work" / f"{clip_id}.json"


def summary(record: dict) -> dict:
    """What the manifest needs from one clip record (small enough to pass between processes)."""
    out = {k: record.get(k) for k in ("status", "video", "clip_id", "reason")}
    if record.get("status") == "ok":
        out.update(
            clip_id=record["clip"]["clip_id"],
            video=record["clip"]["source"],
            timings=record["timings"],
            tags=record["clip"]["tags"],
            num_frames=record["clip"]["num_frames"],
            objects=len(record["tracks"]),
            moving=sum(1 for o in record["facts"]["objects"] if o["spans"]),
            kept=[q["q_type"] for q in record["qas"]],
            rejected=len(record["rejected"]),
        )
    return out


def failure_record(out: Path, video: Path, clip_id: str, status: str, reason: str, timings: dict) -> dict:
    record = {
        "status": status,
        "video": str(video),
        "clip_id": clip_id,
        "reason": reason,
        "timings": {k: round(v, 4) for k, v in timings.items()},
    }
    write_json_atomic(work_path(out, clip_id), record)
    return record


def process_video(video: Path, clip_id: str, config: PipelineConfig, models: Models, out: Path) -> dict:
    """All stages on one video; never raises for a bad video (the record says what happened)."""
    timings: dict = {}
    try:
        t = time.perf_counter()
        try:
            clip = stage_clip(video, clip_id, config)
        finally:
            timings["clip"] = time.perf_counter() - t
        detections, tracks, model_timings = stage_models(clip, config, models)
        timings.update(model_timings)
        return stage_finish(clip, detections, tracks, timings, config, models.backend, out)
    except ClipSkipped as exc:
        logger.info("%s: skipped (%s)", video, exc)
        return failure_record(out, video, clip_id, "skipped", str(exc), timings)
    except Exception as exc:  # a bad video or a model failure must not end the run
        logger.warning("%s: failed (%s: %s)", video, type(exc).__name__, exc)
        return failure_record(out, video, clip_id, "failed", f"{type(exc).__name__}: {exc}", timings)


def finished(out: Path, clip_id: str, retry_failed: bool) -> dict | None:
    """The summary of a finished clip, or None when it must be (re)processed."""
    path = work_path(out, clip_id)
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    if record.get("status") == "failed" and retry_failed:
        return None
    return summary(record)


def collect_samples(out: Path, clip_ids: list[str]) -> int:
    """Write samples.jsonl from every finished clip's record (atomic); returns the number of samples."""
    lines = []
    for clip_id in clip_ids:
        path = work_path(out, clip_id)
        if not path.is_file():
            continue
        record = json.loads(path.read_text(encoding="utf-8"))
        lines.extend(json.dumps(s, separators=(",", ":")) for s in record.get("samples", []))
    write_text_atomic(out / "samples.jsonl", "".join(line + "\n" for line in lines))
    return len(lines)


def build_manifest(
    summaries: list[dict],
    *,
    config: PipelineConfig,
    elapsed: float,
    executor: str,
    workers: int,
    processed: int,
    processed_ok: int,
    resumed: int,
    num_samples: int,
    load_seconds: dict,
) -> dict:
    ok = [s for s in summaries if s["status"] == "ok"]
    busy = elapsed - sum(load_seconds.values())
    stage_totals = {s: round(sum(x.get("timings", {}).get(s, 0.0) for x in summaries), 3) for s in STAGES}
    q_types: dict[str, int] = {}
    for s in ok:
        for q in s["kept"]:
            q_types[q] = q_types.get(q, 0) + 1
    return {
        "counts": {
            "videos": len(summaries),
            "clips_ok": len(ok),
            "skipped": sum(1 for s in summaries if s["status"] == "skipped"),
            "failed": sum(1 for s in summaries if s["status"] == "failed"),
            "processed_this_run": processed,
            "resumed_finished": resumed,
            "tagged_camera_motion": sum(1 for s in ok if "camera_motion" in s.get("tags", [])),
            "frames": sum(s["num_frames"] for s in ok),
            "objects": sum(s["objects"] for s in ok),
            "moving_objects": sum(s["moving"] for s in ok),
            "qas_kept": sum(len(s["kept"]) for s in ok),
            "qas_rejected": sum(s["rejected"] for s in ok),
            "samples": num_samples,
            "q_types": dict(sorted(q_types.items())),
        },
        "timing": {
            "elapsed_s": round(elapsed, 3),
            "model_load_s": load_seconds,
            "stage_total_s": stage_totals,
            # over the clips that reached each stage
            "stage_mean_s": {
                k: round(v / max(1, sum(1 for x in summaries if k in x.get("timings", {}))), 4)
                for k, v in stage_totals.items()
            },
            # model loading excluded where it is measured (the in-process executor); workers load in parallel
            "clips_per_minute": round(processed_ok / busy * 60, 3) if busy > 0 and processed_ok else None,
        },
        "executor": {"kind": executor, "workers": workers},
        "skipped": [
            {"video": s["video"], "reason": s["reason"]} for s in summaries if s["status"] == "skipped"
        ],
        "failed": [
            {"video": s["video"], "reason": s["reason"]} for s in summaries if s["status"] == "failed"
        ],
        "config": config.to_dict(),
    }
