"""The ``[SEG]`` correlation prompt: `SegCorrelationPrompt`, its grid targets and loss, the config switch
``use_seg_correlation`` (zero-init equivalence, old configs, save/load), windows at inference, learning."""

from __future__ import annotations

import json

import pytest
import torch
from model_testing import NUM_FRAMES, tiny_model, training_batch

from mora.configuration_mora import MoRAConfig
from mora.model.inference import _window_prompts
from mora.model.losses import correlation_loss
from mora.model.modeling_mora import MoRAForVideoGrounding
from mora.model.seg_correlation import SegCorrelationPrompt, correlation_targets
from mora.model.trainable import TrainableSettings, configure_trainable


def _randomise(module: SegCorrelationPrompt, seed: int = 0) -> None:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in module.prompt.parameters():
            param.copy_(0.5 * torch.randn(param.shape, generator=generator))


def test_shapes_zero_init_and_dependence_on_the_query():
    torch.manual_seed(0)
    module = SegCorrelationPrompt(hidden_size=16, embed_dim=8, motion_dim=4, dim=12)
    seg = torch.randn(2, 16)
    embeds, motion = torch.randn(2, 3, 8, 5, 5), torch.randn(2, 3, 4, 5, 5)
    dense, logits = module(seg, embeds, motion)
    assert dense.shape == (2, 3, 8, 5, 5) and logits.shape == (2, 3, 5, 5)
    assert dense.abs().sum() == 0  # zero-initialised prompt conv
    assert not torch.allclose(logits[0], logits[1])
    _, swapped = module(seg.flip(0), embeds, motion)
    assert not torch.allclose(swapped[0], logits[0])  # another [SEG] state lights other cells
    # a frame's map depends on its own embedding scale only through the per-frame RMS normalisation
    _, scaled = module(seg, embeds * 7.0, motion)
    torch.testing.assert_close(scaled, logits, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="motion_features"):
        module(seg, embeds)
    with pytest.raises(ValueError, match="image_embeds"):
        module(seg, torch.randn(2, 3, 7, 5, 5), motion)
    assert SegCorrelationPrompt(16, 8)(seg, embeds)[1].shape == (2, 3, 5, 5)  # no motion features


def test_targets_pool_the_mask_to_the_grid_and_the_loss_prefers_the_right_cells():
    masks = torch.zeros(1, 8, 8)
    masks[0, :4, :4] = 1  # exactly the top-left cell of a 2x2 grid
    masks[0, 4:6, 4:8] = 1  # half of the bottom-right cell
    targets = correlation_targets(masks, (2, 2))
    assert targets.tolist() == [[[1.0, 0.0], [0.0, 0.5]]]
    right = torch.tensor([[[6.0, -6.0], [-6.0, 0.0]]])
    wrong = -right
    assert correlation_loss(right, masks) < 0.25 < correlation_loss(wrong, masks)


def test_switch_on_equals_switch_off_at_init_and_old_configs_load_off(tmp_path):
    on = tiny_model("llava", "sam2", seed=0).eval()
    off = tiny_model("llava", "sam2", seed=0, use_seg_correlation=False).eval()
    assert on.seg_correlation is not None and off.seg_correlation is None
    shared = off.state_dict()
    assert all(torch.equal(v, shared[k]) for k, v in on.state_dict().items() if k in shared)
    batch = training_batch(on.processor)
    with torch.no_grad():
        a, b = on(**batch), off(**batch)
    assert torch.equal(a.mask_logits, b.mask_logits)
    assert a.correlation_logits.shape == (
        2,
        NUM_FRAMES,
        on.mask_engine.embedding_size,
        on.mask_engine.embedding_size,
    )
    assert b.correlation_logits is None and b.loss_correlation is None
    assert a.loss_correlation > 0
    torch.testing.assert_close(a.loss, b.loss + on.config.correlation_loss_weight * a.loss_correlation)

    off.save_pretrained(tmp_path)
    values = json.loads((tmp_path / "config.json").read_text())
    del values["use_seg_correlation"]
    (tmp_path / "config.json").write_text(json.dumps(values))
    assert MoRAConfig.from_pretrained(tmp_path).use_seg_correlation is False
    assert MoRAForVideoGrounding.from_pretrained(tmp_path).seg_correlation is None
    switched, info = MoRAForVideoGrounding.from_pretrained(
        tmp_path, use_seg_correlation=True, output_loading_info=True
    )
    assert any(k.startswith("seg_correlation.") for k in info["missing_keys"])
    with torch.no_grad():  # freshly initialised: zero prompt, the old model's masks
        assert torch.equal(switched.eval()(**batch).mask_logits, b.mask_logits)


