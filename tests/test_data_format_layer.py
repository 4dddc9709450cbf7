"""Training readers and evaluators read every dataset layout through one format layer.

For each fixture layout the tests write (GroundMoRe with ``frame_<i>``, 6- and 7-digit stems, the
synthetic generator's output, a folder of digit-free PNG stems; MeViS, ReVOS, Ref-YouTube-VOS), the
evaluator must give the model the same frame files, in the same order, as the training reader lists,
and GroundMoRe's scored ground truth must be the reader's target masks on the sampled frames.
"""

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from data_prep import synthetic
from mora.data.readers.groundmore import read_groundmore
from mora.data.readers.mevis import read_mevis, read_revos
from mora.data.readers.refytvos import read_refytvos
from mora.evaluation.groundmore import build_groundmore, sample_indices
from mora.evaluation.mevis import build_mevis_jobs, revos_paths
from mora.evaluation.refytvos import build_refytvos_jobs
from tests import test_data_readers, test_eval_benchmarks, test_eval_groundmore


def _digit_free_groundmore(root: Path) -> None:
    """Frame stems without digits (sorted by name) next to numbered ones, frames stored as PNG."""
    vid = "nodigits_0010_0012"
    images = root / "annotations" / vid / "images"
    images.mkdir(parents=True)
    for name in ("b", "a", "frame_2", "frame_10", "c"):
        Image.fromarray(np.zeros((6, 8, 3), np.uint8)).save(images / f"{name}.png")
    question = {"question": "q", "obj_id": "1", "action_start": "00:10", "action_end": "00:11"}
    (root / "test.json").write_text(json.dumps({"videos": {vid: {"questions": {"0": question}}}}))


GROUNDMORE_LAYOUTS = {
    "frame_i": lambda root: test_eval_groundmore.make_dataset(root),
    "6_digits": lambda root: test_data_readers._groundmore(root, digits=6),
    "7_digits": lambda root: test_data_readers._groundmore(root, digits=7),
    "synthetic": lambda root: synthetic.generate_dataset(root, num_videos=4, seed=0, test_fraction=0.5),
    "digit_free_png": _digit_free_groundmore,
}


@pytest.mark.parametrize("layout", sorted(GROUNDMORE_LAYOUTS))
def test_groundmore_evaluator_reads_what_training_reads(tmp_path, layout):
    root = tmp_path / layout
    GROUNDMORE_LAYOUTS[layout](root)
    samples = {s.id: s for s in read_groundmore(root, "test.json")}
    jobs, items = build_groundmore(root, "test.json")
    assert samples and len(items) == len(samples) == len(jobs)
    for job, item in zip(jobs, items):
        sample = samples[f"{item.video_id}/{item.question_id}"]
        idx = sample_indices(sample.num_frames)
        assert item.frame_indices == job.frame_indices == idx
        assert item.frame_paths == [sample.frame_path(i) for i in idx]
        assert job.gt_span == sample.span
        expected = np.stack([sample.target_mask(i) for i in idx])
        np.testing.assert_array_equal(job.gt.load(), expected)


def test_mevis_and_revos_evaluators_read_what_training_reads(tmp_path):
    mevis_split = tmp_path / "mevis" / "valid_u"
    test_eval_benchmarks.make_rle_split(mevis_split)
    test_eval_benchmarks.make_rle_split(
        tmp_path / "revos", meta_name="meta_expressions_valid_.json", revos=True
    )
    cases = [
        (
            read_mevis(tmp_path / "mevis", "valid_u"),
            build_mevis_jobs(
                mevis_split / "meta_expressions.json",
                mevis_split / "JPEGImages",
                mevis_split / "mask_dict.json",
            ),
        ),
        (
            read_revos(tmp_path / "revos", "valid"),
            build_mevis_jobs(*revos_paths(tmp_path / "revos", "valid")),
        ),
    ]
    for samples, (jobs, items) in cases:
        _assert_same_frames(samples, items)
        for job in jobs:
            sample = next(s for s in samples if s.id == f"{job.video_id}/{job.question_id}")
            expected = np.stack([sample.target_mask(i) for i in range(sample.num_frames)])
            np.testing.assert_array_equal(job.gt.load(), expected)


def test_refytvos_evaluator_reads_what_training_reads(tmp_path):
    root = tmp_path / "rytvos"
    exps = {"0": {"exp": "first", "obj_id": "1"}, "1": {"exp": "second", "obj_id": "2"}}
    test_eval_benchmarks.make_palette(root, "train", {"a": exps, "b": exps}, with_ann=True)
    samples = read_refytvos(root, "train")
    videos = json.loads((root / "meta_expressions" / "train" / "meta_expressions.json").read_text())["videos"]
    jobs, items = build_refytvos_jobs(root, "train", videos)
    _assert_same_frames(samples, items)
    for job in jobs:
        sample = next(s for s in samples if s.id == f"{job.video_id}/{job.question_id}")
        expected = np.stack([sample.target_mask(i) for i in range(sample.num_frames)])
        np.testing.assert_array_equal(job.gt.load(), expected)


def _assert_same_frames(samples, items) -> None:
    assert len(samples) == len(items) > 0
    by_id = {s.id: s for s in samples}
    for item in items:
        sample = by_id[f"{item.video_id}/{item.question_id}"]
        assert item.frame_indices == list(range(sample.num_frames))
        assert item.frame_paths == [sample.frame_path(i) for i in item.frame_indices]
