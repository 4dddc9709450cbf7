"""Readers on small fixtures written in each real on-disk format."""

import json

import numpy as np
import pytest
from PIL import Image

from mora.data.errors import DatasetFormatError
from mora.data.masks import encode_rle
from mora.data.readers.groundmore import clip_bounds, parse_obj_ids, read_groundmore, span_frames
from mora.data.readers.jsonl import read_samples_jsonl, write_samples_jsonl
from mora.data.readers.mevis import read_mevis, read_revos
from mora.data.readers.refytvos import read_refytvos

H, W = 12, 16


def _jpg(path, value=0):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((H, W, 3), value, np.uint8)).save(path)


def _palette_png(path, labels):
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.frombytes("P", (labels.shape[1], labels.shape[0]), labels.astype(np.uint8).tobytes())
    image.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0, 0, 0, 255] + [0] * 756)
    image.save(path)


def _labels(frame):
    """Object 1 in the top-left block, object 2 in the bottom-right block (both present on every frame)."""
    labels = np.zeros((H, W), np.uint8)
    labels[0:4, 0 : 2 + frame] = 1
    labels[8:12, 10:16] = 2
    return labels


# ---------------------------------------------------------------- GroundMoRe
def _groundmore(root, digits=7):
    vid = "abcDEF_0130_0135"  # clip 01:30 - 01:35, 5 s, 30 frames at 6 fps
    for i in range(30):
        name = f"{i:07d}" if digits == 7 else f"frame_{i:06d}"
        _jpg(root / "annotations" / vid / "images" / f"{name}.jpg", i)
        if 6 <= i <= 20 and i != 10:  # annotated window with one missing mask PNG
            _palette_png(root / "annotations" / vid / "masks" / f"{name}.png", _labels(i % 5))
    meta = {
        "videos": {
            vid: {
                "questions": {
                    "0": {
                        "question": "Who pushes?",
                        "answer": "the man",
                        "obj_id": "1",
                        "q_type": "Causal",
                        "action_start": "01:31",
                        "action_end": "01:34",
                    },
                    "1": {
                        "question": "Which two?",
                        "answer": "both",
                        "obj_id": "1, 2",
                        "q_type": "Descriptive",
                        "action_start": "01:32",
                        "action_end": "01:33",
                    },
                }
            }
        }
    }
    (root / "test.json").write_text(json.dumps(meta))
    return vid


@pytest.mark.parametrize("digits", [6, 7])
def test_groundmore_reader(tmp_path, digits):
    vid = _groundmore(tmp_path, digits)
    causal, multi = read_groundmore(tmp_path, "test.json")
    assert causal.id == f"{vid}/0" and causal.q_type == "Causal" and causal.fps == 6.0
    assert causal.num_frames == 30 and (causal.height, causal.width) == (H, W)
    assert causal.span == (6, 23)  # (91 - 90) * 6, (94 - 90) * 6 - 1
    assert multi.obj_ids == [1, 2] and multi.span == (12, 17)
    assert causal.frame_path(11).name.endswith("11.jpg")  # numeric order
    assert not causal.masks.is_annotated(10) and not causal.masks[10].any()  # missing PNG -> empty
    assert not causal.masks.is_annotated(25)
    np.testing.assert_array_equal(causal.masks[7], _labels(2) == 1)
    np.testing.assert_array_equal(multi.masks[7], _labels(2) > 0)  # union of ids 1 and 2
    assert causal.target_mask(21).sum() == 0 and causal.masks[21].sum() == 0  # beyond the annotated window
    assert multi.target_mask(18).sum() == 0 and multi.masks[18].sum() > 0  # outside the span: empty GT


def test_groundmore_helpers():
    assert clip_bounds("x_y_0959_1003") == (599, 603)
    assert span_frames("10:00", "10:02", "x_0959_1003") == (6, 17)
    assert parse_obj_ids("1, 2") == [1, 2] and parse_obj_ids(3) == [3] and parse_obj_ids("4") == [4]
    with pytest.raises(ValueError, match="MMSS"):
        clip_bounds("no_tail")


def test_groundmore_errors_name_the_file(tmp_path):
    vid = _groundmore(tmp_path)
    meta = json.loads((tmp_path / "test.json").read_text())
    meta["videos"][vid]["questions"]["0"]["obj_id"] = "one"
    meta["videos"]["../../etc_0000_0001"] = {"questions": {}}
    meta["videos"]["missing_0000_0005"] = {"questions": {"0": {}}}
    (tmp_path / "bad.json").write_text(json.dumps(meta))
    with pytest.raises(DatasetFormatError, match="bad.json"):
        read_groundmore(tmp_path, "bad.json")
    issues = []
    samples = read_groundmore(tmp_path, "bad.json", issues=issues)
    assert [s.id for s in samples] == [f"{vid}/1"]
    text = "\n".join(issues)
    assert "'one'" in text and "escapes" in text and "missing_0000_0005" in text
    (tmp_path / "broken.json").write_text("{")
    with pytest.raises(DatasetFormatError, match="broken.json: invalid JSON"):
        read_groundmore(tmp_path, "broken.json")


