"""The synthetic motion-reasoning dataset: determinism, format, and answers that follow from the motion."""

import json

import numpy as np
import pytest

from data_prep import synthetic
from mora.constants import GROUNDMORE_Q_TYPES
from mora.data.readers.groundmore import read_groundmore, span_frames
from mora.data.synthetic_plan import SceneSettings
from mora.data.synthetic_questions import candidate_questions
from mora.data.synthetic_scene import COLOURS, render


def _files(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic") / "d"
    synthetic.generate_dataset(root, num_videos=40, seed=3)
    return root


def test_same_seed_gives_identical_files(dataset, tmp_path):
    synthetic.generate_dataset(tmp_path / "again", num_videos=40, seed=3)
    assert _files(dataset) == _files(tmp_path / "again")
    synthetic.generate_dataset(tmp_path / "other", num_videos=40, seed=4)
    assert _files(dataset) != _files(tmp_path / "other")
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary leftovers


def test_layout_and_question_types(dataset):
    assert {p.name for p in dataset.iterdir()} == {"train.json", "val.json", "test.json", "annotations"}
    samples = [s for name in ("train.json", "val.json", "test.json") for s in read_groundmore(dataset, name)]
    assert {s.q_type for s in samples} == set(GROUNDMORE_Q_TYPES)
    for s in samples:
        assert s.video_id[-10] == "_" and s.video_id[-5] == "_"
        assert 24 <= s.num_frames <= 36 and s.num_frames % 6 == 0
        assert (s.height, s.width) == (64, 64)
        assert s.frames[0] == "frame_000000"
    test_ids = {s.video_id for s in read_groundmore(dataset, "test.json")}
    train_ids = {s.video_id for s in read_groundmore(dataset, "train.json")}
    assert test_ids and not test_ids & train_ids


def test_masks_are_where_the_objects_are(dataset):
    for s in read_groundmore(dataset, "val.json"):
        from mora.data.video import read_video

        frames, _, _ = read_video(s.video)
        for i in s.masks.annotated_indices():
            mask = s.masks[i]
            assert mask.any(), f"{s.id}: empty answer mask on annotated frame {i}"
            pixels = frames[i][mask].astype(int)
            # every mask pixel has one of the saturated object colours (JPEG-close), not background grey
            distance = np.min([np.abs(pixels - np.array(c)).max(1) for c in COLOURS.values()], axis=0)
            assert np.median(distance) < 30


def test_span_is_exactly_when_the_answer_object_moves(dataset):
    for s in read_groundmore(dataset, "train.json")[:40]:
        index = int(s.video_id[5:10])
        video = synthetic.generate_video(3, index, SceneSettings())
        _, labels = render(video.scene)
        obj = s.obj_ids[0]
        moved = [not np.array_equal(labels[t] == obj, labels[t - 1] == obj) for t in range(1, len(labels))]
        moving_frames = [t + 1 for t, m in enumerate(moved) if m]
        if video.scene.offsets(obj - 1)[0].any():  # already displaced on frame 0: it moves from the start
            moving_frames.insert(0, 0)
        assert moving_frames == list(range(s.span[0], s.span[1] + 1)), s.id
        q = json.loads((dataset / "train.json").read_text())["videos"][s.video_id]["questions"][
            s.extra["qid"]
        ]
        assert span_frames(q["action_start"], q["action_end"], s.video_id) == s.span


def test_answers_follow_the_scripted_events():
    settings = SceneSettings()
    seen = set()
    for index in range(60):
        video = synthetic.generate_video(11, index, settings)
        scene = video.scene
        boxes = scene.boxes()
        for q_type, questions in candidate_questions(scene).items():
            for q in questions:
                seen.add(q_type)
                answer, subject = scene.objects[q.answer], q.subject
                assert answer.motion is not None and (q.start, q.end) == (
                    answer.motion.start,
                    answer.motion.end,
                )
                if q_type == "Causal":  # the answer triggered the subject's motion
                    m = scene.objects[subject].motion
                    assert m.cause == q.answer
                    if m.kind == "push":  # ... by touching it on the frame before it moved
                        a, b = boxes[q.answer, m.start * 6 - 1], boxes[subject, m.start * 6 - 1]
                        gap = max(a[0] - b[2], b[0] - a[2], a[1] - b[3], b[1] - a[3])
                        assert gap == 0
                elif q_type == "Counterfactual":
                    assert answer.motion.cause == subject
                elif q_type == "Sequential":
                    other = scene.objects[subject].motion
                    assert answer.motion.start == other.end or answer.motion.end == other.start
                else:
                    movers = [o for o in scene.objects if o.motion is not None]
                    same = [o for o in movers if o.motion.direction == answer.motion.direction]
                    assert same == [answer]
    assert seen == set(GROUNDMORE_Q_TYPES)


def test_empty_baseline_is_near_half(dataset):
    scores = []
    for s in read_groundmore(dataset, "train.json"):
        idx = np.linspace(0, s.num_frames - 1, 20).astype(int)
        scores.append(np.mean([0.0 if s.target_mask(i).any() else 1.0 for i in idx]))
    assert 0.35 < np.mean(scores) < 0.65


def test_cli_errors(tmp_path, capsys):
    out = tmp_path / "d"
    assert synthetic.main(["--out", str(out), "--num-videos", "3", "--seed", "0"]) == 0
    assert synthetic.main(["--out", str(out), "--num-videos", "3"]) == 2
    assert "exists" in capsys.readouterr().err
    assert synthetic.main(["--out", str(tmp_path / "e"), "--num-videos", "3", "--frames", "20", "30"]) == 2
    assert "--frames" in capsys.readouterr().err
    assert synthetic.main(["--out", str(tmp_path / "f"), "--num-videos", "0"]) == 2
    assert not (tmp_path / "e").exists() and not (tmp_path / "f").exists()
