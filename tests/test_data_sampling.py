"""Frame sampling, TrainingExample construction, mixtures and the collator feeding the tiny model."""

import dataclasses

import numpy as np
import pytest
import torch

from data_prep import synthetic
from mora.constants import ANSWER_NO_SPAN, ANSWER_WITH_SPAN
from mora.data.collator import MoRACollator
from mora.data.dataset import DatasetSpec, MixtureDataset, build_dataset
from mora.data.masks import EmptyMaskTrack, RLEMaskTrack, encode_rle
from mora.data.sampling import SamplingConfig, jittered_linspace, sample_indices
from mora.data.schema import TrainingExample, VideoSample
from mora.data.templates import question_for


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp("syn") / "d"
    synthetic.generate_dataset(root, num_videos=12, seed=0)
    return root


def test_jittered_linspace_covers_the_clip():
    rng = np.random.default_rng(0)
    for _ in range(50):
        idx = jittered_linspace(30, 8, rng)
        assert len(idx) == 8 and idx == sorted(idx) and len(set(idx)) == 8
        edges = np.linspace(0, 30, 9)
        assert all(edges[k] - 1 < i < edges[k + 1] for k, i in enumerate(idx))
    assert jittered_linspace(30, 20, None) == np.linspace(0, 29, 20).astype(int).tolist()
    assert jittered_linspace(3, 5, rng) == [0, 0, 1, 1, 2]


def test_groundmore_examples(root):
    ds = build_dataset(
        DatasetSpec(format="groundmore", root=str(root), meta="train.json"), num_frames=8, seed=0
    )
    for i in range(len(ds)):
        e = ds[i]
        sample = ds.samples[i]
        assert e.frames.shape == (8, 64, 64, 3) and e.masks.shape == (8, 64, 64)
        assert e.question == sample.question and e.answer == ANSWER_WITH_SPAN
        inside = [t for t, f in enumerate(e.frame_indices) if sample.span[0] <= f <= sample.span[1]]
        assert inside and e.span == (inside[0], inside[-1])
        assert e.mask_valid.tolist() == [t in inside for t in range(8)]
        assert all(e.masks[t].any() for t in inside) and not e.masks[~e.mask_valid].any()
    first = [ds[i].frame_indices for i in range(5)]
    assert first == [ds[i].frame_indices for i in range(5)]  # deterministic per (seed, epoch, index)
    ds.set_epoch(1)
    assert first != [ds[i].frame_indices for i in range(5)]  # fresh jitter each epoch


def test_short_span_always_sampled():
    sample = VideoSample(
        id="v/0",
        source="t",
        video_id="v",
        video=None,
        frames=[str(i) for i in range(100)],
        fps=6.0,
        height=4,
        width=4,
        question="q",
        answer=None,
        q_type=None,
        obj_ids=[1],
        span=(50, 50),
        masks=EmptyMaskTrack(100, (4, 4), annotated=False),
    )
    rng = np.random.default_rng(0)
    for _ in range(20):
        assert 50 in sample_indices(sample, SamplingConfig(num_frames=4), rng)


def test_target_sampling_prefers_frames_with_the_target():
    present = np.zeros((40, 4, 4), bool)
    present[30:34, 1, 1] = True  # the target is visible on frames 30..33 only
    sample = VideoSample(
        id="v/0",
        source="mevis",
        video_id="v",
        video=None,
        frames=[str(i) for i in range(40)],
        fps=None,
        height=4,
        width=4,
        question="q",
        answer=None,
        q_type=None,
        obj_ids=[1],
        span=None,
        masks=RLEMaskTrack([[encode_rle(m) for m in present]], num_frames=40),
    )
    rng = np.random.default_rng(0)
    for _ in range(20):
        idx = sample_indices(sample, SamplingConfig(num_frames=8), rng)
        assert len(idx) == 8 and idx == sorted(idx)
        assert sum(30 <= i <= 33 for i in idx) >= 4  # half from the target's frames, the rest as context
        assert any(i < 30 or i > 33 for i in idx)


def test_max_side_and_no_span(root):
    spec = DatasetSpec(format="groundmore", root=str(root), meta="train.json", max_side=32, use_span=False)
    ds = build_dataset(spec, num_frames=6, seed=1)
    e = ds[0]
    assert e.frames.shape == (6, 32, 32, 3) and e.masks.shape == (6, 32, 32)
    assert e.answer == ANSWER_NO_SPAN and e.span is None
    annotated = [ds.samples[0].masks.is_annotated(i) for i in e.frame_indices]
    assert e.mask_valid.tolist() == annotated


