"""The FoundationMotion-style auto-labelling pipeline (data_prep/foundation_motion) on generated mp4s of
moving shapes: every stage's output, QA-facts consistency, masks at the frame size, spans inside the
clip, resume, a corrupt video skipped and reported, the OpenAI-compatible client against a local mock
server, the process pool and Ray executors, and two training steps on the output.

Stage logic (facts, QA, spans) is checked on meaningful tracks: ground-truth masks of the synthetic
scenes, or the rule-based proposals + colour tracker. The tiny random OWLv2 / SAM2 / Llama stand-ins
are checked for formats and shapes only (their outputs are meaningless)."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import numpy as np
import pytest

from data_prep.foundation_motion.clips import ClipSkipped, camera_motion_score, clip_window, load_clip
from data_prep.foundation_motion.config import (
    CameraConfig,
    ClipConfig,
    DetectConfig,
    PipelineConfig,
    TrackConfig,
)
from data_prep.foundation_motion.detect import (
    GroundingDinoDetector,
    Owlv2Detector,
    box_iou,
    colour_blobs,
    run_detection,
)
from data_prep.foundation_motion.facts import compute_facts
from data_prep.foundation_motion.llm import LocalBackend, OpenAIBackend, parse_qas
from data_prep.foundation_motion.pipeline import work_path
from data_prep.foundation_motion.qa import GROUNDMORE_TYPES, QA, rule_based_qas, verify
from data_prep.foundation_motion.run import parse_args, run
from data_prep.foundation_motion.sample_videos import scene_for, write_corrupt_video, write_scene_video
from data_prep.foundation_motion.tiny_models import build_tiny_models
from data_prep.foundation_motion.track import Sam2Tracker, Seed, make_track
from mora.data.masks import decode_rle
from mora.data.readers.jsonl import read_samples_jsonl
from mora.data.synthetic_scene import DIRECTIONS, FPS, render

REPO = Path(__file__).resolve().parents[1]
FACTS = {"speed_high": 0.02, "speed_low": 0.01}  # 96-px scenes move 1-2 px a frame at 6 fps


def colour_config(models: Path | None = None, **sections) -> PipelineConfig:
    sections = {"detect": {"detector": "none"}, "track": {"tracker": "colour"}, "facts": FACTS, **sections}
    return PipelineConfig.tiny(models, **sections) if models else PipelineConfig.from_dict(sections)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("fm")
    for i in range(3):
        write_scene_video(root / "videos" / f"scene{i}.mp4", 0, i)
    write_corrupt_video(root / "videos" / "broken.mp4")
    build_tiny_models(root / "models")
    return root


def gt_tracks(scene):
    """Tracks from the scene's ground-truth labels (what a perfect tracker would give)."""
    frames, labels = render(scene)
    boxes = scene.boxes()
    tracks = [
        make_track(Seed(i + 1, o.name, 0, tuple(boxes[i, 0])), labels == i + 1, TrackConfig())
        for i, o in enumerate(scene.objects)
    ]
    return frames, tracks


# ------------------------------------------------------------------------------------------- stage 1


def test_clip_window_is_seeded_and_keeps_short_videos_whole():
    config = ClipConfig()
    assert clip_window("a.mp4", 4.0, config) == (0.0, 4.0)
    start, length = clip_window("a.mp4", 30.0, config)
    assert 5.0 <= length <= 10.0 and 0.0 <= start <= 30.0 - length
    assert clip_window("a.mp4", 30.0, config) == (start, length)


def test_camera_gate_drops_or_tags_a_panning_clip(data, tmp_path):
    static = load_clip(data / "videos" / "scene0.mp4", ClipConfig(), CameraConfig())
    assert static.camera_motion < 0.01 and static.tags == []
    assert static.frames.shape[1:] == (96, 96, 3) and static.fps == FPS
    write_scene_video(tmp_path / "pan.mp4", 0, 0, pan=3)
    with pytest.raises(ClipSkipped, match="camera motion"):
        load_clip(tmp_path / "pan.mp4", ClipConfig(), CameraConfig())
    tagged = load_clip(tmp_path / "pan.mp4", ClipConfig(), CameraConfig(action="tag"))
    assert tagged.tags == ["camera_motion"] and tagged.camera_motion > 0.05
    assert camera_motion_score(static.frames[:1], 6.0) == 0.0


# ------------------------------------------------------------------------------------------- stage 2


