"""MeViS, ReVOS, Ref-YouTube-VOS and Ref-DAVIS17 evaluators on tiny fixtures in their own formats."""

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

from mora.evaluation.mevis import evaluate_mevis, evaluate_revos
from mora.evaluation.predictions import write_question
from mora.evaluation.refytvos import evaluate_refytvos
from mora.evaluation.runner import RunOptions
from mora.metrics import jaccard_and_boundary_f

H, W, T = 20, 28, 4
STEMS = [f"{5 * i:05d}" for i in range(T)]
REPO = Path(__file__).resolve().parents[1]


def obj_mask(k, t):
    m = np.zeros((H, W), np.uint8)
    m[2 + 3 * k : 8 + 3 * k, 2 + t + 6 * k : 9 + t + 6 * k] = 1
    return m


def rle(m):
    r = mask_utils.encode(np.asfortranarray(m))
    return {"size": r["size"], "counts": r["counts"].decode()}


def write_frames(folder: Path):
    folder.mkdir(parents=True, exist_ok=True)
    for s in STEMS:
        Image.fromarray(np.zeros((H, W, 3), np.uint8)).save(folder / f"{s}.jpg")


def make_rle_split(base: Path, vid="v1", meta_name="meta_expressions.json", with_gt=True, revos=False):
    write_frames(base / "JPEGImages" / vid)
    exps = {
        "0": {"exp": "object zero", "obj_id": [0], "anno_id": [10]},
        "1": {"exp": "both", "obj_id": [0, 1], "anno_id": [10, 11]},
    }
    if revos:
        exps["0"]["type_id"], exps["1"]["type_id"] = 0, 1
        exps["2"] = {"exp": "nothing", "obj_id": [], "anno_id": [], "type_id": 2}
    entry = {"vid_id": 1, "frames": STEMS, "expressions": exps}
    if revos:
        entry.update(height=H, width=W)
    (base / meta_name).write_text(json.dumps({"videos": {vid: entry}}))
    if with_gt:  # object 1 absent on the last frame (null)
        mask_dict = {
            "10": [rle(obj_mask(0, t)) for t in range(T)],
            "11": [rle(obj_mask(1, t)) for t in range(T - 1)] + [None],
        }
        (base / "mask_dict.json").write_text(json.dumps(mask_dict))


def truth(k_list, t):
    m = np.zeros((H, W), bool)
    for k in k_list:
        if not (k == 1 and t == T - 1):
            m |= obj_mask(k, t).astype(bool)
    return m


def test_mevis_valid_u_and_valid(tmp_path):
    make_rle_split(tmp_path / "mevis" / "valid_u")
    pred = tmp_path / "pred"
    write_question(pred, "v1", "0", STEMS, np.stack([truth([0], t) for t in range(T)]))
    guess = np.stack([obj_mask(0, t).astype(bool) for t in range(T)])  # misses object 1
    write_question(pred, "v1", "1", STEMS, guess)
    scores, _ = evaluate_mevis(tmp_path / "mevis", "valid_u", RunOptions(out=tmp_path / "o", pred_dir=pred))
    j, f = jaccard_and_boundary_f(np.stack([truth([0, 1], t) for t in range(T)]), guess)
    assert scores["overall"]["n"] == 2
    assert scores["overall"]["J"] == pytest.approx((1 + j.mean()) / 2, abs=1e-12)
    assert scores["overall"]["F"] == pytest.approx((1 + f.mean()) / 2, abs=1e-12)
    assert scores["baseline_empty"]["overall"]["J"] == 0.0
    # valid: no mask_dict -> a CodaLab archive of the predictions
    make_rle_split(tmp_path / "mevis" / "valid", with_gt=False)
    scores, msg = evaluate_mevis(tmp_path / "mevis", "valid", RunOptions(out=tmp_path / "o2", pred_dir=pred))
    assert scores is None and "submission" in msg
    names = zipfile.ZipFile(tmp_path / "o2" / "mevis_valid.zip").namelist()
    assert sorted(names) == sorted(f"v1/{e}/{s}.png" for e in "01" for s in STEMS)


def test_revos_categories_and_no_target(tmp_path):
    vid = "UVO/all/clip"  # ReVOS video keys carry their source as a path prefix
    make_rle_split(tmp_path / "revos", vid=vid, meta_name="meta_expressions_valid_.json", revos=True)
    pred = tmp_path / "pred"
    write_question(pred, vid, "0", STEMS, np.stack([truth([0], t) for t in range(T)]))  # perfect referring
    write_question(pred, vid, "2", STEMS, np.zeros((T, H, W), bool))  # correct no-target answer
    scores, _ = evaluate_revos(tmp_path / "revos", "valid", RunOptions(out=tmp_path / "o", pred_dir=pred))
    assert scores["referring"]["JF"] == 1.0 and scores["reasoning"]["JF"] == 0.0  # reasoning: missing
    assert scores["no_target"]["JF"] == 1.0 and scores["no_target"]["n"] == 1
    # overall = mean of the referring and reasoning means; no-target excluded
    assert scores["overall"]["JF"] == 0.5 and scores["overall"]["n"] == 2
    assert (pred / "UVO" / "all" / "clip" / "0" / "00005.png").is_file()


