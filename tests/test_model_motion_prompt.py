"""Dense motion prompts for the mask decoder: engine ``dense_embeds``, `MotionDensePrompt`, the config
switch ``use_motion_dense_prompt`` (zero-init equivalence, gradients, save/load, old configs), predict."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from model_testing import NUM_FRAMES, PAPER_STYLE, moving_square_clip, tiny_model, training_batch

from mora.configuration_mora import CONFIG_VERSION, MoRAConfig
from mora.model.inference import _window_prompts
from mora.model.mask_engines import build_mask_engine, tiny_sam2_config, tiny_sam_config
from mora.model.modeling_mora import MoRAForVideoGrounding
from mora.model.motion_prompt import MotionDensePrompt, neighbour_differences
from mora.model.trainable import TrainableSettings, configure_trainable

ENGINE_KINDS = ("sam2", "sam")


def _engine(kind):
    torch.manual_seed(0)
    return build_mask_engine(tiny_sam2_config() if kind == "sam2" else tiny_sam_config()).eval()


def _frames(n, side, seed=0):
    return torch.randn(n, 3, side, side, generator=torch.Generator().manual_seed(seed))


def _randomise(module: torch.nn.Module, seed: int = 0) -> None:
    """Give the zero-initialised output layer weights so the prompts are non-zero."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        last = module.net[-1] if hasattr(module, "net") else module.proj[-1]  # motion / video dense prompt
        for param in last.parameters():
            param.copy_(0.5 * torch.randn(param.shape, generator=generator))


# ------------------------------------------------------------------ engines
@pytest.mark.parametrize("kind", ENGINE_KINDS)
def test_engine_dense_shape_matches_image_embedding(kind):
    engine = _engine(kind)
    features = engine.encode(_frames(3, engine.image_size))
    assert tuple(features.maps[-1].shape[1:]) == engine.dense_shape
    assert engine.dense_shape == (engine.prompt_dim, engine.embedding_size, engine.embedding_size)


@pytest.mark.parametrize("kind", ENGINE_KINDS)
def test_engine_decode_with_dense_embeds(kind):
    engine = _engine(kind)
    features = engine.encode(_frames(3, engine.image_size))
    prompts = torch.randn(3, 1, engine.prompt_dim)
    base = engine.decode(features, prompts)
    zeros = torch.zeros(3, *engine.dense_shape)
    assert torch.equal(engine.decode(features, prompts, zeros), base)
    dense = torch.randn(3, *engine.dense_shape, requires_grad=True)
    logits = engine.decode(features, prompts, dense)
    assert logits.shape == base.shape and not torch.allclose(logits, base)
    logits.square().mean().backward()
    assert dense.grad is not None and dense.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="dense_embeds"):
        engine.decode(features, prompts, torch.zeros(2, *engine.dense_shape))
    with pytest.raises(TypeError, match="dense_embeds"):
        engine.decode(features, prompts, torch.zeros(3, *engine.dense_shape, dtype=torch.long))


@pytest.mark.parametrize("kind", ENGINE_KINDS)
def test_engine_propagate_uses_dense_embeds_on_decoded_frames(kind):
    engine = _engine(kind)
    frames = _frames(4, engine.image_size)
    prompt = torch.randn(1, engine.prompt_dim)
    dense = torch.randn(4, *engine.dense_shape)
    logits = engine.propagate(frames, prompt, key_frames=[2], dense_embeds=dense)
    assert logits.shape == (4, engine.image_size, engine.image_size)
    direct = engine.decode(engine.encode(frames[[2]]), prompt[None], dense[[2]])
    torch.testing.assert_close(logits[2], direct[0], atol=1e-4, rtol=1e-4)
    plain = engine.propagate(frames, prompt, key_frames=[2])
    assert not torch.allclose(logits[2], plain[2])
    with pytest.raises(ValueError, match="dense_embeds"):
        engine.propagate(frames, prompt, key_frames=[2], dense_embeds=dense[:1])


# ------------------------------------------------------------------ the module
def test_neighbour_differences_have_zero_ends():
    x = torch.arange(4.0).view(1, 4, 1) ** 2  # 0, 1, 4, 9
    d = neighbour_differences(x)
    assert d.shape == (1, 4, 2, 1)
    assert d[0, :, 0, 0].tolist() == [0, 1, 3, 5] and d[0, :, 1, 0].tolist() == [1, 3, 5, 0]
    d2 = neighbour_differences(x, stride=2)  # x[t] - x[t-2], x[t+2] - x[t]
    assert d2[0, :, 0, 0].tolist() == [0, 0, 4, 8] and d2[0, :, 1, 0].tolist() == [4, 8, 0, 0]
    assert neighbour_differences(x, stride=9).abs().sum() == 0  # no partner frame at all
    with pytest.raises(ValueError, match="stride"):
        neighbour_differences(x, stride=0)