def test_rule_based_proposals_find_every_object():
    scene = scene_for(0, 1)
    frames, _ = render(scene)
    dets = colour_blobs(frames[0], DetectConfig())
    boxes = scene.boxes()[:, 0]
    assert sorted(d.name for d in dets) == sorted(o.name for o in scene.objects)
    for i, obj in enumerate(scene.objects):
        best = max(dets, key=lambda d: box_iou(d.box, boxes[i]))
        assert box_iou(best.box, boxes[i]) > 0.6 and best.name.split()[0] == obj.colour


@pytest.mark.parametrize("kind", ["owlv2", "grounding-dino"])
def test_tiny_detector_output_format(data, kind):
    if kind == "owlv2":
        detector = Owlv2Detector.from_pretrained(str(data / "models" / "detector"))
    else:
        detector = GroundingDinoDetector.from_pretrained(str(data / "models" / "grounding_dino"))
        _, positions = detector._prompt(["ball", "red square"])
        assert positions == [[1], [3, 4]]  # [CLS] ball . red square . [SEP]
    frames = load_clip(data / "videos" / "scene0.mp4", ClipConfig(), CameraConfig()).frames
    config = DetectConfig(
        proposals="vocabulary", vocabulary=["ball", "red square"], redetect_interval=10, detector=kind
    )
    result = run_detection(frames, config, detector)
    assert result.frames == list(range(0, frames.shape[0], 10)) and result.names == ["ball", "red square"]
    for f, dets in result.per_frame.items():
        assert len(dets) <= config.max_objects
        for d in dets:
            x0, y0, x1, y1 = d.box
            assert d.frame == f and d.name in result.names and d.score > 0.25
            assert 0 <= x0 < x1 <= 96 and 0 <= y0 < y1 <= 96
    assert json.dumps(result.to_dict())


# ------------------------------------------------------------------------------------------- stage 3


def test_sam2_tiny_tracker_masks_and_boxes(data):
    tracker = Sam2Tracker.from_pretrained(str(data / "models" / "tracker"))
    frames = load_clip(data / "videos" / "scene2.mp4", ClipConfig(), CameraConfig()).frames[:8]
    seeds = [Seed(1, "a", 0, (10, 10, 40, 40)), Seed(2, "b", 3, (50, 50, 80, 90))]
    masks = tracker.track(frames, seeds)
    assert set(masks) == {1, 2} and masks[1].shape == (8, 96, 96) and masks[1].dtype == bool
    assert not masks[2][:3].any()
    track = make_track(seeds[1], masks[2], TrackConfig())
    assert len(track.masks) == 8 and all(decode_rle(r).shape == (96, 96) for r in track.masks)
    assert all(b is None for b in track.boxes[:3]) and all(a == 0 for a in track.areas[:3])
    for box, area in zip(track.boxes, track.areas):
        assert (box is None) == (area == 0)


def test_colour_tracker_follows_the_objects(data):
    clip = load_clip(data / "videos" / "scene1.mp4", ClipConfig(), CameraConfig())
    config = colour_config()
    from data_prep.foundation_motion.track import ColourTracker, run_tracking

    dets = run_detection(clip.frames, config.detect, None)
    tracks = run_tracking(clip.frames, dets, config.detect, config.track, ColourTracker(config.track))
    assert len(tracks) == len(scene_for(0, 1).objects)  # re-detections match the tracked objects
    assert all(min(t.areas) > 0 for t in tracks)


# ------------------------------------------------------------------------------------------- stage 4


@pytest.mark.parametrize("index", range(6))
def test_facts_match_the_scene(index):
    scene = scene_for(0, index)
    _, tracks = gt_tracks(scene)
    facts = compute_facts("c", tracks, FPS, (96, 96), PipelineConfig.from_dict({"facts": FACTS}).facts)
    assert facts.num_frames == scene.num_frames
    for obj, of in zip(scene.objects, facts.objects):
        assert of.visible == [[0, scene.num_frames - 1]] and of.repetitions == 0
        if obj.motion is None:
            assert of.spans == []
            continue
        first, last = obj.motion.frames
        assert len(of.spans) == 1, (obj, of.spans)
        span = of.spans[0]
        assert abs(span.start - first) <= 1 and abs(span.end - last) <= 1, (obj.motion.frames, span)
        assert span.direction == obj.motion.direction
        dist = obj.motion.speed * (last - first + 1) / np.hypot(96, 96)
        assert span.path_length == pytest.approx(dist, rel=0.2)
    for k, obj in enumerate(scene.objects):
        if obj.motion is not None and obj.motion.kind == "push":
            assert any(p.pusher == obj.motion.cause + 1 and p.pushed == k + 1 for p in facts.pushes)


