"""`mora demo` without a browser: the request function's outputs, zip, error mapping, temporary folders,
the bundled examples and the command's user errors."""

import json
import zipfile

import pytest
from demo_testing import SPAN_TEXT, fixed_span_service, tiny_checkpoint
from video_testing import broken_videos, write_shapes_video

from mora.cli import main
from mora.demo import DemoError, example_videos
from mora.demo.service import span_text
from mora.inference import VideoSource

QUESTION = "Which object moves to the right?"


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny")


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    return write_shapes_video(tmp_path_factory.mktemp("video") / "shapes.mp4", 30, fps=10)


def test_answer_writes_overlay_span_and_zip(checkpoint, video, tmp_path, monkeypatch):
    service = fixed_span_service(checkpoint, tmp_path, monkeypatch)
    calls = []
    answer = service.answer(
        str(video), f"  {QUESTION} ", lambda fraction, desc: calls.append((fraction, desc))
    )
    assert answer.span == SPAN_TEXT and "[SEG]" in answer.text
    assert answer.overlay is not None and answer.overlay.stat().st_size > 0
    assert answer.folder.parent == service.root and answer.download.is_relative_to(answer.folder)
    with zipfile.ZipFile(answer.download) as archive:
        names = archive.namelist()
        record = json.loads(archive.read("prediction.json"))
    assert names == ["prediction.json"] + [f"masks/{i:05d}.png" for i in range(30)]
    assert record["span"] == [7, 17] and record["question"] == QUESTION and record["model"] == str(checkpoint)
    fractions = [f for f, _ in calls]
    assert calls[0] == (0.0, "answering the question on the key frames")
    assert calls[-1] == (1.0, "render: 30/30 frames") and all(0 <= f <= 1 for f in fractions)
    assert any(desc.startswith("segment:") for _, desc in calls)
    service.close()
    assert not service.root.exists()


def test_span_text():
    assert span_text((7, 17), (0.7, 1.7)) == SPAN_TEXT
    assert span_text((3, 5), None) == "frames 3-5"
    assert span_text(None, None).startswith("no span predicted")


def test_user_errors_are_one_line_and_leave_nothing(checkpoint, video, tmp_path, monkeypatch):
    service = fixed_span_service(checkpoint, tmp_path, monkeypatch)
    bad = broken_videos(tmp_path / "bad")
    cases = [
        (None, QUESTION, "Upload an mp4 or pick an example first."),
        (str(video), "   ", "Type a question about the video."),
        (str(bad["unreadable"]), QUESTION, "Bad video: "),
        (str(bad["zero frames"]), QUESTION, "Bad video: "),
        (str(video), "why " * 5000, "Bad question: the question is too long"),
    ]
    for clip, question, expect in cases:
        with pytest.raises(DemoError) as err:
            service.answer(clip, question)
        assert str(err.value).startswith(expect) and "\n" not in str(err.value)
    assert service.request_folders() == []


def test_old_requests_are_pruned_and_close_removes_all(checkpoint, video, tmp_path, monkeypatch):
    service = fixed_span_service(checkpoint, tmp_path, monkeypatch, keep_requests=2)
    folders = [service.answer(str(video), QUESTION).folder for _ in range(3)]
    assert service.request_folders() == folders[1:]
    service.close()
    assert not service.root.exists()
    with pytest.raises(DemoError, match="shutting down"):
        service.answer(str(video), QUESTION)


def test_page_handler_maps_errors_to_messages(checkpoint, video, tmp_path, monkeypatch):
    gr = pytest.importorskip("gradio", reason="the demo extra (gradio) is not installed")
    from mora.demo.app import make_handler

    service = fixed_span_service(checkpoint, tmp_path, monkeypatch)
    handler = make_handler(service)
    progress = lambda fraction, desc=None: None  # noqa: E731
    overlay, text, span, download = handler(str(video), QUESTION, progress=progress)
    assert overlay.endswith("overlay.mp4") and "[SEG]" in text and download.endswith("masks.zip")
    with pytest.raises(gr.Error, match="Type a question about the video."):
        handler(str(video), "", progress=progress)

    def broken(*args, **kwargs):
        raise RuntimeError("boom\nTraceback lines")

    monkeypatch.setattr(service, "answer", broken)
    with pytest.raises(gr.Error) as err:
        handler(str(video), QUESTION, progress=progress)
    assert err.value.message == "The model failed on this request (see the server log)."
    service.close()


def test_server_refuses_uploads_over_the_limit_and_cleans_up(checkpoint, video, tmp_path, monkeypatch):
    pytest.importorskip("gradio", reason="the demo extra (gradio) is not installed")
    import httpx

    from mora.demo import DemoConfig
    from mora.demo.app import serve

    service = fixed_span_service(checkpoint, tmp_path, monkeypatch)
    config = DemoConfig(model="tiny", max_file_size_mb=0.01, examples_dir=str(tmp_path / "examples"))
    demo = serve(service, config, block=False)
    try:
        url = f"{demo.local_url}gradio_api/upload"
        small = httpx.post(url, files={"files": ("small.mp4", b"0" * 1000)}, timeout=30)
        big = httpx.post(url, files={"files": ("big.mp4", b"0" * 20_000)}, timeout=30)
    finally:
        demo.close()
        service.close()
    assert small.status_code == 200 and big.status_code == 413
    assert not service.root.exists()


def test_examples_are_rendered_once_and_readable(tmp_path):
    examples = example_videos(tmp_path)
    assert len(examples) == 3 and all(e.question.endswith("?") for e in examples)
    stamps = [e.video.stat().st_mtime_ns for e in examples]
    again = example_videos(tmp_path)
    assert again == examples and [e.video.stat().st_mtime_ns for e in again] == stamps
    info = VideoSource(examples[0].video).info
    assert info.num_frames >= 24 and (info.height, info.width) == (96, 96) and info.fps == pytest.approx(6)
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"shapes_{i}.mp4" for i in range(3)]


def test_cli_user_errors(tmp_path, capsys):
    assert main(["demo", "--model", str(tmp_path / "missing")]) == 2
    assert main(["demo", "--model", str(tmp_path), "--max-frames", "0"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[0].startswith("mora demo: error: --model: ")
    assert lines[-1] == "mora demo: error: --max-frames must be >= 1, got 0"
