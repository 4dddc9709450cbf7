"""GroundMoRe evaluator: protocol, aggregation, missing predictions, resume, chunks, CLI."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mora.evaluation import groundmore
from mora.evaluation.predictions import write_question
from mora.evaluation.runner import EvaluationError
from mora.metrics import jaccard_and_boundary_f

H, W, N = 24, 32, 30  # 30 frames -> 20 sampled indices
VID = "abc_0010_0020"  # clip starts at 00:10
SPAN = (6, 17)  # action 00:11 - 00:13 -> [(11-10)*6, (13-10)*6-1]
NO_MASK = 12  # in-span frame whose mask PNG is missing


def labels(i):
    """Object 1 moves right; object 2 is a fixed box. Every frame has them (the span must gate)."""
    lab = np.zeros((H, W), np.uint8)
    lab[4:12, i % 20 : i % 20 + 8] = 1
    lab[14:20, 2:10] = 2
    return lab


def make_dataset(root: Path) -> None:
    vdir = root / "annotations" / VID
    (vdir / "images").mkdir(parents=True)
    (vdir / "masks").mkdir()
    for i in range(N):
        Image.fromarray(np.full((H, W, 3), 10 * (i % 20), np.uint8)).save(vdir / "images" / f"frame_{i}.jpg")
        if i != NO_MASK:
            img = Image.fromarray(labels(i), mode="P")
            img.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0] + [0] * 759)
            img.save(vdir / "masks" / f"frame_{i}.png")
    q = {"action_start": "00:11", "action_end": "00:13", "answer": "x"}
    meta = {
        "videos": {
            VID: {
                "questions": {
                    "0": {**q, "question": "who moves?", "obj_id": "1", "q_type": "Causal"},
                    "1": {**q, "question": "which two?", "obj_id": "1, 2", "q_type": "Descriptive"},
                }
            }
        }
    }
    (root / "test.json").write_text(json.dumps(meta))


def expected_gt(obj_ids):
    idx = np.linspace(0, N - 1, 20).astype(int)
    gt = np.zeros((20, H, W), bool)
    for k, i in enumerate(idx):
        if SPAN[0] <= i <= SPAN[1] and i != NO_MASK:
            gt[k] = np.isin(labels(i), obj_ids)
    return idx, gt


@pytest.fixture
def dataset(tmp_path):
    make_dataset(tmp_path / "gm")
    return tmp_path / "gm"


def write_preds(pred_dir, qid, masks, idx, span=None):
    info = {} if span is None else {"span": list(span)}
    write_question(pred_dir, VID, qid, [f"frame_{i}" for i in idx], masks, info)


def test_protocol_jobs(dataset):
    jobs, items = groundmore.build_groundmore(dataset, "test.json")
    idx, gt1 = expected_gt([1])
    assert jobs[0].frame_indices == list(idx)
    assert jobs[0].frame_stems == [f"frame_{i}" for i in idx]  # numeric, not lexicographic, order
    assert jobs[0].gt_span == SPAN
    np.testing.assert_array_equal(jobs[0].gt.load(), gt1)
    np.testing.assert_array_equal(jobs[1].gt.load(), expected_gt([1, 2])[1])  # "1, 2" -> union
    assert items[1].question == "which two?" and len(items[1].frame_paths) == 20
    assert groundmore.sample_indices(5) == np.linspace(0, 4, 20).astype(int).tolist()


def test_scores_and_baseline(dataset, tmp_path):
    idx, gt1 = expected_gt([1])
    _, gt12 = expected_gt([1, 2])
    pred_dir = tmp_path / "pred"
    write_preds(pred_dir, "0", gt1, idx)  # perfect
    # question 1: object 1 and 2 predicted on every sampled frame, ignoring the span
    always = np.stack([np.isin(labels(i), [1, 2]) for i in idx])
    write_preds(pred_dir, "1", always, idx, span=(0, N - 1))
    scores = groundmore.evaluate(dataset, dataset / "test.json", tmp_path / "out", pred_dir=pred_dir)
    assert scores["Causal"]["J"] == 1.0 and scores["Causal"]["F"] == 1.0 and scores["Causal"]["n"] == 1
    j, f = jaccard_and_boundary_f(gt12, always)
    assert scores["Descriptive"]["J"] == pytest.approx(j.mean(), abs=1e-12)
    assert scores["Descriptive"]["JF"] == pytest.approx((j.mean() + f.mean()) / 2, abs=1e-12)
    assert scores["overall"]["J"] == pytest.approx((1 + j.mean()) / 2, abs=1e-12)
    empty = (~gt12.reshape(20, -1).any(1)).mean()
    assert scores["baseline_empty"]["Descriptive"]["J"] == pytest.approx(empty)
    # temporal: q0 span derived from non-empty frames, q1 from prediction.json
    per_q = [json.loads(line) for line in (tmp_path / "out" / "per_question.jsonl").read_text().splitlines()]
    in_span = [i for i in idx if SPAN[0] <= i <= SPAN[1] and i != NO_MASK]
    assert per_q[0]["pred_span"] == [in_span[0], in_span[-1]]
    assert per_q[1]["tIoU"] == pytest.approx((SPAN[1] - SPAN[0] + 1) / N)
    saved = json.loads((tmp_path / "out" / "scores.json").read_text())
    assert saved == scores and set(saved) == {"overall", "Causal", "Descriptive", "baseline_empty"}


def test_missing_predictions(dataset, tmp_path):
    idx, gt1 = expected_gt([1])
    pred_dir = tmp_path / "pred"
    write_preds(pred_dir, "0", gt1, idx)
    scores = groundmore.evaluate(dataset, "test.json", tmp_path / "out", pred_dir=pred_dir)
    assert scores["overall"]["missing_questions"] == 1
    assert scores["Descriptive"]["J"] == scores["baseline_empty"]["Descriptive"]["J"]
    with pytest.raises(EvaluationError, match="no prediction"):
        groundmore.evaluate(dataset, "test.json", tmp_path / "out", pred_dir=pred_dir, strict=True)


class FakeModel:
    """Predicts a fixed box on every frame and a span of [2, T - 3]; counts its calls."""

    def __init__(self):
        self.calls = 0

    def predict(self, frames, question):
        from types import SimpleNamespace

        self.calls += 1
        T = len(frames)
        masks = np.zeros(frames.shape[:3], bool)
        masks[:, 4:12, 0:8] = True
        return SimpleNamespace(
            masks=masks, span=(2, T - 3), frame_scores=np.full(T, 0.5, np.float32), text="ok"
        )


def test_model_mode_resume_and_chunks(dataset, tmp_path):
    model = FakeModel()
    out = tmp_path / "out"
    first = groundmore.evaluate(dataset, "test.json", out / "a", model=model, num_chunks=2, chunk_idx=0)
    assert first is None and model.calls == 1  # other chunk not done yet: no scores
    scores = groundmore.evaluate(dataset, "test.json", out / "a", model=model, num_chunks=2, chunk_idx=1)
    assert model.calls == 2 and scores["overall"]["n"] == 2
    info = json.loads((out / "a" / "predictions" / VID / "0" / "prediction.json").read_text())
    idx = groundmore.sample_indices(N)
    assert info["span"] == [idx[2], idx[-3]] and info["text"] == "ok"
    again = groundmore.evaluate(dataset, "test.json", out / "a", model=model, visualize=1)
    assert model.calls == 2 and again == scores  # resumed: nothing re-predicted
    assert len(list((out / "a" / "visualizations").glob("*.png"))) == 1


def test_cli(dataset, tmp_path):
    script = Path(__file__).resolve().parents[1] / "eval" / "evaluate_groundmore.py"
    pred_dir = tmp_path / "pred"
    idx, gt1 = expected_gt([1])
    write_preds(pred_dir, "0", gt1, idx)
    args = ["--data-root", str(dataset), "--meta", str(dataset / "test.json"), "--out", str(tmp_path / "o")]
    ok = subprocess.run(
        [sys.executable, str(script), "--pred-dir", str(pred_dir), "--workers", "2", *args],
        capture_output=True,
        text=True,
    )
    assert ok.returncode == 0, ok.stderr
    assert "Causal" in ok.stdout and "overall" in ok.stdout and (tmp_path / "o" / "scores.json").is_file()
    bad = subprocess.run(
        [sys.executable, str(script), "--pred-dir", str(pred_dir), "--strict", *args],
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2 and "no prediction" in bad.stderr and "Traceback" not in bad.stderr
    args[1] = str(tmp_path / "nowhere")
    bad = subprocess.run(
        [sys.executable, str(script), "--pred-dir", str(pred_dir), *args], capture_output=True, text=True
    )
    assert bad.returncode == 2 and "nowhere" in bad.stderr and "Traceback" not in bad.stderr


def test_end_to_end_tiny_checkpoint(dataset, tmp_path):
    """The CLI's --model path with a real (random) tiny checkpoint written by `mora init-tiny`."""
    env_py = sys.executable
    ckpt = tmp_path / "tiny"
    made = subprocess.run(
        [env_py, "-m", "mora.cli", "init-tiny", "--out", str(ckpt)], capture_output=True, text=True
    )
    assert made.returncode == 0, made.stderr
    script = Path(__file__).resolve().parents[1] / "eval" / "evaluate_groundmore.py"
    out = tmp_path / "o"
    cmd = [
        env_py,
        str(script),
        "--model",
        str(ckpt),
        "--data-root",
        str(dataset),
        "--meta",
        "test.json",
        "--out",
        str(out),
        "--workers",
        "1",
    ]
    run = subprocess.run(cmd, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-2000:]
    scores = json.loads((out / "scores.json").read_text())
    assert scores["overall"]["n"] == 2 and 0.0 <= scores["overall"]["JF"] <= 1.0
    for qid in ("0", "1"):
        folder = out / "predictions" / VID / qid
        assert len(list(folder.glob("*.png"))) == len(set(groundmore.sample_indices(N)))
        assert "text" in json.loads((folder / "prediction.json").read_text())