def test_facts_of_a_panning_camera_are_relative_to_the_background(data, tmp_path):
    write_scene_video(tmp_path / "pan.mp4", 0, 0, pan=2)
    clip = load_clip(tmp_path / "pan.mp4", ClipConfig(), CameraConfig(action="tag"))
    assert np.allclose(np.median(clip.camera_steps[1:], axis=0), [2.0, 0.0], atol=0.1)
    assert not clip.camera_steps[0].any()
    scene = scene_for(0, 10)  # two movers and a static object
    assert any(o.motion is None for o in scene.objects)
    _, tracks = gt_tracks(scene)
    for track in tracks:  # the whole image moves 2 px right per frame
        track.centroids = [[x + 2 * t, y] for t, (x, y) in enumerate(track.centroids)]
    camera = np.tile([[2.0, 0.0]], (scene.num_frames, 1))
    camera[0] = 0
    config = PipelineConfig.from_dict({"facts": FACTS}).facts
    panned = compute_facts("c", tracks, FPS, (96, 96), config)
    assert all(o.spans for o in panned.objects)  # in image coordinates everything moves
    facts = compute_facts("c", tracks, FPS, (96, 96), config, camera)
    for obj, of in zip(scene.objects, facts.objects):
        if obj.motion is None:
            assert of.spans == []
        else:
            assert [s.direction for s in of.spans] == [obj.motion.direction]
            assert abs(of.spans[0].start - obj.motion.frames[0]) <= 1


def test_repetitions_count_reversals():
    T, size = 30, 96
    masks = np.zeros((T, size, size), dtype=bool)
    xs = [20 + (t if t < 10 else 20 - t if t < 20 else t - 20) * 2 for t in range(T)]  # right, left, right
    for t, x in enumerate(xs):
        masks[t, 40:50, x : x + 10] = True
    track = make_track(Seed(1, "red square", 0, (20, 40, 30, 50)), masks, TrackConfig())
    facts = compute_facts("c", [track], 6.0, (size, size), PipelineConfig.from_dict({"facts": FACTS}).facts)
    assert facts.objects[0].repetitions == 2


# ------------------------------------------------------------------------------------------- stage 5


def _facts(index: int):
    scene = scene_for(0, index)
    _, tracks = gt_tracks(scene)
    return scene, compute_facts(
        f"s{index}", tracks, FPS, (96, 96), PipelineConfig.from_dict({"facts": FACTS}).facts
    )


def test_rule_based_qas_agree_with_facts_and_scene():
    types = set()
    for index in range(12):
        scene, facts = _facts(index)
        for qa in rule_based_qas(facts, multiple_choice=True, num_choices=4, seed=0, limit=50):
            assert verify(qa, facts) == [], (qa, verify(qa, facts))
            types.add(qa.q_type)
            obj = scene.objects[qa.obj_id - 1]
            if qa.q_type == "Descriptive":
                direction = next(d for d in DIRECTIONS if d in qa.question)
                assert obj.motion.direction == direction
            if qa.q_type == "Causal":
                pushed = next(o for o in scene.objects if o.name in qa.question)
                assert pushed.motion.cause == qa.obj_id - 1
            if qa.span is not None:
                assert 0 <= qa.span[0] <= qa.span[1] < scene.num_frames
                assert abs(qa.span[0] - obj.motion.frames[0]) <= 1
            if qa.choices is not None:
                assert qa.answer == f"{qa.correct_choice}. {qa.choices['ABCD'.index(qa.correct_choice)]}"
    assert set(GROUNDMORE_TYPES) - {"Sequential"} <= types and "Motion Recognition" in types


