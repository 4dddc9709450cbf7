"""The learning-benchmark diagnosis `train/benchmarks/which_object.py`: frame categories and the end-to-end
attribution of prediction folders on a regenerated synthetic dataset."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "train" / "benchmarks"))

import which_object  # noqa: E402

from data_prep.synthetic import generate_dataset  # noqa: E402


def _labels() -> np.ndarray:
    labels = np.zeros((20, 20), np.uint8)
    labels[2:6, 2:6] = 1  # object 0
    labels[2:6, 10:14] = 2  # object 1
    labels[12:16, 2:6] = 3  # object 2
    return labels


@pytest.mark.parametrize(
    ("objects", "expected"),
    [((), "none"), ((0,), "answer"), ((1,), "subject"), ((2,), "still"), ((0, 1), "several")],
)
def test_classify(objects, expected):
    labels = _labels()
    pred = np.isin(labels, [i + 1 for i in objects])
    assert which_object.classify(pred, labels, answer=0, subject=1, movers={0, 1}, min_iou=0.3) == expected


def test_classify_mover_and_low_overlap():
    labels = _labels()
    pred = labels == 3
    assert which_object.classify(pred, labels, answer=0, subject=None, movers={2}, min_iou=0.3) == "mover"
    sliver = np.zeros_like(pred)
    sliver[2:3, 2:4] = True  # 2 of 16 pixels of object 0: IoU 0.125
    assert which_object.classify(sliver, labels, answer=0, subject=None, movers=set(), min_iou=0.3) == "none"


def _write_predictions(root: Path, pred_dir: Path, obj: str) -> int:
    """Predict, on every annotated frame, the answer (``obj="answer"``) or the first other object."""
    meta = json.loads((root / "test.json").read_text())["videos"]
    frames = 0
    for video_id, entry in meta.items():
        for qid, q in entry["questions"].items():
            answer = int(q["obj_id"])
            qdir = pred_dir / video_id / qid
            qdir.mkdir(parents=True)
            for png in sorted((root / "annotations" / video_id / "masks").glob("*.png")):
                labels = np.array(Image.open(png))
                ids = [i for i in np.unique(labels) if i not in (0, answer)]
                target = answer if obj == "answer" else ids[0]
                Image.fromarray(((labels == target) * 255).astype(np.uint8)).save(qdir / png.name)
                frames += 1
    return frames


def test_diagnose_attributes_masks_to_the_regenerated_objects(tmp_path):
    root = tmp_path / "synthetic"
    generate_dataset(root, num_videos=10, seed=3, val_fraction=0.0, test_fraction=0.5)
    _write_predictions(root, tmp_path / "right", "answer")
    counts = which_object.diagnose(tmp_path / "right", root, root / "test.json", seed=3, min_iou=0.3)
    total = sum(sum(c.values()) for c in counts.values())
    assert total > 0 and all(set(c) == {"answer"} for c in counts.values())

    _write_predictions(root, tmp_path / "wrong", "other")
    counts = which_object.diagnose(tmp_path / "wrong", root, root / "test.json", seed=3, min_iou=0.3)
    assert sum(c["answer"] for c in counts.values()) == 0
    assert sum(sum(c.values()) for c in counts.values()) == total
    with pytest.raises(SystemExit, match="seed"):  # scenes of another seed do not match the dataset
        which_object.diagnose(tmp_path / "right", root, root / "test.json", seed=4, min_iou=0.3)
