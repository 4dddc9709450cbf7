"""Forward/backward, losses, count checks and the all-parameters-in-graph guarantee."""

from __future__ import annotations

import pytest
import torch
from model_testing import NUM_FRAMES, PAPER_STYLE, tiny_model, training_batch

from mora.model.trainable import TrainableSettings, configure_trainable

COMBOS = [
    ("llava", "sam2"),
    ("llava", "sam"),
    ("qwen2_5_vl", "sam2"),
    ("qwen2_5_vl", "sam"),
    ("qwen3_vl", "sam2"),
    ("qwen3_vl", "sam"),
]


@pytest.mark.parametrize(
    ("backbone", "engine", "overrides"),
    [(*combo, {}) for combo in COMBOS]
    + [
        ("llava", "sam2", {"frame_prompts": True}),
        ("qwen2_5_vl", "sam", {"use_motion_tokens": False}),
        ("llava", "sam2", PAPER_STYLE),
        ("llava", "sam", PAPER_STYLE),
        ("qwen2_5_vl", "sam2", {**PAPER_STYLE, "video_pooling": "videochatgpt"}),
        ("qwen3_vl", "sam2", {**PAPER_STYLE, "video_pooling": "videochatgpt"}),
        ("llava", "sam", {"video_pooling": "frame_grid", "video_pool_grid": 2}),
    ],
)
def test_forward_backward_every_backbone_and_engine(backbone, engine, overrides):
    model = tiny_model(backbone, engine, **overrides)
    configure_trainable(model, TrainableSettings())
    batch = training_batch(model.processor)
    out = model(**batch)
    S = model.mask_engine.image_size
    assert out.logits is None  # with labels only the answer positions reach the language-model head
    with torch.no_grad():
        full = model(**batch, full_logits=True)
    assert full.logits.shape == (*batch["input_ids"].shape, model.get_output_embeddings().weight.shape[0])
    torch.testing.assert_close(full.loss_ce, out.loss_ce)
    assert out.mask_logits.shape == (2, NUM_FRAMES, S, S)
    assert out.span_logits.shape == (2, NUM_FRAMES)
    assert torch.all(out.span_logits[1] == 0)  # the second sample has no [LOC]
    assert out.seg_prompts.shape[:3] == (2, NUM_FRAMES, 2 if model.config.frame_prompts else 1)
    for part in (out.loss_ce, out.loss_mask_bce, out.loss_mask_dice, out.loss_temporal):
        assert torch.isfinite(part) and part > 0
    out.loss.backward()
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    assert trainable
    assert all(p.grad is not None for _, p in trainable), [n for n, p in trainable if p.grad is None]
    # not None is what the graph-completion term guarantees; the losses themselves must reach every
    # trained part (a module whose gradient is zero everywhere would never learn)
    parts = {n.split(".")[0] for n, _ in trainable}
    dead = [
        part
        for part in parts
        if all(p.grad.count_nonzero() == 0 for n, p in trainable if n.split(".")[0] == part)
    ]
    assert not dead, dead
    decoder_grads = [p.grad.abs().sum() for n, p in trainable if n.startswith("mask_engine.")]
    assert sum(decoder_grads) > 0


def test_loss_matches_weighted_parts():
    model = tiny_model()
    out = model(**training_batch(model.processor))
    cfg = model.config
    expected = (
        cfg.ce_loss_weight * out.loss_ce
        + cfg.mask_bce_loss_weight * out.loss_mask_bce
        + cfg.mask_dice_loss_weight * out.loss_mask_dice
        + cfg.temporal_loss_weight * out.loss_temporal
    )
    torch.testing.assert_close(out.loss, expected)


def test_overfitting_one_batch_reduces_every_loss():
    model = tiny_model("llava", "sam2", seed=1)
    configure_trainable(model, TrainableSettings.everything())
    batch = training_batch(model.processor)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=2e-3)
    first = None
    for _ in range(30):
        out = model(**batch)
        first = first or {
            k: float(getattr(out, k).detach()) for k in ("loss", "loss_ce", "loss_mask_bce", "loss_temporal")
        }
        optimizer.zero_grad()
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)  # as the trainer (optim.grad_clip)
        optimizer.step()
    with torch.no_grad():
        last = model(**batch)
    assert float(last.loss) < 0.5 * first["loss"]
    assert float(last.loss_ce) < 0.5 * first["loss_ce"]
    assert float(last.loss_mask_bce) < first["loss_mask_bce"]
    assert float(last.loss_temporal) < first["loss_temporal"]