def test_verify_rejects_wrong_claims_spans_and_answers():
    _, facts = _facts(1)
    good = next(q for q in rule_based_qas(facts, multiple_choice=False, num_choices=4, seed=0, limit=50))
    assert verify(good, facts) == []
    mover = next(o for o in facts.objects if o.spans)
    wrong_dir = next(d for d in DIRECTIONS if d != mover.spans[0].direction)
    bad = [
        QA(
            "q",
            f"The {mover.name}.",
            "Descriptive",
            mover.obj_id,
            None,
            [{"kind": "direction", "obj": mover.obj_id, "direction": wrong_dir}],
        ),
        QA(
            "q",
            f"The {mover.name}.",
            "Descriptive",
            mover.obj_id,
            [0, 999],
            [{"kind": "moving", "obj": mover.obj_id}],
        ),
        QA(
            "q",
            "The purple elephant.",
            "Descriptive",
            mover.obj_id,
            None,
            [{"kind": "moving", "obj": mover.obj_id}],
        ),
        QA("q", f"The {mover.name}.", "Descriptive", 99, None, [{"kind": "moving", "obj": 99}]),
        QA("q", f"The {mover.name}.", "Descriptive", mover.obj_id, None, []),
        QA(
            "q",
            "A. x",
            "Motion Recognition",
            mover.obj_id,
            None,
            [{"kind": "moving", "obj": mover.obj_id}],
            ["x", "x"],
            "A",
        ),
    ]
    for qa in bad:
        assert verify(qa, facts), qa


# ------------------------------------------------------------------------------------------- LLM backends


class _MockAPI(BaseHTTPRequestHandler):
    replies: list = []
    seen: list = []

    def do_POST(self):  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).seen.append({"auth": self.headers.get("Authorization"), "path": self.path, "body": body})
        status, content = type(self).replies.pop(0) if type(self).replies else (200, '{"qas": []}')
        payload = json.dumps({"choices": [{"message": {"content": content}}]}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args):
        pass


def test_openai_backend_retries_caches_and_hides_the_key(tmp_path, monkeypatch, caplog):
    _, facts = _facts(1)
    mover = next(o for o in facts.objects if o.spans)
    span = [mover.spans[0].start, mover.spans[0].end]
    good = {
        "question": "Which object moves?",
        "answer": f"The {mover.name}.",
        "q_type": "Descriptive",
        "obj_id": mover.obj_id,
        "span": span,
        "claims": [{"kind": "moving", "obj": mover.obj_id}],
    }
    wrong = {**good, "claims": [{"kind": "static", "obj": mover.obj_id}]}
    _MockAPI.replies = [(429, ""), (503, ""), (200, json.dumps({"qas": [good, wrong]}))]
    _MockAPI.seen = []
    server = HTTPServer(("127.0.0.1", 0), _MockAPI)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    secret = "sk-test-secret-123"
    monkeypatch.setenv("FM_TEST_KEY", secret)
    config = PipelineConfig.from_dict(
        {
            "qa": {
                "backend": "openai",
                "openai": {
                    "base_url": f"http://127.0.0.1:{server.server_port}/v1",
                    "api_key_env": "FM_TEST_KEY",
                    "backoff_s": 0.01,
                    "requests_per_minute": 6000,
                },
            }
        }
    )
    try:
        backend = OpenAIBackend(config, tmp_path / "cache")
        qas = backend.generate(facts)
        again = backend.generate(facts)
    finally:
        server.shutdown()
    assert backend.requests_sent == 3 and backend.cache_hits == 1 and len(_MockAPI.seen) == 3
    assert (
        _MockAPI.seen[0]["auth"] == f"Bearer {secret}" and _MockAPI.seen[0]["path"] == "/v1/chat/completions"
    )
    assert _MockAPI.seen[0]["body"]["model"] == "gpt-4o-mini"
    assert [q.question for q in qas] == [q.question for q in again] and len(qas) == 2
    assert [bool(verify(q, facts)) for q in qas] == [False, True]  # the wrong claim is caught
    cached = "".join(p.read_text() for p in (tmp_path / "cache").rglob("*.json"))
    assert secret not in cached and secret not in caplog.text


def test_vlm_proposals_through_the_openai_client(data, tmp_path, monkeypatch):
    _MockAPI.replies = [(200, json.dumps({"objects": ["Red Square", "ball", "red square", 3]}))]
    _MockAPI.seen = []
    server = HTTPServer(("127.0.0.1", 0), _MockAPI)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("FM_TEST_KEY", "k")
    config = PipelineConfig.tiny(
        data / "models",
        detect={"proposals": "vlm", "max_objects": 3},
        qa={
            "openai": {"base_url": f"http://127.0.0.1:{server.server_port}/v1", "api_key_env": "FM_TEST_KEY"}
        },
    )
    frames = load_clip(data / "videos" / "scene0.mp4", ClipConfig(), CameraConfig()).frames
    detector = Owlv2Detector.from_pretrained(config.models.detector)
    try:
        namer = OpenAIBackend(config, tmp_path / "cache")
        result = run_detection(frames, config.detect, detector, namer)
        again = run_detection(frames, config.detect, detector, namer)
    finally:
        server.shutdown()
    assert result.names == again.names == ["red square", "ball"] and namer.cache_hits == 1
    (request,) = _MockAPI.seen
    content = request["body"]["messages"][0]["content"]
    assert request["body"]["model"] == config.models.vlm
    assert content[1]["image_url"]["url"].startswith("data:image/jpeg;base64,")
    config.detect.min_names = 3
    with pytest.raises(ClipSkipped, match="min_names"):
        run_detection(frames, config.detect, detector, namer)