def test_referring_question_templates():
    sample = VideoSample(
        id="v/0",
        source="refytvos",
        video_id="v",
        video=None,
        frames=None,
        fps=None,
        height=None,
        width=None,
        question="A man in red.",
        answer=None,
        q_type=None,
        obj_ids=[1],
        span=None,
        masks=EmptyMaskTrack(1, (1, 1), annotated=False),
        extra={"expression": True},
    )
    texts = {question_for(sample, np.random.default_rng(s)) for s in range(20)}
    assert len(texts) > 1 and all("a man in red" in t for t in texts)
    sample.question = "Which man will fall?"
    assert question_for(sample, np.random.default_rng(0)) == "Which man will fall?"


def test_mixture_ratios(root):
    spec = DatasetSpec(format="groundmore", root=str(root), meta="train.json")
    a = build_dataset(spec, num_frames=4, seed=0)
    b = build_dataset(
        DatasetSpec(format="groundmore", root=str(root), meta="test.json"), num_frames=4, seed=0
    )
    mix = MixtureDataset([a, b], [1.0, 3.0], length=2000, seed=0)
    picks = [mix.choose(i)[0] for i in range(2000)]
    assert abs(np.mean(picks) - 0.75) < 0.04
    assert isinstance(mix[7], TrainingExample)
    with pytest.raises(ValueError, match="ratio"):
        MixtureDataset([a, b], [1.0], length=10, seed=0)


def test_bad_specs(tmp_path, root):
    with pytest.raises(ValueError, match="format"):
        DatasetSpec(format="davis", root=str(root))
    with pytest.raises(FileNotFoundError, match="not a folder"):
        DatasetSpec(format="groundmore", root=str(tmp_path / "nope"))
    with pytest.raises(ValueError, match="no samples"):
        build_dataset(
            DatasetSpec(format="groundmore", root=str(root), meta="test.json", q_types=["X"]),
            num_frames=4,
            seed=0,
        )
    with pytest.raises(ValueError, match="num_frames"):
        SamplingConfig(num_frames=0)


def test_collator_output_trains_the_tiny_model(root):
    presets = pytest.importorskip("mora.presets")
    from mora.model.modeling_mora import MoRAForVideoGrounding
    from mora.processing.processing_mora import MoRAProcessor
    from mora.processing.tokenizer import build_tiny_tokenizer

    config = presets.tiny(num_frames=8)
    processor = MoRAProcessor.from_config(config, build_tiny_tokenizer())
    model = MoRAForVideoGrounding(config)
    ds = build_dataset(
        DatasetSpec(format="groundmore", root=str(root), meta="train.json"), num_frames=8, seed=0
    )
    batch = MoRACollator(processor)([ds[0], ds[1], ds[2]])
    assert batch["gt_masks"].shape[:2] == (3, 8) and batch["span_valid"].all()
    span = ds[1].span
    assert batch["span_labels"][1].tolist() == [float(span[0] <= t <= span[1]) for t in range(8)]
    out = model(**batch)
    assert torch.isfinite(out.loss)
    out.loss.backward()
    with pytest.raises(ValueError, match="empty"):
        MoRACollator(processor)([])


def test_video_groups_share_one_draw_of_frames_and_collate_to_one_encoding(root):
    from mora.presets import tiny
    from mora.processing.processing_mora import MoRAProcessor
    from mora.processing.tokenizer import build_tiny_tokenizer

    spec = dict(format="groundmore", root=str(root), meta="train.json")
    single = build_dataset(DatasetSpec(**spec), num_frames=8, seed=0)
    grouped = build_dataset(DatasetSpec(**spec, video_groups=True), num_frames=8, seed=0)
    videos = {str(s.video) for s in single.samples}
    assert len(grouped) == len(videos) < len(single)
    items = [grouped[i] for i in range(3)]
    assert sum(len(g) for g in items) > 3
    assert grouped.item_sizes()[:3] == [len(g) for g in items] and single.item_sizes() == [1] * len(single)
    assert sum(grouped.item_sizes()) == len(single)
    for group in items:
        assert len({e.sample_id for e in group}) == len(group)
        assert all(e.frames is group[0].frames and e.frame_indices == group[0].frame_indices for e in group)
    processor = MoRAProcessor.from_config(tiny(num_frames=8), build_tiny_tokenizer())
    batch = MoRACollator(processor)(items)
    B = sum(len(g) for g in items)
    assert batch["pixel_values"].shape[0] == 3 and batch["input_ids"].shape[0] == B
    assert batch["video_index"].tolist() == [v for v, g in enumerate(items) for _ in g]
    assert batch["gt_masks"].shape[:2] == (B, 8)


