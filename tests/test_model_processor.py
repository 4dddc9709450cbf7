"""MoRAProcessor: templates, placeholder expansion, labels, targets, count checks, save/load."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from model_testing import NUM_FRAMES, moving_square_clip, tiny_config, training_batch

from mora.constants import ANSWER_WITH_SPAN, IGNORE_INDEX, LOC_TOKEN, SEG_TOKEN
from mora.processing.processing_mora import MoRAProcessor
from mora.processing.tokenizer import build_tiny_tokenizer
from mora.processing.visual_layout import VisualLayout


@pytest.fixture(scope="module", params=["llava", "qwen2_5_vl", "qwen3_vl"])
def processor(request):
    return MoRAProcessor.from_config(tiny_config(request.param, "sam2"), build_tiny_tokenizer())


def test_tiny_tokenizer_is_deterministic_with_special_tokens():
    a, b = build_tiny_tokenizer(), build_tiny_tokenizer()
    assert a.get_vocab() == b.get_vocab()
    assert 200 <= len(a) <= 1000
    for token in (SEG_TOKEN, LOC_TOKEN):
        ids = a(f"is {token}.", add_special_tokens=False).input_ids
        assert a.convert_tokens_to_ids(token) in ids  # never split into pieces


def test_token_ids_are_stored_in_the_config(processor):
    config = tiny_config(processor.layout.backbone_family, "sam2")
    assert config.seg_token_id == processor.tokenizer.convert_tokens_to_ids(SEG_TOKEN)
    assert config.loc_token_id == processor.tokenizer.convert_tokens_to_ids(LOC_TOKEN)
    assert config.seg_token_id != config.loc_token_id


def test_placeholders_expand_to_the_layout_counts(processor):
    batch = training_batch(processor)
    layout = processor.layout
    ids = batch["input_ids"]
    for row in range(2):
        assert int((ids[row] == processor.token_ids.video).sum()) == layout.num_video_tokens(NUM_FRAMES)
        assert int((ids[row] == processor.token_ids.motion).sum()) == layout.num_motion_tokens(NUM_FRAMES)
    expected = (NUM_FRAMES - 1) * layout.motion_grid**2 if layout.use_motion_tokens else 0
    assert layout.num_motion_tokens(NUM_FRAMES) == expected


def test_labels_cover_the_answer_only(processor):
    batch = training_batch(processor)
    labels, ids, attention = batch["labels"], batch["input_ids"], batch["attention_mask"]
    kept = labels[0] != IGNORE_INDEX
    assert torch.equal(labels[0][kept], ids[0][kept])
    answer = processor.decode(ids[0][kept].tolist())
    assert answer == ANSWER_WITH_SPAN
    assert not bool((labels[attention == 0] != IGNORE_INDEX).any())  # padding is ignored


def test_question_mask_marks_the_question_words_only(processor):
    clip, _ = moving_square_clip()
    questions = ["Which object moves to the left?", "Why did the red square stop?"]
    batch = processor([clip, clip], questions, answers=[ANSWER_WITH_SPAN] * 2)
    for row, question in enumerate(questions):
        marked = batch["question_mask"][row].bool()
        assert not bool(marked[batch["attention_mask"][row] == 0].any())
        assert not bool((batch["labels"][row][marked] != IGNORE_INDEX).any())  # never the answer
        assert processor.tokenizer.decode(batch["input_ids"][row][marked]).strip() == question
        positions = marked.nonzero().flatten()
        assert int(positions[-1] - positions[0]) + 1 == len(positions)  # one contiguous run


def test_right_padding(processor):
    clip, _ = moving_square_clip()
    batch = processor(
        [clip, clip], ["Why?", "Which red square moves right after the blue one?"], answers=["A", "B"]
    )
    attention, ids = batch["attention_mask"], batch["input_ids"]
    short = int(attention[0].sum())
    assert short < ids.shape[1] and int(attention[1].sum()) == ids.shape[1]
    assert attention[0, :short].all() and not attention[0, short:].any()
    assert (ids[0, short:] == processor.token_ids.pad).all()
    assert (batch["labels"][0, short:] == IGNORE_INDEX).all()


def test_targets_shapes_and_values(processor):
    batch = training_batch(processor)
    S = processor.mask_image_size
    assert batch["pixel_values"].shape == (
        2,
        NUM_FRAMES,
        3,
        processor.backbone_image_size,
        processor.backbone_image_size,
    )
    assert batch["mask_pixel_values"].shape == (2, NUM_FRAMES, 3, S, S)
    assert batch["gt_masks"].shape == (2, NUM_FRAMES, S, S)
    assert batch["gt_masks"].sum() > 0
    assert batch["mask_valid"][1].tolist() == [True, True, False, True, True, False]
    assert batch["span_labels"][0].tolist() == [0, 1, 1, 1, 0, 0]
    assert batch["span_valid"].tolist() == [True, False]


def test_seg_count_mismatch_between_answers_and_masks_raises(processor):
    clip, masks = moving_square_clip()
    with pytest.raises(ValueError, match=r"answer 0 has 2 \[SEG\] tokens but 1 mask target"):
        processor([clip], ["q"], answers=["[SEG] and [SEG] [LOC]"], masks=[masks])
    with pytest.raises(ValueError, match=r"answer 0 has 0 \[LOC\] tokens but 1 span"):
        processor([clip], ["q"], answers=["It is [SEG]."], masks=[masks], spans=[(0, 2)])
    with pytest.raises(ValueError, match="masks has 2 entries but there are 1 questions"):
        processor([clip], ["q"], answers=["[SEG]"], masks=[masks, masks])
    with pytest.raises(ValueError, match="not an inclusive range"):
        processor([clip], ["q"], answers=[ANSWER_WITH_SPAN], masks=[masks], spans=[(3, NUM_FRAMES)])


def test_inference_batch_has_no_labels(processor):
    clip, _ = moving_square_clip()
    batch = processor([clip], ["Which object moves right?"])
    assert "labels" not in batch and "gt_masks" not in batch
    qwen = {"mm_token_type_ids"} if processor.layout.backbone_family.startswith("qwen") else set()
    assert set(batch) == {
        "input_ids",
        "attention_mask",
        "question_mask",
        "pixel_values",
        "mask_pixel_values",
        *qwen,
    }
    if qwen:  # what transformers' Qwen processors give: 2 at the video tokens, 0 elsewhere
        video = batch["input_ids"] == processor.token_ids.video
        assert torch.equal(batch["mm_token_type_ids"], video.to(torch.int) * 2)


def test_processor_save_and_load_round_trip(processor, tmp_path):
    processor.save_pretrained(tmp_path)
    loaded = MoRAProcessor.from_pretrained(tmp_path)
    assert loaded.settings() == processor.settings()
    assert loaded.token_ids == processor.token_ids
    clip, masks = moving_square_clip()
    args = ([clip], ["Which object moves right?"], [ANSWER_WITH_SPAN], [masks])
    a, b = processor(*args), loaded(*args)
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_layout_counts_per_family():
    llava = VisualLayout("llava", 64, 8, True, 1, 1, 8, True, 4)
    assert llava.num_video_tokens(20) == 64 + 8 and llava.num_motion_tokens(20) == 7 * 16
    qwen = VisualLayout("qwen2_5_vl", 64, 8, False, 2, 2, 8, False, 4)
    assert qwen.num_video_tokens(5) == 3 * 16 and qwen.num_motion_tokens(5) == 0
    assert qwen.video_segments(5) == [(None, 3 * 16)]
    qwen3 = VisualLayout("qwen3_vl", 64, 8, False, 2, 2, 8, False, 4, frame_rate=2.0)
    assert qwen3.num_video_tokens(5) == 3 * 16
    # one timestamped group per temporal patch: frames (0, 1), (2, 3), (4, 4 repeated) at 2 fps
    assert qwen3.video_segments(5) == [("<0.2 seconds>", 16), ("<1.2 seconds>", 16), ("<2.0 seconds>", 16)]
    # 20 frames, 8 seen by the language model: indices 0 3 5 8 11 14 16 19, timestamps of pairs at 10 fps
    ten = VisualLayout("qwen3_vl", 64, 8, False, 2, 2, 8, False, 4, frame_rate=10.0)
    assert [label for label, _ in ten.video_segments(20)] == [
        "<0.1 seconds>",
        "<0.7 seconds>",
        "<1.2 seconds>",
        "<1.8 seconds>",
    ]


def test_frames_as_pil_list_match_array(processor):
    from PIL import Image

    clip, _ = moving_square_clip()
    a = processor([clip], ["q"])
    b = processor([[Image.fromarray(f) for f in clip]], ["q"])
    assert torch.equal(a["pixel_values"], b["pixel_values"])
    assert np.isclose(float(a["mask_pixel_values"].std()), float(b["mask_pixel_values"].std()))