def test_parse_qas_skips_malformed_output():
    assert parse_qas("no json here", "x") == []
    assert parse_qas('{"qas": [{"question": "q"}]}', "x") == []


def test_local_backend_runs_a_tiny_model(data):
    config = PipelineConfig.tiny(data / "models", qa={"backend": "local", "local_max_new_tokens": 8})
    _, facts = _facts(0)
    backend = LocalBackend(config)
    assert isinstance(backend.complete("hello"), str)
    assert all(isinstance(q, QA) for q in backend.generate(facts))


# ------------------------------------------------------------------------------------------- whole pipeline


def _run(videos: Path, out: Path, config: PipelineConfig, *extra: str) -> dict:
    return run(parse_args(["--videos", str(videos), "--out", str(out), "--no-progress", *extra]), config)


def _check_output(out: Path) -> list:
    samples = read_samples_jsonl(out, "samples.jsonl")
    for s in samples:
        assert s.source == "foundation_motion" and s.obj_ids
        assert s.masks[0].shape == (s.height, s.width) == (96, 96)
        assert sorted(s.masks.annotated_indices()) == list(range(s.num_frames))
        if s.span is not None:
            assert 0 <= s.span[0] <= s.span[1] < s.num_frames
            assert any(s.masks.present(i) for i in range(s.span[0], s.span[1] + 1))
        if s.choices is not None:
            assert s.correct_choice in "ABCD"[: len(s.choices)]
    return samples


def test_pipeline_end_to_end_with_resume_and_a_corrupt_video(data, tmp_path):
    from data_prep.foundation_motion.facts import ClipFacts

    out = tmp_path / "out"
    manifest = _run(data / "videos", out, colour_config())
    counts = manifest["counts"]
    assert counts["videos"] == 4 and counts["clips_ok"] == 3 and counts["failed"] == 1
    assert manifest["failed"][0]["video"].endswith("broken.mp4") and manifest["failed"][0]["reason"]
    assert counts["samples"] == counts["qas_kept"] > 0 and counts["moving_objects"] > 0
    assert set(manifest["timing"]["stage_total_s"]) == {"clip", "detect", "track", "facts", "qa", "write"}
    assert manifest["timing"]["clips_per_minute"] > 0 and manifest["timing"]["stage_mean_s"]["track"] > 0
    samples = _check_output(out)
    assert len(samples) == counts["samples"]
    from data_prep import validate

    assert validate.main(["--format", "jsonl", "--root", str(out), "--images", "full"]) == 0
    for clip_id in ("scene0", "scene1", "scene2"):  # every kept QA re-checked against the stored facts
        record = json.loads(work_path(out, clip_id).read_text())
        facts = ClipFacts.from_dict(record["facts"])
        assert record["qas"] and all(verify(QA.from_dict(q), facts) == [] for q in record["qas"])
        assert len(record["tracks"]) == len(scene_for(0, int(clip_id[-1])).objects)
    before = (out / "samples.jsonl").read_bytes()
    stamps = {p.name: p.stat().st_mtime_ns for p in (out / "work").iterdir()}

    again = _run(data / "videos", out, colour_config())
    assert again["counts"]["processed_this_run"] == 0 and again["counts"]["resumed_finished"] == 4
    assert (out / "samples.jsonl").read_bytes() == before
    assert {p.name: p.stat().st_mtime_ns for p in (out / "work").iterdir()} == stamps

    work_path(out, "scene1").unlink()
    third = _run(data / "videos", out, colour_config())
    assert third["counts"]["processed_this_run"] == 1 and (out / "samples.jsonl").read_bytes() == before
    retried = _run(data / "videos", out, colour_config(), "--retry-failed")
    assert retried["counts"]["processed_this_run"] == 1 and retried["counts"]["failed"] == 1


