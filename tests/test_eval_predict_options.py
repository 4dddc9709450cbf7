import argparse
from pathlib import Path

import numpy as np
from PIL import Image

from mora.evaluation.cli import add_common_args, predict_kwargs_from_args
from mora.evaluation.inference import InferenceItem, run_inference
from mora.model.prediction import Prediction


def _parse(*argv):
    parser = argparse.ArgumentParser()
    add_common_args(parser)
    return parser.parse_args(["--model", "m", "--data-root", ".", "--out", "o", *argv])


def test_only_changed_predict_options_are_forwarded():
    assert predict_kwargs_from_args(_parse()) == {}
    assert predict_kwargs_from_args(_parse("--no-gate", "--predict-mode", "template")) == {
        "gate": False,
        "mode": "template",
    }
    assert predict_kwargs_from_args(_parse("--visual-prompt", "auto")) == {"visual_prompt": "auto"}


class _RecordingModel:
    def __init__(self):
        self.calls = []

    def predict(self, frames, question, **kwargs):
        self.calls.append(kwargs)
        T, H, W = frames.shape[:3]
        masks = np.zeros((T, H, W), bool)
        if kwargs.get("gate", True) is False:
            masks[:, 0, 0] = True
        return Prediction(masks=masks, span=None, frame_scores=np.zeros(T, np.float32), text="ok")


def test_run_inference_passes_predict_kwargs(tmp_path: Path):
    frame = tmp_path / "f0.jpg"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(frame)
    item = InferenceItem("v", "q", "which?", [frame], ["f0"], [0])
    model = _RecordingModel()
    run_inference(model, [item], tmp_path / "pred", predict_kwargs={"gate": False})
    assert model.calls == [{"gate": False}]
    written = np.asarray(Image.open(tmp_path / "pred" / "v" / "q" / "f0.png"))
    assert written[0, 0] > 0 and written.sum() == written[0, 0]


class _Truth:
    def __init__(self, masks):
        self.masks = masks

    def load(self):
        return self.masks


class _SpanModel:
    """Masks on every frame before gating; gated, only frame 1 keeps its mask."""

    def predict(self, frames, question, with_ungated=False, **kwargs):
        T, H, W = frames.shape[:3]
        ungated = np.zeros((T, H, W), bool)
        ungated[:, 2:6, 2:6] = True
        gated = ungated.copy()
        gated[[0, 2]] = False
        scores = np.array([0.1, 0.9, 0.2], np.float32)
        return Prediction(gated, (1, 1), scores, "ok", ungated if with_ungated else None)


def test_with_ungated_writes_both_folders_from_one_pass_and_scores_both(tmp_path: Path):
    from mora.evaluation.runner import RunOptions, evaluate_benchmark
    from mora.evaluation.scoring import ScoreJob

    frames = []
    for t in range(3):
        frames.append(tmp_path / f"f{t}.jpg")
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(frames[-1])
    item = InferenceItem("v", "q", "which?", frames, ["f0", "f1", "f2"], [0, 1, 2])
    assert _parse("--with-ungated").with_ungated and not _parse().with_ungated
    run_inference(_SpanModel(), [item], tmp_path / "pred", ungated_dir=tmp_path / "pred_ungated")
    gated = [np.asarray(Image.open(tmp_path / "pred" / "v" / "q" / f"f{t}.png")) > 0 for t in range(3)]
    ungated = [
        np.asarray(Image.open(tmp_path / "pred_ungated" / "v" / "q" / f"f{t}.png")) > 0 for t in range(3)
    ]
    assert [m.any() for m in gated] == [False, True, False] and all(m.any() for m in ungated)

    # scoring: ground truth = the square on frame 1 only -> gated is perfect, ungated is not
    gt = np.zeros((3, 8, 8), bool)
    gt[1, 2:6, 2:6] = True
    job = ScoreJob(
        video_id="v", question_id="q", category="Descriptive", frame_stems=["f0", "f1", "f2"], gt=_Truth(gt)
    )
    opts = RunOptions(out=tmp_path / "out", pred_dir=tmp_path / "pred", with_ungated=True)
    scores, table = evaluate_benchmark([job], None, opts, title="t")
    assert scores["overall"]["JF"] == 1.0 and scores["overall"]["JF_ungated"] < 0.5
    assert (tmp_path / "out" / "ungated" / "scores.json").is_file() and "ungated" in table

    # with the span known: the true span (frame 1) gates the ungated masks (the square on every frame) to a
    # perfect score
    job = ScoreJob(
        video_id="v",
        question_id="q",
        category="Descriptive",
        frame_stems=["f0", "f1", "f2"],
        gt=_Truth(gt),
        frame_indices=[0, 1, 2],
        gt_span=(1, 1),
    )
    scores, table = evaluate_benchmark([job], None, opts, title="t")
    assert scores["overall"]["JF_true_span_ungated"] == 1.0 and scores["overall"]["JF_ungated"] < 0.5
    assert "true span" in table.splitlines()[1]


def test_span_is_the_best_run_of_frames_above_the_threshold():
    from mora.model.inference import span_from_scores

    scores = np.array([0.9, 0.2, 0.6, 0.7, 0.8, 0.1, np.nan, 0.95])
    assert span_from_scores(scores, 0.5) == (2, 4)  # not bridged to frames 0 or 7 across the gaps
    assert span_from_scores(np.array([0.1, 0.9, 0.2, 0.6, 0.6]), 0.5) == (3, 4)  # mass 1.2 beats 0.9
    assert span_from_scores(np.array([0.6, 0.7]), 0.5) == (0, 1)
    assert span_from_scores(np.array([0.1, np.nan, 0.4]), 0.5) is None