def test_text_only_batch_gives_zero_not_none_gradients():
    model = tiny_model("llava", "sam2")
    configure_trainable(model, TrainableSettings.everything())
    batch = model.processor(_two_clips(), ["Is anything moving?"] * 2, answers=["Yes.", "No."])
    out = model(**batch)
    assert out.mask_logits is None and out.span_logits is None
    out.loss.backward()
    for name, param in model.named_parameters():
        if param.requires_grad:
            assert param.grad is not None, name
    heads = ("mask_engine.", "seg_projector.", "temporal_head.", "motion_dense_prompt.")
    for name, param in model.named_parameters():
        if param.requires_grad and name.startswith(heads):
            assert torch.count_nonzero(param.grad) == 0, name


def _two_clips():
    from model_testing import moving_square_clip

    return [moving_square_clip(seed=0)[0], moving_square_clip(seed=1)[0]]


def test_seg_count_mismatch_raises_with_both_numbers():
    model = tiny_model()
    batch = training_batch(model.processor)
    seg = model.config.seg_token_id
    ids = batch["input_ids"].clone()
    ids[0][ids[0] == seg] = model.processor.token_ids.pad  # sample 0 loses its [SEG]
    batch["input_ids"] = ids
    with pytest.raises(ValueError, match=r"\[SEG\] counts: \[0, 1\]"):
        model(**batch)


def test_placeholder_count_mismatch_raises_with_both_numbers():
    model = tiny_model()
    batch = training_batch(model.processor)
    video = model.config.video_token_id
    ids = batch["input_ids"].clone()
    first = int((ids[0] == video).nonzero()[0])
    n_video = int((ids[0] == video).sum())
    ids[0, first] = model.processor.token_ids.pad
    batch["input_ids"] = ids
    with pytest.raises(
        ValueError, match=rf"{n_video - 1} <video> placeholder tokens .* {n_video} video features"
    ):
        model(**batch)


def test_span_label_without_loc_raises():
    model = tiny_model()
    batch = training_batch(model.processor)
    batch["span_valid"] = torch.tensor([True, True])
    with pytest.raises(ValueError, match="span label but no \\[LOC\\]"):
        model(**batch)


def test_llm_sees_config_num_frames_while_heads_see_all_frames():
    model = tiny_model(**PAPER_STYLE)
    model.config.num_frames = 4
    model.processor.layout = model.processor.layout.__class__(
        **{**model.processor.layout.to_dict(), "num_frames": 4}
    )
    from model_testing import moving_square_clip

    from mora.constants import ANSWER_WITH_SPAN

    clip, _ = moving_square_clip(num_frames=9)
    batch = model.processor([clip], ["Which object moves right?"], answers=[ANSWER_WITH_SPAN])
    side = model.config.backbone_image_size // model.config.vlm_config.vision_config.patch_size
    assert int((batch["input_ids"] == model.config.video_token_id).sum()) == side * side + 4
    assert int((batch["input_ids"] == model.config.motion_token_id).sum()) == 3 * model.config.motion_grid**2
    with torch.no_grad():
        out = model(**batch)
    assert out.span_logits.shape == (1, 9) and out.mask_logits.shape[1] == 9


@pytest.mark.parametrize("backbone", ["llava", "qwen3_vl"])  # qwen3_vl: DeepStack between checkpointed layers
def test_activation_checkpointing_gives_the_same_loss_and_gradients(backbone):
    model = tiny_model(backbone, "sam2")
    configure_trainable(model, TrainableSettings())
    batch = training_batch(model.processor)
    torch.manual_seed(0)  # same LoRA-dropout masks in both passes
    plain = model(**batch)
    plain.loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
    model.zero_grad(set_to_none=True)
    model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    assert any(getattr(m, "gradient_checkpointing", False) for m in model.adapter.language_model.modules())
    torch.manual_seed(0)
    checkpointed = model(**batch)
    checkpointed.loss.backward()
    torch.testing.assert_close(checkpointed.loss, plain.loss)
    for name, grad in grads.items():
        torch.testing.assert_close(dict(model.named_parameters())[name].grad, grad, atol=1e-5, rtol=1e-4)