def test_save_load_round_trip_and_trainable_group(tmp_path):
    model = tiny_model("llava", "sam", seed=3).eval()
    _randomise(model.seg_correlation)
    model.save_pretrained(tmp_path)
    loaded = MoRAForVideoGrounding.from_pretrained(tmp_path).eval()
    batch = training_batch(model.processor)
    with torch.no_grad():
        a, b = model(**batch), loaded(**batch)
    assert torch.equal(a.mask_logits, b.mask_logits) and torch.equal(
        a.correlation_logits, b.correlation_logits
    )
    counts = configure_trainable(model, TrainableSettings())
    assert counts["seg_correlation"] == sum(p.numel() for p in model.seg_correlation.parameters()) > 0


@pytest.mark.parametrize("num_frames", [NUM_FRAMES, 3 * NUM_FRAMES + 2])
def test_window_prompts_with_the_seg_state_equal_whole_clip_prompts(num_frames):
    model = tiny_model("llava", "sam2", seed=5).eval()
    _randomise(model.seg_correlation)
    pix = torch.randn(num_frames, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    seg = torch.randn(1, model.config.hidden_size, generator=torch.Generator().manual_seed(1))
    last = num_frames - 1
    with torch.no_grad():
        whole, correlation = model.dense_prompts(model.engine_features(pix), pix[None], seg)
        assert correlation.shape[:2] == (1, num_frames)
        motion_only = model.motion_dense_embeds(model.engine_features(pix), pix[None])
        assert not torch.allclose(whole, motion_only)
        for frames in ([0, 1, 2], [last - 1, last], [4]):
            _, dense = _window_prompts(model, pix, frames, seg)
            torch.testing.assert_close(dense, whole[frames], atol=1e-5, rtol=1e-5)


def test_the_correlation_map_learns_to_find_the_referred_cell():
    """A query per class and frames with one cell of each class: the map learns to pick the class's cell."""
    torch.manual_seed(0)
    module = SegCorrelationPrompt(hidden_size=8, embed_dim=6, dim=8)
    classes = torch.randn(3, 8)  # [SEG] state per class
    appearance = torch.randn(3, 6)  # embedding of a cell holding an object of that class
    optimizer = torch.optim.Adam(module.parameters(), lr=1e-2)

    def batch(n: int):
        label = torch.randint(0, 3, (n,))
        embeds = 0.3 * torch.randn(n, 1, 6, 4, 4)
        masks = torch.zeros(n, 1, 4, 4)
        for i in range(n):
            cells = torch.randperm(16)[:3]
            for c, cell in enumerate(cells):
                embeds[i, 0, :, cell // 4, cell % 4] += appearance[c]
                if c == label[i]:
                    masks[i, 0, cell // 4, cell % 4] = 1
        return classes[label], embeds, masks

    def hit_rate(n: int = 200) -> float:
        seg, embeds, masks = batch(n)
        with torch.no_grad():
            logits = module(seg, embeds)[1].flatten(1)
        return float((masks.flatten(1).gather(1, logits.argmax(1, keepdim=True)) > 0).float().mean())

    before = hit_rate()
    for _ in range(150):
        seg, embeds, masks = batch(32)
        loss = correlation_loss(module(seg, embeds)[1].flatten(0, 1), masks.flatten(0, 1))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    after = hit_rate()
    assert before < 0.6 and after > 0.95, (before, after)
