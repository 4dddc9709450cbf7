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