def test_motion_pairs_follow_the_stride_of_longer_clips():
    """On a clip longer than the LM's frame count the heads compare frames motion_stride(T) apart."""
    from mora.model.heads import temporal_frame_tokens
    from mora.model.motion_tokens import MotionTokenizer

    model = tiny_model()
    n = model.config.num_frames
    assert [model.motion_stride(T) for T in (1, n, n + 1, 2 * n, 20 * n // 8)] == [1, 1, 1, 2, 3]
    torch.manual_seed(0)
    grid = torch.randn(1, 7, 4, 4, 8)
    tokenizer = MotionTokenizer(8, 16, 2)
    pairs = tokenizer(grid, stride=3)
    assert pairs.shape == (1, 4, 4, 16)
    torch.testing.assert_close(pairs[:, 1:2], tokenizer(grid[:, [1, 4]]))  # pair (1, 4)
    keys = temporal_frame_tokens(torch.zeros(1, 7, 5, 16), pairs)  # [B, T, n + 2m, D]
    assert keys.shape == (1, 7, 5 + 8, 16)
    torch.testing.assert_close(keys[0, 4, 5:9], pairs[0, 1])  # motion into frame 4 comes from frame 1
    torch.testing.assert_close(keys[0, 1, 9:], pairs[0, 1])  # motion out of frame 1 goes to frame 4
    assert keys[0, :3, 5:9].abs().sum() == 0 and keys[0, 4:, 9:].abs().sum() == 0  # no partner frame
    with pytest.raises(ValueError, match="stride"):
        tokenizer(grid, stride=0)


def test_frame_grid_video_tokens_keep_every_frame_layout():
    from mora.processing.visual_layout import VisualLayout

    model = tiny_model("llava", "sam2", video_pooling="frame_grid", video_pool_grid=2)
    layout = VisualLayout.from_config(model.config)
    n = model.config.num_frames
    assert layout.num_video_tokens(n) == n * 4 and layout.num_video_tokens(3) == 3 * 4
    batch = training_batch(model.processor)
    assert int((batch["input_ids"][0] == model.config.video_token_id).sum()) == NUM_FRAMES * 4
    pixels = batch["pixel_values"]
    features = model.adapter.frame_features(pixels)
    tokens = model.adapter.video_tokens(pixels, features)  # [B, T*p*p, D]
    assert tokens.shape == (2, NUM_FRAMES * 4, model.config.hidden_size)
    moved = features.grid.clone()
    moved[:, 1] = 0  # change frame 1 only: only its 4 tokens change
    changed = model.adapter.video_tokens(pixels, type(features)(grid=moved, tokens=features.tokens)) != tokens
    assert changed.any(-1)[0].nonzero().flatten().tolist() == [4, 5, 6, 7]
    with pytest.raises(ValueError, match="video_pooling"):
        tiny_model("llava", "sam2", video_pooling="mean")
    for qwen in ("qwen2_5_vl", "qwen3_vl"):
        with pytest.raises(ValueError, match="llava family only"):
            tiny_model(qwen, "sam2", video_pooling="frame_grid")


def test_loc_hidden_offset_reads_the_state_before_loc():
    """``loc_hidden_offset=-1`` scores the span from the state before ``[LOC]``: other span logits, same masks."""
    batch = training_batch(tiny_model(**PAPER_STYLE).processor)
    outputs = {}
    for offset in (0, -1):
        model = tiny_model(**PAPER_STYLE, loc_hidden_offset=offset).eval()
        with torch.no_grad():
            outputs[offset] = model(**batch)
    assert not torch.allclose(outputs[0].span_logits[0], outputs[-1].span_logits[0])
    assert torch.equal(outputs[0].span_logits[1], outputs[-1].span_logits[1])  # no [LOC]: zeros either way
    assert torch.equal(outputs[0].mask_logits, outputs[-1].mask_logits)


def test_mask_outside_span_weight_weighs_the_frames_outside_the_span():
    from types import SimpleNamespace

    from mora.configuration_mora import MoRAConfig
    from mora.model.losses import compute_losses, mask_dice_loss

    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 4, 8, 8, generator=g)
    gt = (torch.rand(2, 4, 8, 8, generator=g) > 0.5).float()
    span = torch.tensor([[0.0, 1.0, 1.0, 0.0], [1.0, 1.0, 0.0, 0.0]])
    out = SimpleNamespace(mask_logits=logits, span_logits=torch.zeros(2, 4))
    has_loc = torch.ones(2, dtype=torch.bool)

    def dice(weight: float, span_valid=None) -> float:
        cfg = MoRAConfig(mask_outside_span_weight=weight)
        return float(compute_losses(cfg, out, None, gt, None, span, span_valid, has_loc).mask_dice)

    per_frame = torch.stack(
        [mask_dice_loss(logits[b, t : t + 1], gt[b, t : t + 1]) for b in range(2) for t in range(4)]
    )
    inside = span.flatten() > 0.5
    assert dice(1.0) == pytest.approx(float(per_frame.mean()), rel=1e-5)
    assert dice(0.0) == pytest.approx(float(per_frame[inside].mean()), rel=1e-5)  # in-span frames only
    expected = float(
        (per_frame * torch.where(inside, 1.0, 0.25)).sum() / torch.where(inside, 1.0, 0.25).sum()
    )
    assert dice(0.25) == pytest.approx(expected, rel=1e-5)
    # a row without a span label keeps all of its frames at weight 1
    w = torch.tensor([0.0, 1.0, 1.0, 0.0, 1.0, 1.0, 1.0, 1.0])
    expected = float((per_frame * w).sum() / w.sum())
    assert dice(0.0, torch.tensor([True, False])) == pytest.approx(expected, rel=1e-5)