# ---------------------------------------------------------------- Ref-YouTube-VOS
def test_refytvos_reader(tmp_path):
    frames = ["00000", "00005", "00010"]
    for i, f in enumerate(frames):
        _jpg(tmp_path / "train" / "JPEGImages" / "vid1" / f"{f}.jpg", i)
        labels = _labels(i)
        if i == 2:
            labels[labels == 2] = 0  # object 2 leaves
        _palette_png(tmp_path / "train" / "Annotations" / "vid1" / f"{f}.png", labels)
    meta = {
        "videos": {
            "vid1": {
                "frames": frames,
                "expressions": {
                    "0": {"exp": "A man in red.", "obj_id": "1"},
                    "1": {"exp": "the dog", "obj_id": "2"},
                },
            }
        }
    }
    (tmp_path / "meta_expressions" / "train").mkdir(parents=True)
    (tmp_path / "meta_expressions" / "train" / "meta_expressions.json").write_text(json.dumps(meta))
    man, dog = read_refytvos(tmp_path, "train")
    assert man.obj_ids == [1] and man.span is None and man.extra["expression"]
    np.testing.assert_array_equal(man.masks[1], _labels(1) == 1)
    assert [dog.masks.present(i) for i in range(3)] == [True, True, False]
    assert dog.frame_path(2).name == "00010.jpg"


# ---------------------------------------------------------------- MeViS / ReVOS
def _rles(objects_per_frame):
    return [encode_rle(m) if m is not None else None for m in objects_per_frame]


def test_mevis_reader_union_and_null(tmp_path):
    split = tmp_path / "valid_u"
    frames = ["00000", "00001", "00002"]
    for f in frames:
        _jpg(split / "JPEGImages" / "0123456789ab" / f"{f}.jpg")
    a = [_labels(0) == 1, None, _labels(2) == 1]
    b = [None, None, _labels(2) == 2]
    mask_dict = {"7": _rles(a), "8": _rles(b)}
    meta = {
        "videos": {
            "0123456789ab": {
                "vid_id": 1,
                "frames": frames,
                "expressions": {"0": {"exp": "two things moving", "obj_id": [0, 1], "anno_id": [7, 8]}},
            }
        }
    }
    (split / "meta_expressions.json").write_text(json.dumps(meta))
    (split / "mask_dict.json").write_text(json.dumps(mask_dict))
    (sample,) = read_mevis(tmp_path, "valid_u")
    assert sample.obj_ids == [0, 1] and sample.masks.size == (H, W)
    np.testing.assert_array_equal(sample.masks[0], a[0])
    assert sample.masks.is_annotated(1) and not sample.masks[1].any()  # null on every object -> empty
    np.testing.assert_array_equal(sample.masks[2], _labels(2) > 0)
    assert [sample.masks.present(i) for i in range(3)] == [True, False, True]


def test_revos_reader_prefix_and_no_target(tmp_path):
    vid = "UVO/all/-fbscFfkh4M"
    frames = ["00000", "00001"]
    for f in frames:
        _jpg(tmp_path / "JPEGImages" / vid / f"{f}.jpg")
    meta = {
        "videos": {
            vid: {
                "vid_id": 0,
                "height": H,
                "width": W,
                "frames": frames,
                "expressions": {
                    "0": {"exp": "the person", "obj_id": [0], "anno_id": [3003019], "type_id": 0},
                    "1": {"exp": "which one will fall?", "obj_id": [0], "anno_id": [3003019], "type_id": 1},
                    "2": {"exp": "the flying elephant", "obj_id": [], "anno_id": [], "type_id": 2},
                },
            }
        }
    }
    (tmp_path / "meta_expressions_valid_.json").write_text(json.dumps(meta))
    (tmp_path / "mask_dict.json").write_text(
        json.dumps({"3003019": _rles([_labels(0) == 1, _labels(1) == 1])})
    )
    ref, reason, none = read_revos(tmp_path, "valid")
    assert ref.video.name == "-fbscFfkh4M" and ref.q_type == "referring" and reason.q_type == "reasoning"
    assert none.q_type == "no_target" and none.obj_ids == [] and none.masks.is_annotated(0)
    assert none.masks[1].shape == (H, W) and not none.masks[1].any()
    np.testing.assert_array_equal(reason.masks[1], _labels(1) == 1)
    meta["videos"]["../outside"] = meta["videos"][vid]
    (tmp_path / "meta_expressions_valid_.json").write_text(json.dumps(meta))
    with pytest.raises(DatasetFormatError, match="escapes"):
        read_revos(tmp_path, "valid")


# ---------------------------------------------------------------- samples.jsonl
def test_jsonl_round_trip(tmp_path):
    _groundmore(tmp_path)
    samples = read_groundmore(tmp_path, "test.json")
    assert write_samples_jsonl(samples, tmp_path / "samples.jsonl", tmp_path) == 2
    back = read_samples_jsonl(tmp_path, "samples.jsonl")
    for a, b in zip(samples, back):
        assert (a.id, a.question, a.span, a.obj_ids, a.frames, a.q_type) == (
            b.id,
            b.question,
            b.span,
            b.obj_ids,
            b.frames,
            b.q_type,
        )
        assert b.video == a.video and b.frame_ext == ".jpg"
        assert a.masks.annotated_indices() == b.masks.annotated_indices()
        for i in a.masks.annotated_indices():
            np.testing.assert_array_equal(a.masks[i], b.masks[i])
    line = json.loads((tmp_path / "samples.jsonl").read_text().splitlines()[0])
    line["video"] = "../elsewhere"
    (tmp_path / "bad.jsonl").write_text(json.dumps(line) + "\n" + "[1, 2]\n")
    issues = []
    assert read_samples_jsonl(tmp_path, "bad.jsonl", issues=issues) == []
    assert len(issues) == 2 and "bad.jsonl:1" in issues[0] and "bad.jsonl:2" in issues[1]