def test_motion_dense_prompt_shapes_zero_init_and_static_clip():
    module = MotionDensePrompt(embed_dim=16, grid=4, image_size=64, hidden_dim=8)
    embeds, pixels = torch.randn(2, 5, 16, 4, 4), torch.randn(2, 5, 3, 64, 64)
    out = module(embeds, pixels)
    assert out.shape == (2, 5, 16, 4, 4) and torch.count_nonzero(out) == 0
    _randomise(module)
    static = module(embeds[:, :1].expand(2, 5, -1, -1, -1), pixels[:, :1].expand(2, 5, -1, -1, -1))
    assert torch.allclose(static, static[:, :1].expand_as(static))  # no motion -> same prompt everywhere
    assert not torch.allclose(module(embeds, pixels), static)
    with pytest.raises(ValueError, match="image_embeds"):
        module(torch.randn(2, 5, 8, 4, 4), pixels)


# ------------------------------------------------------------------ the model
@pytest.mark.parametrize("engine", ENGINE_KINDS)
def test_switch_on_equals_switch_off_at_init(engine):
    on = tiny_model("llava", engine, seed=0, **PAPER_STYLE).eval()
    off = tiny_model("llava", engine, seed=0, **{**PAPER_STYLE, "use_motion_dense_prompt": False}).eval()
    assert on.config.use_motion_dense_prompt and on.motion_dense_prompt is not None
    assert off.motion_dense_prompt is None
    assert not any(k.startswith("motion_dense_prompt.") for k in off.state_dict())
    shared = off.state_dict()
    assert all(torch.equal(v, shared[k]) for k, v in on.state_dict().items() if k in shared)
    batch = training_batch(on.processor)
    with torch.no_grad():
        a, b = on(**batch), off(**batch)
    for key in ("mask_logits", "span_logits", "loss", "loss_mask_dice"):
        assert torch.equal(getattr(a, key), getattr(b, key)), key


def test_gradients_reach_the_motion_module_and_it_is_a_trained_head():
    model = tiny_model("llava", "sam2", **PAPER_STYLE)
    counts = configure_trainable(model, TrainableSettings())
    assert counts["motion_dense_prompt"] == sum(p.numel() for p in model.motion_dense_prompt.parameters())
    assert counts["total"] == sum(v for k, v in counts.items() if k != "total")
    model(**training_batch(model.processor)).loss.backward()
    params = dict(model.motion_dense_prompt.named_parameters())
    assert all(p.requires_grad and p.grad is not None for p in params.values())
    assert params["net.4.weight"].grad.abs().sum() > 0  # the zero-initialised output layer learns
    off = tiny_model("llava", "sam2", **{**PAPER_STYLE, "use_motion_dense_prompt": False})
    assert configure_trainable(off, TrainableSettings())["motion_dense_prompt"] == 0


def test_motion_prompt_changes_masks_once_trained():
    model = tiny_model("llava", "sam", seed=1, **PAPER_STYLE).eval()
    batch = training_batch(model.processor)
    with torch.no_grad():
        before = model(**batch).mask_logits
        _randomise(model.motion_dense_prompt)
        after = model(**batch).mask_logits
    assert not torch.allclose(before, after)


@pytest.mark.parametrize("switch", [True, False])
def test_save_load_round_trip(switch, tmp_path):
    model = tiny_model("llava", "sam2", seed=2, **{**PAPER_STYLE, "use_motion_dense_prompt": switch}).eval()
    if switch:
        _randomise(model.motion_dense_prompt)
    model.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["use_motion_dense_prompt"] is switch
    loaded = MoRAForVideoGrounding.from_pretrained(tmp_path).eval()
    assert loaded.config.use_motion_dense_prompt is switch
    assert (loaded.motion_dense_prompt is not None) is switch
    batch = training_batch(model.processor)
    with torch.no_grad():
        assert torch.equal(model(**batch).mask_logits, loaded(**batch).mask_logits)


