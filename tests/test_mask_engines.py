import ast
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from transformers import LlavaConfig, Sam2Config

from mora.model.mask_engines import (
    PUBLISHED_NUM_PARAMETERS,
    FrameFeatures,
    Sam2MaskEngine,
    SamMaskEngine,
    build_mask_engine,
    sam2_1_hiera_large_config,
    sam2_1_hiera_tiny_config,
    sam_vit_h_config,
    tiny_sam2_config,
    tiny_sam_config,
)

ROOT = Path(__file__).resolve().parents[1]
ENGINE_KINDS = ("sam2", "sam")


def _engine(kind):
    torch.manual_seed(0)
    return build_mask_engine(tiny_sam2_config() if kind == "sam2" else tiny_sam_config())


@pytest.fixture(params=ENGINE_KINDS)
def engine(request):
    return _engine(request.param)


def _frames(num_frames, engine, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(num_frames, 3, engine.image_size, engine.image_size, generator=generator)


def test_engine_attributes(engine):
    assert engine.image_size == 64
    assert engine.prompt_dim == (128 if isinstance(engine, Sam2MaskEngine) else 64)
    assert engine.image_mean == pytest.approx((0.485, 0.456, 0.406))
    assert engine.image_std == pytest.approx((0.229, 0.224, 0.225))
    assert engine.resize_mode == ("squash" if isinstance(engine, Sam2MaskEngine) else "longest_pad")
    assert engine.device == torch.device("cpu") and engine.dtype == torch.float32
    assert engine.image_encoder_modules() == [engine.model.vision_encoder]
    assert engine.mask_decoder_modules() == [engine.model.mask_decoder]


def test_encode_decode_shapes(engine):
    features = engine.encode(_frames(5, engine))
    assert isinstance(features, FrameFeatures) and len(features) == 5
    subset = features.select([0, 3])
    assert len(subset) == 2 and torch.equal(subset.maps[-1][1], features.maps[-1][3])
    logits = engine.decode(features, torch.randn(5, 2, engine.prompt_dim))
    assert logits.shape == (5, 64, 64) and logits.dtype == torch.float32
    # Different prompts give different masks on the same frame.
    other = engine.decode(features, torch.randn(5, 2, engine.prompt_dim))
    assert not torch.allclose(logits, other)


def test_decode_gradients_reach_prompts_and_decoder_but_not_frozen_encoder(engine):
    engine.freeze_image_encoder()
    prompts = torch.randn(4, 1, engine.prompt_dim, requires_grad=True)
    with torch.no_grad():  # as the model runs a frozen encoder; the whole decoder must still learn
        features = engine.encode(_frames(4, engine))
    logits = engine.decode(features, prompts)
    target = torch.zeros_like(logits)
    target[:, 16:48, 16:48] = 1
    F.binary_cross_entropy_with_logits(logits, target).backward()
    assert prompts.grad is not None and prompts.grad.abs().sum() > 0
    decoder = dict(engine.model.mask_decoder.named_parameters())
    missing = [name for name, p in decoder.items() if p.grad is None]
    assert not missing, f"mask-decoder parameters outside the graph: {missing}"
    assert engine.model.mask_decoder.output_hypernetworks_mlps[0].proj_out.weight.grad.abs().sum() > 0
    if isinstance(engine, Sam2MaskEngine):  # the high-resolution projections belong to the decoder
        assert engine.model.mask_decoder.conv_s0.weight.grad.abs().sum() > 0
    encoder = [p for m in engine.image_encoder_modules() for p in m.parameters()]
    assert encoder and all(not p.requires_grad and p.grad is None for p in encoder)


@pytest.mark.parametrize("kind", ENGINE_KINDS)
def test_propagate_shape_and_key_frames_equal_decode(kind):
    engine = _engine(kind)
    engine.train()
    engine.model.vision_encoder.eval()  # a caller's mixed flags must survive propagate
    frames, prompt = _frames(6, engine), torch.randn(2, engine.prompt_dim)
    logits = engine.propagate(frames, prompt, key_frames=[4, 1])
    assert logits.shape == (6, 64, 64) and logits.dtype == torch.float32 and not logits.requires_grad
    assert engine.training and engine.model.mask_decoder.training and not engine.model.vision_encoder.training
    engine.eval()
    with torch.no_grad():
        decoded = engine.decode(engine.encode(frames[[1, 4]]), prompt.expand(2, -1, -1))
    torch.testing.assert_close(logits[[1, 4]], decoded)
    if kind == "sam":  # no memory: every frame is decoded with the prompt
        with torch.no_grad():
            every = engine.decode(engine.encode(frames), prompt.expand(6, -1, -1))
        torch.testing.assert_close(logits, every)


def test_sam2_propagation_tracks_from_key_frame_memory():
    engine = _engine("sam2")
    with torch.no_grad():  # a random object-score head says "no object"; make it say "present"
        engine.model.mask_decoder.pred_obj_score_head.proj_out.bias.fill_(20.0)
    frames, prompt = _frames(6, engine), torch.randn(1, engine.prompt_dim)
    logits = engine.propagate(frames, prompt, key_frames=[2])
    assert torch.isfinite(logits).all() and logits.min() > -100  # tracked, not the no-object score
    with torch.no_grad():
        direct = engine.decode(engine.encode(frames), prompt.expand(6, -1, -1))
    others = [0, 1, 3, 4, 5]
    assert not torch.allclose(logits[others], direct[others])  # memory-conditioned, not re-decoded
    # A different key-frame mask changes what is tracked on every other frame.
    changed = engine.propagate(frames, -5 * prompt, key_frames=[2])
    assert all(not torch.equal(logits[t], changed[t]) for t in others)
    # Calls are independent: no tracking state is kept on the engine.
    torch.testing.assert_close(engine.propagate(frames, prompt, key_frames=[2]), logits)


def test_sam2_propagation_without_object_gives_no_object_scores():
    engine = _engine("sam2")
    with torch.no_grad():
        engine.model.mask_decoder.pred_obj_score_head.proj_out.bias.fill_(-20.0)
    logits = engine.propagate(_frames(4, engine), torch.randn(1, engine.prompt_dim), key_frames=[0])
    assert (logits[1:] < -100).all()


def test_bad_inputs_raise(engine):
    frames = _frames(3, engine)
    features = engine.encode(frames)
    prompts = torch.randn(3, 1, engine.prompt_dim)
    with pytest.raises(ValueError, match="pixel_values"):
        engine.encode(torch.randn(3, 3, 32, 32))
    with pytest.raises(TypeError):
        engine.encode(torch.zeros(3, 3, 64, 64, dtype=torch.uint8))
    with pytest.raises(ValueError, match="C="):
        engine.decode(features, torch.randn(3, 1, engine.prompt_dim + 1))
    with pytest.raises(ValueError, match="BT=3"):
        engine.decode(features, prompts[:2])
    with pytest.raises(ValueError, match="P=0"):
        engine.decode(features, prompts[:, :0])
    with pytest.raises(TypeError, match="encode"):
        engine.decode(features.maps[-1], prompts)
    with pytest.raises(ValueError, match=r"\[P, C\]"):
        engine.propagate(frames, prompts, [0])
    for keys, match in (([], "at least one"), ([3], "outside"), ([-1], "outside"), ([1, 1], "duplicates")):
        with pytest.raises(ValueError, match=match):
            engine.propagate(frames, prompts[0], keys)


def test_dtype_follows_engine_parameters(engine):
    engine.to(torch.bfloat16)
    features = engine.encode(_frames(2, engine))  # float32 input is cast to the engine dtype
    assert features.maps[-1].dtype == torch.bfloat16
    logits = engine.decode(features, torch.randn(2, 1, engine.prompt_dim))
    assert logits.dtype == torch.float32 and torch.isfinite(logits).all()


def test_build_mask_engine_from_configs_and_dicts():
    assert isinstance(build_mask_engine(tiny_sam2_config().to_dict()), Sam2MaskEngine)
    assert isinstance(build_mask_engine(tiny_sam_config().to_dict()), SamMaskEngine)
    video = tiny_sam2_config()
    image_config = Sam2Config(
        vision_config=video.vision_config.to_dict(),
        prompt_encoder_config=video.prompt_encoder_config.to_dict(),
        mask_decoder_config=video.mask_decoder_config.to_dict(),
    )
    engine = build_mask_engine(image_config)
    assert isinstance(engine, Sam2MaskEngine)
    assert engine.config.memory_attention_rope_feat_sizes == [4, 4]
    assert engine.propagate(_frames(3, engine), torch.randn(1, 128), [1]).shape == (3, 64, 64)
    with pytest.raises(TypeError, match="no mask engine"):
        build_mask_engine(LlavaConfig())
    with pytest.raises(ValueError, match="model_type"):
        build_mask_engine({"image_size": 64})


def test_inconsistent_configs_raise():
    config = tiny_sam2_config()
    config.memory_attention_rope_feat_sizes = [8, 8]
    with pytest.raises(ValueError, match="rope"):
        Sam2MaskEngine(config)
    config = tiny_sam2_config()
    config.image_size = 128
    with pytest.raises(ValueError, match="image sizes"):
        Sam2MaskEngine(config)
    config = tiny_sam_config()
    config.prompt_encoder_config.image_size = 128
    with pytest.raises(ValueError, match="disagree"):
        SamMaskEngine(config)
    with pytest.raises(ValueError, match="multiple of 32"):
        tiny_sam2_config(image_size=48)


@pytest.mark.parametrize("kind", ENGINE_KINDS)
def test_from_pretrained_round_trip(kind, tmp_path):
    engine = _engine(kind)
    engine.model.save_pretrained(tmp_path)
    loaded = type(engine).from_pretrained(str(tmp_path))
    frames, prompts = _frames(2, engine), torch.randn(2, 1, engine.prompt_dim)
    with torch.no_grad():
        torch.testing.assert_close(
            loaded.decode(loaded.encode(frames), prompts), engine.decode(engine.encode(frames), prompts)
        )


@pytest.mark.parametrize(
    ("build", "hub_id"),
    [
        (sam2_1_hiera_large_config, "facebook/sam2.1-hiera-large"),
        (sam2_1_hiera_tiny_config, "facebook/sam2.1-hiera-tiny"),
        (sam_vit_h_config, "facebook/sam-vit-huge"),
    ],
)
def test_real_config_parameter_counts_match_published_sizes(build, hub_id):
    with torch.device("meta"):
        engine = build_mask_engine(build())
    assert engine.image_size == 1024 and engine.prompt_dim == 256
    count = sum(p.numel() for p in engine.parameters())
    published = PUBLISHED_NUM_PARAMETERS[hub_id]
    assert abs(count - published) / published < 0.02, f"{hub_id}: {count} vs {published}"


def test_no_torchvision_imports_in_geometry_and_mask_engines():
    files = [ROOT / "mora/processing/image_ops.py", *sorted((ROOT / "mora/model/mask_engines").glob("*.py"))]
    assert len(files) >= 6
    for path in files:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            assert not any(n.split(".")[0] == "torchvision" for n in names), f"{path} imports torchvision"


def _shapes_batch(num, size, generator):
    """Noisy frames with one brighter square or disc; the target is its mask."""
    frames = torch.rand(num, 3, size, size, generator=generator) * 0.3
    masks = torch.zeros(num, size, size)
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    for i in range(num):
        side = int(torch.randint(10, 28, (1,), generator=generator))
        top, left = torch.randint(0, size - side, (2,), generator=generator).tolist()
        if i % 2:
            masks[i] = (((yy - top - side / 2) ** 2 + (xx - left - side / 2) ** 2) < (side / 2) ** 2).float()
        else:
            masks[i, top : top + side, left : left + side] = 1
        frames[i, 0] += 0.6 * masks[i]
    return (frames - 0.4) / 0.25, masks


def _learn_masks(kind, steps):
    engine = _engine(kind)
    prompt = torch.nn.Parameter(0.1 * torch.randn(1, engine.prompt_dim))
    optimizer = torch.optim.AdamW([*engine.parameters(), prompt], lr=3e-3)
    generator = torch.Generator().manual_seed(1)
    for _ in range(steps):
        frames, masks = _shapes_batch(16, engine.image_size, generator)
        probs_logits = engine.decode(engine.encode(frames), prompt.expand(16, 1, -1))
        probs = probs_logits.sigmoid()
        dice = 1 - (2 * (probs * masks).sum((1, 2)) + 1) / (probs.sum((1, 2)) + masks.sum((1, 2)) + 1)
        loss = F.binary_cross_entropy_with_logits(probs_logits, masks) + dice.mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    frames, masks = _shapes_batch(64, engine.image_size, torch.Generator().manual_seed(123))
    engine.eval()
    with torch.no_grad():
        pred = engine.decode(engine.encode(frames), prompt.expand(64, 1, -1)) > 0
    target = masks > 0
    return ((pred & target).sum((1, 2)) / (pred | target).sum((1, 2)).clamp(min=1)).mean().item()


def test_tiny_sam2_learns_synthetic_masks():
    assert _learn_masks("sam2", steps=60) > 0.8


@pytest.mark.slow
def test_tiny_sam_learns_synthetic_masks():
    assert _learn_masks("sam", steps=300) > 0.85
