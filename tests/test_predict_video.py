"""`mora predict` on videos: streamed masks of every frame, prediction.json, overlay, options, bad input."""

import json

import av
import numpy as np
import pytest
import torch
from model_testing import tiny_model
from video_testing import broken_videos, read_all_frames, write_shapes_video

from mora.cli import main
from mora.hub import load_model
from mora.inference import PredictOptions, decode_rle, predict_video
from mora.inference.timing import STAGES, StageTimer
from mora.model.mask_engines.configs import tiny_sam2_config
from mora.model.mask_engines.sam2_engine import Sam2MaskEngine
from mora.model.mask_engines.sam2_stream import StreamingTracker

QUESTION = "Which object moves to the right?"


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    root = tmp_path_factory.mktemp("ckpt")
    for engine in ("sam2", "sam"):
        assert main(["init-tiny", "--out", str(root / engine), "--mask-engine", engine]) == 0
    return root


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    return write_shapes_video(tmp_path_factory.mktemp("video") / "shapes.mp4", 30, fps=10)


@pytest.fixture(scope="module")
def sam2_model(checkpoints):
    return load_model(checkpoints / "sam2")


def _record(folder):
    return json.loads((folder / "prediction.json").read_text())


def _masks(record):
    return np.stack([decode_rle(rle) for rle in record["masks"]])


def _fixed_span(model, monkeypatch, key_logits):
    """The span head answers ``key_logits`` (one per key frame) whatever it sees."""
    logits = torch.tensor([key_logits], dtype=torch.float32)
    monkeypatch.setattr(model, "span_logits_from", lambda *args, **kwargs: logits)


def test_outputs_agree_and_gating(sam2_model, video, tmp_path, monkeypatch):
    _fixed_span(sam2_model, monkeypatch, [-5, -5, 5, 5, 5, -5, -5, -5])
    options = PredictOptions(mode="template", key_frames=8, gif=True)
    calls = []
    progress = lambda stage, done, total: calls.append((stage, done, total))  # noqa: E731
    result = predict_video(
        sam2_model, video, QUESTION, tmp_path / "out", options, model_id="tiny", progress=progress
    )
    assert (
        calls[-1] == ("render", 30, 30) and ("segment", 11 - 3, 11 - 3) in calls
    )  # 11 in-span frames, 3 key
    record = _record(tmp_path / "out")
    masks = _masks(record)
    assert masks.shape == (30, 48, 64)
    assert len(record["frames"]) == len(record["frame_scores"]) == 30 and record["frame_indices"] == list(
        range(30)
    )
    assert record["key_frames"] == [0, 4, 8, 12, 16, 20, 24, 29]
    # key scores sigmoid(+-5) interpolated in time: above 0.5 from frame 7 to frame 17
    assert record["span"] == [7, 17] and result.questions[0].span_frames == (7, 17)
    assert record["span_seconds"] == pytest.approx([7 / 10, 17 / 10])
    assert record["times"][17] == pytest.approx(1.7)
    scores = np.array(record["frame_scores"])
    assert (scores[7:18] > 0.5).all() and (np.delete(scores, range(7, 18)) <= 0.5).all()
    assert not masks[:7].any() and not masks[18:].any() and masks[7:18].any()
    assert record["question"] == QUESTION and record["model"] == "tiny" and "[SEG]" in record["text"]
    assert sorted(p.name for p in (tmp_path / "out" / "masks").iterdir()) == [
        f"{i:05d}.png" for i in range(30)
    ]
    overlay = read_all_frames(tmp_path / "out" / "overlay.mp4")
    assert overlay.shape == (30, 48, 64, 3)
    assert result.questions[0].gif is not None and len(read_all_frames(result.questions[0].gif)) > 0
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging folder left


@pytest.mark.parametrize(
    ("engine", "propagation"), [("sam2", "memory"), ("sam2", "per_frame"), ("sam", "per_frame")]
)
def test_streaming_equals_in_memory_predict(checkpoints, video, tmp_path, engine, propagation):
    model = load_model(checkpoints / engine)
    model.config.propagation = propagation
    short = write_shapes_video(tmp_path / "short.mp4", 14)
    frames = read_all_frames(short)
    for gate in (True, False):
        options = PredictOptions(mode="template", gate=gate, key_frames=14, chunk_size=4, overlay=False)
        predict_video(model, short, QUESTION, tmp_path / f"out{gate}", options)
        record = _record(tmp_path / f"out{gate}")
        expected = model.predict(frames, QUESTION, mode="template", gate=gate)
        np.testing.assert_array_equal(_masks(record), expected.masks)
        assert record["span"] == (list(expected.span) if expected.span else None)
        np.testing.assert_allclose(record["frame_scores"], expected.frame_scores, rtol=1e-6)