def test_config_without_the_field_loads_switched_off(tmp_path):
    """Checkpoints saved before the field existed keep their architecture (no motion module)."""
    model = tiny_model("llava", "sam", seed=4, **{**PAPER_STYLE, "use_motion_dense_prompt": False}).eval()
    model.save_pretrained(tmp_path)
    config_file = tmp_path / "config.json"
    values = json.loads(config_file.read_text())
    assert values["config_version"] == CONFIG_VERSION
    del values["use_motion_dense_prompt"], values["motion_dense_prompt_dim"], values["config_version"]
    config_file.write_text(json.dumps(values))
    migrated = MoRAConfig.from_pretrained(tmp_path)
    assert migrated.use_motion_dense_prompt is False and migrated.config_version == CONFIG_VERSION
    loaded = MoRAForVideoGrounding.from_pretrained(tmp_path)
    assert loaded.motion_dense_prompt is None
    assert MoRAConfig().use_motion_dense_prompt is True  # new configs have it on
    # the migration belongs to unversioned dicts only: a current dict takes the field's default
    assert MoRAConfig.from_dict({**values, "config_version": CONFIG_VERSION}).use_motion_dense_prompt is True
    with pytest.raises(ValueError, match="newer"):
        MoRAConfig.from_dict({**values, "config_version": CONFIG_VERSION + 1})


@pytest.mark.parametrize("style", ["paper", "tiny_default"])
@pytest.mark.parametrize("num_frames", [NUM_FRAMES, 3 * NUM_FRAMES + 2])
def test_predict_window_prompts_equal_whole_clip_prompts(num_frames, style):
    """Dense prompts of frame windows (motion prompt: with their partner frames; video dense prompt: the
    clip's adapted grid rows) equal those of the whole clip."""
    model = tiny_model("llava", "sam2", seed=5, **(PAPER_STYLE if style == "paper" else {})).eval()
    for module in (model.motion_dense_prompt, model.video_dense_prompt):
        if module is not None:
            _randomise(module)
    assert model.motion_stride(num_frames) == (1 if num_frames == NUM_FRAMES else 3)
    pix = torch.randn(num_frames, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    last = num_frames - 1
    with torch.no_grad():
        features = model.encode_video(pix[None])[0]
        whole = model.dense_prompts(model.engine_features(pix), pix[None], video_grid=features.grid)
        assert whole is not None and torch.count_nonzero(whole) > 0
        for frames in ([0, 1, 2], [2, 3, 4, 5], [last - 1, last], [5], [0], [last]):
            feats, dense = _window_prompts(model, pix, frames, features)
            assert len(feats) == len(frames)
            torch.testing.assert_close(dense, whole[frames], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(
    ("engine", "propagation"), [("sam2", "memory"), ("sam2", "per_frame"), ("sam", "per_frame")]
)
def test_predict_with_the_motion_prompt(engine, propagation):
    """predict feeds the motion prompt to the decoder: its (randomised) output changes the masks, and the
    zero-initialised module leaves them as without it."""
    model = tiny_model("llava", engine, seed=6, **PAPER_STYLE).eval()
    frames, _ = moving_square_clip()

    def masks() -> np.ndarray:
        pred = model.predict(
            frames, "Which object moves right?", mode="template", gate=False, propagation=propagation
        )
        assert pred.masks.shape == frames.shape[:3] and pred.masks.dtype == np.bool_
        return pred.masks

    at_init = masks()  # zero-initialised output: the decoder sees the no-mask embedding alone
    module, model.motion_dense_prompt = model.motion_dense_prompt, None
    without = masks()
    model.motion_dense_prompt = module
    _randomise(module)
    with_prompt = masks()
    assert np.array_equal(at_init, without)
    assert not np.array_equal(with_prompt, without)


def test_switching_on_for_an_old_checkpoint_starts_from_zero_init(tmp_path):
    """``from_pretrained(old, use_motion_dense_prompt=True)``: the missing module is freshly initialised
    (finite, zero output), so the loaded model starts exactly where the old one was."""
    model = tiny_model("llava", "sam2", seed=7, **{**PAPER_STYLE, "use_motion_dense_prompt": False}).eval()
    model.save_pretrained(tmp_path)
    loaded, info = MoRAForVideoGrounding.from_pretrained(
        tmp_path, use_motion_dense_prompt=True, output_loading_info=True
    )
    assert any(k.startswith("motion_dense_prompt.") for k in info["missing_keys"])
    assert all(torch.isfinite(p).all() for p in loaded.motion_dense_prompt.parameters())
    batch = training_batch(model.processor)
    with torch.no_grad():
        assert torch.equal(model(**batch).mask_logits, loaded.eval()(**batch).mask_logits)