def test_video_groups_decode_each_label_map_once_with_the_same_masks(root, monkeypatch):
    from mora.data import masks as masks_module

    reads = []
    real = masks_module._read_label_png
    monkeypatch.setattr(masks_module, "_read_label_png", lambda path: reads.append(path) or real(path))
    spec = DatasetSpec(
        format="groundmore", root=str(root), meta="train.json", video_groups=True, mask_outside_span=True
    )
    group = build_dataset(spec, num_frames=8, seed=0)[0]
    assert len(group) > 1 and len(reads) == len(set(reads)) == 8  # one label map per sampled frame
    single = build_dataset(dataclasses.replace(spec, video_groups=False), num_frames=8, seed=0)
    samples = {s.id: s for s in single.samples}
    for example in group:  # the same masks as reading every frame of that question alone
        sample = samples[example.sample_id]
        expected = np.stack(
            [masks_module.read_label_png(sample.masks.files[i]) for i in example.frame_indices]
        )
        assert np.array_equal(example.masks, np.isin(expected, sample.obj_ids))
    assert masks_module._SHARED_LABELS.get() is None  # the cache ended with the group


def test_masks_outside_the_span_are_supervised_on_request(root):
    spec = dict(format="groundmore", root=str(root), meta="train.json")
    inside = build_dataset(DatasetSpec(**spec), num_frames=12, seed=0)
    everywhere = build_dataset(DatasetSpec(**spec, mask_outside_span=True), num_frames=12, seed=0)
    seen_outside = False
    for i in range(len(inside)):
        a, b = inside[i], everywhere[i]
        assert a.frame_indices == b.frame_indices and a.span == b.span
        in_span = np.array([a.span[0] <= t <= a.span[1] for t in range(12)])
        assert np.array_equal(a.mask_valid, in_span)  # the generator writes masks on every frame
        assert b.mask_valid.all()
        assert np.array_equal(a.masks[in_span], b.masks[in_span]) and not a.masks[~in_span].any()
        seen_outside |= bool(b.masks[~in_span].any())  # the answer object is there outside its motion
    assert seen_outside


def _answer_track(sample, indices):
    return np.stack([sample.masks[i] for i in indices])


def test_spotlight_augmentation_darkens_the_language_models_frames_around_the_answer(root):
    from mora.presets import tiny
    from mora.processing.processing_mora import MoRAProcessor
    from mora.processing.tokenizer import build_tiny_tokenizer

    spec = dict(format="groundmore", root=str(root), meta="train.json", mask_outside_span=True)
    plain = build_dataset(DatasetSpec(**spec), num_frames=8, seed=0)
    lit = build_dataset(
        DatasetSpec(**spec, spotlight_prob=1.0, spotlight_distractor_prob=0.0), num_frames=8, seed=0
    )
    for i in range(6):
        a, b = plain[i], lit[i]
        assert a.llm_frames is None and np.array_equal(a.frames, b.frames)  # the engine's frames are original
        track = _answer_track(lit.samples[i], b.frame_indices)
        changed = (b.llm_frames != b.frames).any(axis=-1)  # [T, H, W]
        assert changed[track].mean() < 0.2  # the answer object stays lit
        assert changed[~track & (b.frames.max(-1) > 20)].mean() > 0.3  # much of the rest is darkened
        assert (b.llm_frames.astype(int) <= b.frames.astype(int)).all()
    processor = MoRAProcessor.from_config(tiny(num_frames=8), build_tiny_tokenizer())
    batch = MoRACollator(processor)([lit[0], plain[0]])
    assert batch["pixel_values"].shape[0] == 2
    torch.testing.assert_close(batch["pixel_values"][0], processor.prepare_frames(lit[0].llm_frames)[0])
    torch.testing.assert_close(batch["mask_pixel_values"][0], batch["mask_pixel_values"][1])


def test_spotlight_distractors_light_another_object_of_the_video(root):
    spec = dict(format="groundmore", root=str(root), meta="train.json", video_groups=True)
    darkened = {}
    for p in (0.0, 1.0):
        ds = build_dataset(
            DatasetSpec(**spec, spotlight_prob=1.0, spotlight_distractor_prob=p), num_frames=8, seed=0
        )
        by_id = {s.id: s for s in ds.samples}
        own_dark, other_lit = [], []
        for g in range(len(ds)):
            group = ds[g]
            assert len({id(e.llm_frames) for e in group}) == len(group)  # each question its own prompt
            for e in group:
                sample = by_id[e.sample_id]
                others = [by_id[o.sample_id] for o in group]
                others = [o for o in others if set(o.obj_ids).isdisjoint(sample.obj_ids)]
                if not others:
                    continue
                own = _answer_track(sample, e.frame_indices)
                changed = (e.llm_frames != e.frames).any(axis=-1)
                own_dark.append(changed[own].mean())
                tracks = [_answer_track(o, e.frame_indices) & ~own for o in others]
                other_lit.append(max(1 - changed[t].mean() for t in tracks if t.any()))
        darkened[p] = (np.mean(own_dark), np.mean(other_lit))
    assert darkened[0.0][0] < 0.15 < 0.5 < darkened[1.0][0]  # the answer is lit, or (distractors) mostly not
    assert darkened[1.0][1] > 0.8  # while another object of the video is
    with pytest.raises(ValueError, match="spotlight_prob"):
        SamplingConfig(spotlight_prob=1.5)