def test_streaming_equals_in_memory_predict_with_the_motion_match(tmp_path):
    """The question's states reach the streamed frames' pixel path (`ClipGrounding.question_state`)."""
    model = tiny_model("llava", "sam", seed=2, pixel_mask_motion_match=8)
    with torch.no_grad():
        torch.nn.init.normal_(model.pixel_mask_path.motion_match.weight, std=2.0)
    model.save_pretrained(tmp_path / "ckpt")
    model = load_model(tmp_path / "ckpt")
    short = write_shapes_video(tmp_path / "short.mp4", 14)
    frames = read_all_frames(short)
    options = PredictOptions(mode="template", gate=False, key_frames=14, chunk_size=4, overlay=False)
    predict_video(model, short, QUESTION, tmp_path / "out", options)
    expected = model.predict(frames, QUESTION, mode="template", gate=False)
    np.testing.assert_array_equal(_masks(_record(tmp_path / "out")), expected.masks)
    other = model.predict(frames, "Which object moves to the left?", mode="template", gate=False)
    assert not np.array_equal(other.masks, expected.masks)


def test_stage_timings_are_exclusive_and_add_up_to_at_most_the_total(sam2_model, video, tmp_path):
    result = predict_video(
        sam2_model, video, QUESTION, tmp_path / "out", PredictOptions(mode="template", gate=False)
    )
    timings, recorded = result.timings, _record(tmp_path / "out")["timings"]
    for t in (timings, recorded):
        assert list(t) == [*STAGES, "total"] and all(t[s] > 0 for s in STAGES)  # every stage ran
        assert sum(t[s] for s in STAGES) <= t["total"] + 1e-5
    assert recorded["total"] <= timings["total"]  # prediction.json's figures are taken before it is written


def test_stage_timer_counts_nested_stages_once(monkeypatch):
    clock = iter(range(100))
    monkeypatch.setattr("mora.inference.timing.time.perf_counter", lambda: next(clock))
    timer = StageTimer()  # t=0
    with timer("mask_engine"):  # enters at 1
        with timer("write"):  # 2 .. 3
            pass
    # mask_engine leaves at 4
    assert list(timer.iterate("decode", "ab")) == ["a", "b"]  # 5..6, 7..8, 9..10 (the end)
    assert timer.seconds == {"decode": 3, "backbone": 0, "mask_engine": 2, "write": 1, "render": 0}
    assert timer.summary()["total"] == 11
    with pytest.raises(KeyError, match="unknown stage"):
        with timer("encode"):
            pass


def test_streaming_tracker_equals_propagate_with_bounded_state():
    torch.manual_seed(0)
    engine = Sam2MaskEngine(tiny_sam2_config(64)).eval()
    engine.model.config.max_object_pointers_in_encoder = 4  # a short window, so that 40 frames prune
    pix = torch.randn(40, 3, 64, 64)
    prompt = torch.randn(1, engine.prompt_dim)
    key = 12
    expected = engine.propagate(pix, prompt, key_frames=[key])
    with torch.no_grad():
        key_feats = engine.encode(pix[key : key + 1])
        key_logits = engine.decode(key_feats, prompt[None])[0]
        tracker = StreamingTracker(engine, 40, key, key_feats, key_logits)
        got = {key: key_logits}
        stored = []
        for order, reverse in ((range(key + 1, 40), False), (range(key - 1, -1, -1), True)):
            for f in order:
                got[f] = tracker.step(f, engine.encode(pix[f : f + 1]), reverse=reverse)
                stored.append(len(tracker.session.output_dict_per_obj[0]["non_cond_frame_outputs"]))
            tracker.finish_forward()
    for f in range(40):
        torch.testing.assert_close(got[f], expected[f], rtol=1e-4, atol=1e-4)
    assert max(stored) <= 2 * tracker.window + 1