@pytest.mark.parametrize("detector", ["owlv2", "grounding-dino"])
def test_pipeline_with_tiny_models(data, tmp_path, detector):
    config = PipelineConfig.tiny(
        data / "models",
        detect={
            "detector": detector,
            "proposals": "vocabulary",
            "vocabulary": ["ball"],
            "max_objects": 2,
            "redetect_interval": 100,
        },
    )
    manifest = _run(data / "videos" / "scene2.mp4", tmp_path / "out", config)
    assert manifest["counts"]["clips_ok"] == 1, manifest["failed"]
    record = json.loads(work_path(tmp_path / "out", "scene2").read_text())
    assert len(record["tracks"]) <= 2
    for track in record["tracks"]:
        assert len(track["masks"]) == record["clip"]["num_frames"]
        assert all(decode_rle(r).shape == (96, 96) for r in track["masks"])
    _check_output(tmp_path / "out")


def test_process_pool_matches_one_process(data, tmp_path):
    one = _run(data / "videos", tmp_path / "one", colour_config())
    two = _run(data / "videos", tmp_path / "two", colour_config(), "--workers", "2")
    assert two["executor"] == {"kind": "pool", "workers": 2}
    assert (tmp_path / "one" / "samples.jsonl").read_text() == (
        tmp_path / "two" / "samples.jsonl"
    ).read_text()
    assert one["counts"]["failed"] == two["counts"]["failed"] == 1


def test_ray_executor(data, tmp_path):
    pytest.importorskip("ray")
    _run(data / "videos", tmp_path / "local", colour_config())
    # two model actors on a 2-CPU machine: the actors must not hold every CPU the tasks need
    manifest = _run(data / "videos", tmp_path / "ray", colour_config(), "--executor", "ray", "--workers", "2")
    assert manifest["executor"] == {"kind": "ray", "workers": 2} and manifest["counts"]["failed"] == 1
    assert (tmp_path / "ray" / "samples.jsonl").read_text() == (
        tmp_path / "local" / "samples.jsonl"
    ).read_text()


def test_config_yaml_round_trip_and_unknown_keys(tmp_path):
    import yaml

    path = tmp_path / "models.yaml"
    path.write_text(
        yaml.safe_dump(
            {"models": {"detector": "google/owlv2-large-patch14-ensemble"}, "qa": {"openai": {"rpm": 1}}}
        )
    )
    with pytest.raises(ValueError, match="qa.openai.rpm"):
        PipelineConfig.from_yaml(path)
    path.write_text(yaml.safe_dump({"models": {"detector": "x/y"}, "detect": {"box_threshold": 0.3}}))
    config = PipelineConfig.from_yaml(path)
    assert (
        config.models.detector == "x/y"
        and config.detect.box_threshold == 0.3
        and config.detect.text_threshold == 0.25
    )
    assert PipelineConfig.from_dict(config.to_dict()) == config
    assert (REPO / "data_prep" / "foundation_motion" / "models.yaml").is_file()
    PipelineConfig.from_yaml(REPO / "data_prep" / "foundation_motion" / "models.yaml")


def test_two_training_steps_on_the_output(data, tmp_path):
    out = tmp_path / "fm"
    _run(data / "videos", out, colour_config())
    env = {"OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)}
    import os

    env = {
        **{
            k: v
            for k, v in os.environ.items()
            if k not in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")
        },
        **env,
    }
    env.setdefault("TORCH_EXTENSIONS_DIR", str(REPO / ".torch_extensions"))
    cmd = [
        sys.executable,
        str(REPO / "train/train.py"),
        "--config",
        str(REPO / "train/configs/foundation_motion_tiny.yaml"),
        f"data.datasets.0.spec.root={out}",
        f"train.output_dir={tmp_path / 'run'}",
        "train.max_steps=2",
        "checkpoint.every_steps=0",
        "log.progress_bar=false",
    ]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    final = json.loads((tmp_path / "run" / "final_state.json").read_text())
    assert final["step"] == 2 and all(v == v for v in final["final_losses"].values())


def test_mix_recipe_names_the_pipeline_output_beside_refytvos_and_mevis():
    from mora.training.config_io import load_run_config

    run = load_run_config(REPO / "train/configs/foundation_motion_mix.yaml")
    specs = {e.spec["format"]: e.spec for e in run.data.datasets}
    assert set(specs) == {"refytvos", "mevis", "jsonl"}
    assert specs["jsonl"]["meta"] == "samples.jsonl" and specs["jsonl"]["ratio"] == 2.0
    assert specs["refytvos"]["ratio"] == specs["mevis"]["ratio"] == 1.0
