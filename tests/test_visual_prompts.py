"""MotionSight visual prompts: the formulas on small arrays and the aggregator on constructed trajectories."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import mora.model.inference as inference
from mora.visual_prompts import (
    BoxWindow,
    aggregate_boxes,
    boxes_from_masks,
    choose_prompt,
    classify_query,
    crop_to_boxes,
    motion_blur,
    prepare_prompted_frames,
    spotlight,
    window_boxes,
)

_ORIGINAL_PREDICT = inference.predict


def _frames(T=5, H=40, W=60, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (T, H, W, 3), dtype=np.uint8)


def test_motion_blur_leaves_a_static_video_unchanged():
    frame = _frames(1)[0]
    static = np.stack([frame] * 9)
    np.testing.assert_array_equal(motion_blur(static), static)


def test_motion_blur_is_the_normalised_geometric_mean_of_past_frames():
    frames = _frames(9, 4, 5)
    out = motion_blur(frames, gamma=0.65, window=7)
    w = 0.65 ** np.arange(7)
    # frame 8 blends frames 8..2; frame 1 blends 1, 0 with weights renormalised (not darkened)
    expect8 = np.tensordot(w / w.sum(), frames[8 - np.arange(7)].astype(float), axes=1)
    expect1 = (frames[1] * 1.0 + frames[0] * 0.65) / 1.65
    np.testing.assert_array_equal(out[8], np.rint(expect8).astype(np.uint8))
    np.testing.assert_array_equal(out[1], np.rint(expect1).astype(np.uint8))
    np.testing.assert_array_equal(out[0], frames[0])
    # a bright square moving right leaves a fading trail behind it, brightest at its current place
    video = np.zeros((7, 10, 30, 3), np.uint8)
    for t in range(7):
        video[t, 3:6, 3 * t : 3 * t + 3] = 255
    trail = motion_blur(video)[6, 4, :, 0]
    assert trail[18:21].min() == trail.max() and 0 < trail[15] < trail[18] and 0 < trail[0] < trail[15]


def test_spotlight_keeps_the_padded_box_and_scales_the_rest_exactly():
    frames = _frames(3)
    boxes = np.array([[10, 5, 20, 15], [np.nan] * 4, [0, 0, 60, 40]], float)
    out = spotlight(frames, boxes, darken=0.9, pad=2)
    inside = np.zeros((40, 60), bool)
    inside[3:17, 8:22] = True
    np.testing.assert_array_equal(out[0][inside], frames[0][inside])
    np.testing.assert_array_equal(
        out[0][~inside], np.rint(frames[0][~inside] * np.float32(0.1)).astype(np.uint8)
    )
    np.testing.assert_array_equal(out[1], frames[1])  # no box: unchanged
    np.testing.assert_array_equal(out[2], frames[2])  # the whole frame is the box
    assert np.abs(out[0][~inside].astype(int) - frames[0][~inside].astype(int) // 10).max() <= 1


def test_spotlight_rejects_bad_boxes():
    with pytest.raises(ValueError, match=r"boxes must be \[T, 4\]"):
        spotlight(_frames(3), np.zeros((2, 4)))
    with pytest.raises(ValueError, match="uint8"):
        spotlight(_frames(3).astype(np.float32), np.zeros((3, 4)))


def test_crop_zooms_onto_the_box_without_stretching():
    frames = np.zeros((2, 40, 60, 3), np.uint8)
    frames[:, 10:20, 20:35] = 200  # a 15 x 10 box, the frame's 3:2 aspect
    out = crop_to_boxes(frames, np.array([[20, 10, 35, 20], [np.nan] * 4]), pad=0)
    assert out.shape == frames.shape
    assert (out[0] == 200).all()  # the crop is exactly the box, resized to the frame
    np.testing.assert_array_equal(out[1], frames[1])


def test_boxes_from_masks():
    masks = np.zeros((3, 8, 9), bool)
    masks[0, 2:5, 3:7] = True
    masks[2, 7, 8] = True
    boxes = boxes_from_masks(masks)
    np.testing.assert_array_equal(boxes[0], [3, 2, 7, 5])
    assert np.isnan(boxes[1]).all()
    np.testing.assert_array_equal(boxes[2], [8, 7, 9, 8])


def _track(centres, side=20):
    return np.array([[x - side / 2, y - side / 2, x + side / 2, y + side / 2] for x, y in centres], float)


def test_aggregator_static_subject_is_one_window():
    boxes = _track([(100 + (t % 2), 80) for t in range(12)])
    windows = aggregate_boxes(boxes, (200, 300))
    assert windows == [BoxWindow(0, 11, (90.0, 70.0, 111.0, 90.0))]


def test_aggregator_jump_after_three_boxes_opens_a_new_window():
    # 4 frames around x=50, then a jump of 150 px (> 0.3 * 200): two windows, each its own union
    boxes = _track([(50, 100)] * 4 + [(200, 100)] * 4)
    windows = aggregate_boxes(boxes, (200, 300))
    assert [(w.start, w.end) for w in windows] == [(0, 3), (4, 7)]
    assert windows[0].box == (40.0, 90.0, 60.0, 110.0) and windows[1].box == (190.0, 90.0, 210.0, 110.0)
    # the same jump after only two boxes stays in the first window
    early = aggregate_boxes(_track([(50, 100)] * 2 + [(200, 100)] * 4), (200, 300))
    assert [(w.start, w.end) for w in early][0] == (0, 2)


def test_aggregator_covers_every_frame_and_fills_gaps():
    boxes = np.full((10, 4), np.nan)
    boxes[2:5] = _track([(40, 40)] * 3)
    boxes[7:] = _track([(250, 150)] * 3)
    windows = aggregate_boxes(boxes, (200, 300))
    per_frame = window_boxes(windows, 10)
    assert not np.isnan(per_frame).any()  # full coverage, first window extended to frame 0
    assert windows[0].start == 0 and windows[-1].end == 9
    assert aggregate_boxes(np.full((4, 4), np.nan), (200, 300)) == [BoxWindow(0, 3, (0.0, 0.0, 300.0, 200.0))]


def test_aggregator_grows_tiny_boxes():
    windows = aggregate_boxes(np.array([[10, 10, 14, 50]] * 3, float), (200, 300))
    x0, y0, x1, y1 = windows[0].box
    assert (x1 - x0, y1 - y0) == (100.0, 40.0) and x0 == 0.0


@pytest.mark.parametrize(
    "question, kind, prompt",
    [
        ("Is the camera panning to the left?", "camera", "blur"),
        ("How does the camera move?", "camera", "blur"),
        ("How many times does the man jump?", "counting", "crop"),
        ("Which object moves up?", "object", "spotlight"),
        ("What made the red ball move?", "object", "spotlight"),
    ],
)
def test_query_classifier(question, kind, prompt):
    assert classify_query(question) == kind
    assert choose_prompt(question) == prompt


def test_prepare_prompted_frames():
    frames = _frames(4)
    masks = np.zeros((4, 40, 60), bool)
    masks[:, 10:20, 10:20] = True
    np.testing.assert_array_equal(prepare_prompted_frames(frames, "none"), frames)
    lit = prepare_prompted_frames(frames, "spotlight", masks, pad=0)
    np.testing.assert_array_equal(lit[:, 10:20, 10:20], frames[:, 10:20, 10:20])
    assert (lit[:, 30:] <= frames[:, 30:]).all() and (lit[:, 30:] < frames[:, 30:]).any()
    with pytest.raises(ValueError, match="needs the masks"):
        prepare_prompted_frames(frames, "spotlight")
    with pytest.raises(ValueError, match="visual prompt must be one of"):
        prepare_prompted_frames(frames, "glow", masks)


def _spy(monkeypatch, obj, name, calls):
    original = getattr(obj, name)

    def spy(*args, **kwargs):
        calls.append(args[0].detach().clone())
        return original(*args, **kwargs)

    monkeypatch.setattr(obj, name, spy)


@pytest.mark.parametrize("prompt", ["spotlight", "crop", "blur", "auto"])
def test_two_pass_inference_prompts_the_language_models_frames_only(monkeypatch, prompt):
    from model_testing import moving_square_clip, tiny_model

    from mora.model.prediction import Prediction

    model = tiny_model("llava", "sam", seed=2).eval()
    frames, truth = moving_square_clip(height=120, width=160)  # room to crop around the square's path
    T = len(frames)
    first_calls = []

    def first_pass(model_, video, question, **kwargs):  # the first pass answers with the true square
        first_calls.append(kwargs)
        np.testing.assert_array_equal(video, frames)
        return Prediction(truth, (0, T - 1), np.ones(T, np.float32), "ok")

    monkeypatch.setattr(inference, "predict", first_pass)
    backbone, engine = [], []
    _spy(monkeypatch, model, "encode_video", backbone)
    _spy(monkeypatch, model.mask_engine, "encode", engine)
    question = "Which object moves right?"
    pred = _ORIGINAL_PREDICT(model, frames, question, mode="template", visual_prompt=prompt)
    resolved = choose_prompt(question) if prompt == "auto" else prompt
    assert pred.masks.shape == truth.shape
    assert len(first_calls) == (1 if resolved in ("spotlight", "crop") else 0)
    prompted = prepare_prompted_frames(frames, resolved, truth if resolved != "blur" else None)
    assert not np.array_equal(prompted, frames)
    expected = model.processor.prepare_frames(prompted)[0]
    torch.testing.assert_close(backbone[0][0], expected)  # the language model's frames carry the prompt
    original = model.processor.prepare_frames(frames)[1]
    torch.testing.assert_close(torch.cat(engine), original[: len(torch.cat(engine))])  # the engine's do not


def test_unknown_visual_prompt_is_rejected():
    from model_testing import moving_square_clip, tiny_model

    frames, _ = moving_square_clip()
    with pytest.raises(ValueError, match="visual_prompt must be one of"):
        tiny_model("llava", "sam").predict(frames, "Which?", visual_prompt="glow")