def test_several_questions_encode_the_video_once(sam2_model, video, tmp_path, monkeypatch):
    calls = {"encode_video": 0, "engine_frames": 0}
    encode_video, engine_encode = sam2_model.encode_video, sam2_model.mask_engine.encode

    def count_video(*args, **kwargs):
        calls["encode_video"] += 1
        return encode_video(*args, **kwargs)

    def count_engine(pixel_values):
        calls["engine_frames"] += pixel_values.shape[0]
        return engine_encode(pixel_values)

    monkeypatch.setattr(sam2_model, "encode_video", count_video)
    monkeypatch.setattr(sam2_model.mask_engine, "encode", count_engine)
    options = PredictOptions(mode="template", key_frames=6, gate=False, overlay=False)
    result = predict_video(sam2_model, video, ["a?", "b?", "c?"], tmp_path / "out", options)
    assert calls == {"encode_video": 1, "engine_frames": 30}  # 6 key frames + 24 others, once for 3 questions
    assert [q.folder.name for q in result.questions] == ["q001", "q002", "q003"]
    for q in result.questions:
        assert _masks(_record(q.folder)).shape == (30, 48, 64)


def test_cli_questions_file_window_and_max_frames(checkpoints, video, tmp_path):
    questions = tmp_path / "q.json"
    questions.write_text(json.dumps([QUESTION, "Which object moves down?"]))
    base = ["predict", "--model", str(checkpoints / "sam"), "--video", str(video), "--mode", "template"]
    out = tmp_path / "window"
    assert (
        main([*base, "--questions", str(questions), "--out", str(out), "--start", "1", "--end", "2.5"]) == 0
    )
    for folder in ("q001", "q002"):
        record = _record(out / folder)
        assert record["frame_indices"] == list(range(10, 25)) and len(record["masks"]) == 15
        assert len(read_all_frames(out / folder / "overlay.mp4")) == 15
        assert record["span"] is None or 10 <= record["span"][0] <= record["span"][1] <= 24
    out = tmp_path / "max"
    assert main([*base, "--question", QUESTION, "--out", str(out), "--max-frames", "7", "--fps", "5"]) == 0
    record = _record(out)
    assert record["frame_indices"] == [0, 4, 8, 14, 18, 22, 28]  # 15 frames at 5 fps, 7 of them spread evenly
    assert len(list((out / "masks").iterdir())) == 7 and record["fps"] == pytest.approx(10 * 6 / 28)


def test_cli_frame_folder(checkpoints, tmp_path):
    from PIL import Image
    from video_testing import shapes_frame

    folder = tmp_path / "frames"
    folder.mkdir()
    for i in range(12):
        Image.fromarray(shapes_frame(i, 40, 56)).save(folder / f"img_{i:03d}.jpg")
    out = tmp_path / "out"
    args = ["predict", "--model", str(checkpoints / "sam2"), "--video", str(folder), "--question", QUESTION]
    options = ["--key-frames", "5", "--folder-fps", "4", "--quiet", "--propagation", "memory", "--no-gate"]
    assert main([*args, "--out", str(out), *options]) == 0
    record = _record(out)
    assert record["frames"] == [f"img_{i:03d}" for i in range(12)] and _masks(record).shape == (12, 40, 56)
    assert record["times"][4] == pytest.approx(1.0)
    assert read_all_frames(out / "overlay.mp4").shape == (12, 40, 56, 3)


def _fails(capsys, argv, out, expect):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("mora predict: error:") and "\n" not in err and "Traceback" not in err, err
    assert expect in err, err
    assert not out.exists() or not any(out.iterdir()), list(out.iterdir())  # nothing that looks like output
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]  # no staging folder left
    return err


@pytest.mark.parametrize("kind", ["unreadable", "truncated", "zero frames", "unsupported codec"])
def test_bad_videos(checkpoints, tmp_path, capsys, kind):
    path = broken_videos(tmp_path / "videos")[kind]
    out = tmp_path / "out"
    argv = ["predict", "--model", str(checkpoints / "sam2"), "--video", str(path), "--question", QUESTION]
    expect = {
        "unreadable": "cannot open",
        "truncated": "truncated",
        "zero frames": "no frames",
        "unsupported codec": "unsupported video codec",
    }[kind]
    _fails(capsys, [*argv, "--out", str(out), "--mode", "template", "--key-frames", "30"], out, expect)