def make_palette(root: Path, split: str, videos: dict, with_ann: bool):
    meta = {}
    for vid, exps in videos.items():
        write_frames(root / split / "JPEGImages" / vid)
        meta[vid] = {"frames": STEMS, "expressions": exps}
        if with_ann:
            (root / split / "Annotations" / vid).mkdir(parents=True, exist_ok=True)
            for t, s in enumerate(STEMS[:-1]):  # last frame not annotated -> empty target
                lab = (obj_mask(0, t) + 2 * obj_mask(1, t) * (1 - obj_mask(0, t))).astype(np.uint8)
                img = Image.fromarray(lab, mode="P")
                img.putpalette([0, 0, 0, 200, 0, 0, 0, 200, 0] + [0] * 759)
                img.save(root / split / "Annotations" / vid / f"{s}.png")
    (root / "meta_expressions" / split).mkdir(parents=True, exist_ok=True)
    (root / "meta_expressions" / split / "meta_expressions.json").write_text(json.dumps({"videos": meta}))


def test_refytvos_local_and_submission(tmp_path):
    root = tmp_path / "rytvos"
    exps = {"0": {"exp": "first", "obj_id": "1"}, "1": {"exp": "second", "obj_id": "2"}}
    make_palette(root, "train", {"a": exps}, with_ann=True)
    pred = tmp_path / "pred"
    lab = [np.asarray(Image.open(root / "train" / "Annotations" / "a" / f"{s}.png")) for s in STEMS[:-1]]
    write_question(pred, "a", "0", STEMS, np.stack([lab_t == 1 for lab_t in lab] + [np.zeros((H, W), bool)]))
    scores, _ = evaluate_refytvos(root, "train", RunOptions(out=tmp_path / "o", pred_dir=pred))
    # expression 1 has no prediction: 0 on its 3 annotated frames, 1 on the unannotated (empty) last one
    assert scores["overall"]["n"] == 2 and scores["overall"]["JF"] == (1 + 0.25) / 2
    # valid minus test videos, packed in the server's layout
    make_palette(root, "valid", {"a": exps, "b": exps}, with_ann=False)
    make_palette(root, "test", {"b": exps}, with_ann=False)
    write_question(pred, "a", "1", STEMS, np.zeros((T, H, W), bool))
    scores, msg = evaluate_refytvos(root, "valid", RunOptions(out=tmp_path / "o", pred_dir=pred))
    names = zipfile.ZipFile(tmp_path / "o" / "refytvos_valid.zip").namelist()
    assert scores is None and sorted(names) == sorted(
        f"Annotations/a/{e}/{s}.png" for e in "01" for s in STEMS
    )


def test_davis17_per_annotator_cli(tmp_path):
    root = tmp_path / "davis"
    exps = {
        "0": {"exp": "a0 first", "obj_id": "1", "anno_id": "0"},
        "1": {"exp": "a0 second", "obj_id": "2", "anno_id": "0"},
        "2": {"exp": "a1 first", "obj_id": "1", "anno_id": "1"},
    }
    make_palette(root, "valid", {"bear": exps}, with_ann=True)
    pred = tmp_path / "pred"
    lab = [np.asarray(Image.open(root / "valid" / "Annotations" / "bear" / f"{s}.png")) for s in STEMS[:-1]]
    for eid, k in (("0", 1), ("1", 2), ("2", 1)):
        write_question(
            pred, "bear", eid, STEMS, np.stack([lab_t == k for lab_t in lab] + [np.zeros((H, W), bool)])
        )
    cmd = [
        sys.executable,
        str(REPO / "eval" / "evaluate_davis17.py"),
        "--pred-dir",
        str(pred),
        "--data-root",
        str(root),
        "--out",
        str(tmp_path / "o"),
        "--workers",
        "1",
    ]
    run = subprocess.run(cmd, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    scores = json.loads((tmp_path / "o" / "scores.json").read_text())
    assert scores["anno_0"]["n"] == 2 and scores["anno_1"]["n"] == 1 and scores["overall"]["JF"] == 1.0
    assert "anno_0" in run.stdout


class BoxModel:
    """Stand-in for a MoRA model: predicts object 0's box on every frame."""

    def __init__(self):
        self.questions = []

    def predict(self, frames, question):
        from types import SimpleNamespace

        self.questions.append(question)
        masks = np.stack([obj_mask(0, t).astype(bool) for t in range(len(frames))])
        return SimpleNamespace(masks=masks, span=None, frame_scores=np.full(len(frames), np.nan), text="")


def test_mevis_model_mode(tmp_path):
    make_rle_split(tmp_path / "mevis" / "valid_u")
    model = BoxModel()
    opts = RunOptions(out=tmp_path / "o", model=model)
    scores, _ = evaluate_mevis(tmp_path / "mevis", "valid_u", opts)
    assert sorted(model.questions) == ["both", "object zero"]
    assert scores["overall"]["n"] == 2 and scores["overall"]["missing_questions"] == 0
    assert len(list((tmp_path / "o" / "predictions" / "v1" / "0").glob("*.png"))) == T
    assert scores["overall"]["J"] > scores["baseline_empty"]["overall"]["J"]