def test_bad_questions(checkpoints, video, tmp_path, capsys):
    argv = [
        "predict",
        "--model",
        str(checkpoints / "sam2"),
        "--video",
        str(video),
        "--out",
        str(tmp_path / "o"),
    ]
    _fails(capsys, [*argv, "--question", "   "], tmp_path / "o", "empty")
    long = " ".join(["which object moves"] * 2000)
    _fails(capsys, [*argv, "--question", long], tmp_path / "o", "context")
    questions = tmp_path / "q.json"
    questions.write_text(json.dumps([QUESTION, ""]))
    _fails(capsys, [*argv, "--questions", str(questions)], tmp_path / "o", "question 2 is empty")


@pytest.mark.parametrize(
    "missing",
    [
        "config.json",
        "model.safetensors",
        "mora_processor_config.json",
        "tokenizer.json",
        "tokenizer_config.json",
    ],
)
def test_checkpoint_missing_a_file(checkpoints, video, tmp_path, capsys, missing):
    import shutil

    folder = tmp_path / "ckpt"
    shutil.copytree(checkpoints / "sam2", folder)
    (folder / missing).unlink()
    out = tmp_path / "o"
    argv = [
        "predict",
        "--model",
        str(folder),
        "--video",
        str(video),
        "--question",
        QUESTION,
        "--out",
        str(out),
    ]
    _fails(capsys, argv, out, missing)


def test_bad_options(checkpoints, video, tmp_path, capsys):
    argv = ["predict", "--model", str(checkpoints / "sam2"), "--video", str(video), "--question", QUESTION]
    out = tmp_path / "o"
    _fails(capsys, [*argv, "--out", str(out), "--start", "5"], out, "select no frame")
    _fails(capsys, [*argv, "--out", str(out), "--start", "2", "--end", "1"], out, "--end")
    if not torch.cuda.is_available():
        _fails(capsys, [*argv, "--out", str(out), "--device", "cuda"], out, "--device cuda")


def test_failure_midway_leaves_no_output(sam2_model, video, tmp_path, monkeypatch):
    from mora.inference import pipeline

    def broken(self, fps):
        raise RuntimeError("disk full")

    monkeypatch.setattr(pipeline._Runner, "render", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        predict_video(sam2_model, video, QUESTION, tmp_path / "out", PredictOptions(mode="template"))
    assert not (tmp_path / "out").exists() and not list(tmp_path.iterdir())


def test_overlay_of_odd_sized_frames_is_padded_to_even(sam2_model, tmp_path):
    from PIL import Image
    from video_testing import shapes_frame

    folder = tmp_path / "frames"
    folder.mkdir()
    for i in range(5):
        Image.fromarray(shapes_frame(i, 31, 41)).save(folder / f"{i}.png")
    result = predict_video(sam2_model, folder, QUESTION, tmp_path / "out", PredictOptions(mode="template"))
    assert _masks(_record(result.questions[0].folder)).shape == (5, 31, 41)
    with av.open(str(result.questions[0].overlay)) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert len(frames) == 5 and frames[0].shape[:2] == (32, 42)  # H.264 4:2:0 needs even sizes


def test_checkpoint_index_with_a_missing_shard(tmp_path):
    from mora.hub import CheckpointNotFoundError, check_checkpoint_files

    (tmp_path / "config.json").write_text("{}")
    index = {"weight_map": {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}}
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps(index))
    (tmp_path / "model-00001-of-00002.safetensors").write_bytes(b"")
    with pytest.raises(CheckpointNotFoundError, match="model-00002-of-00002.safetensors"):
        check_checkpoint_files(tmp_path)


def test_frame_selection_and_nearest_key_frames():
    from pathlib import Path

    from mora.inference import select_frames
    from mora.inference.frame_masks import nearest_rows
    from mora.inference.video_source import VideoInfo

    info = VideoInfo(Path("v.mp4"), 100, 25.0, 10, 10, False)
    assert select_frames(info) == list(range(100))
    assert select_frames(info, start=1.0, end=2.0) == list(range(25, 50))
    assert select_frames(info, fps=5) == list(range(0, 100, 5))
    assert select_frames(info, fps=50) == list(range(100))  # never above the video's rate
    assert select_frames(info, start=3.0, max_frames=3) == [75, 87, 99]
    with pytest.raises(ValueError, match="--start/--end select no frame"):
        select_frames(info, start=4.0)
    folder = VideoInfo(Path("frames"), 10, None, 10, 10, True)
    with pytest.raises(ValueError, match="--folder-fps"):
        select_frames(folder, fps=2)
    assert nearest_rows([0, 1, 2, 3, 5, 9], [0, 4, 9]) == [0, 0, 0, 1, 1, 2]
