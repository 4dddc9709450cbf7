"""Save/load, Auto-class registration, predict, hub loading and the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from model_testing import NUM_FRAMES, moving_square_clip, tiny_model, training_batch
from PIL import Image
from transformers import AutoConfig, AutoModel

from mora.cli import main
from mora.hub import CheckpointNotFoundError, load_model
from mora.model.modeling_mora import MoRAForVideoGrounding
from mora.model.trainable import TrainableSettings, configure_trainable


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    model = tiny_model("llava", "sam2", seed=3)
    configure_trainable(model, TrainableSettings())  # with LoRA layers
    for name, param in model.named_parameters():
        if "lora_B" in name:  # make LoRA change the outputs
            torch.nn.init.normal_(param, std=0.5)
    path = tmp_path_factory.mktemp("ckpt")
    model.save_pretrained(path)
    return model.eval(), path


def test_save_and_load_give_identical_outputs(saved):
    model, path = saved
    loaded = MoRAForVideoGrounding.from_pretrained(path).eval()
    assert loaded.processor is not None
    assert any("lora_" in n for n, _ in loaded.named_parameters())
    batch = training_batch(model.processor)
    with torch.no_grad():
        a, b = model(**batch, full_logits=True), loaded(**batch, full_logits=True)
    for key in ("logits", "mask_logits", "span_logits", "loss"):
        assert torch.equal(getattr(a, key), getattr(b, key)), key


def test_auto_classes_load_the_checkpoint(saved):
    _, path = saved
    assert AutoConfig.from_pretrained(path).model_type == "mora"
    assert isinstance(AutoModel.from_pretrained(path), MoRAForVideoGrounding)


def test_merge_lora_keeps_outputs(saved):
    from mora.model.trainable import merge_lora

    model, path = saved
    loaded = MoRAForVideoGrounding.from_pretrained(path).eval()
    merge_lora(loaded)
    assert not any("lora_" in n for n, _ in loaded.named_parameters()) and loaded.config.lora is None
    batch = training_batch(model.processor)
    with torch.no_grad():
        torch.testing.assert_close(model(**batch).logits, loaded(**batch).logits, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("propagation", ["per_frame", "memory"])
def test_predict_shapes_and_gating(saved, propagation):
    model, _ = saved
    clip, _ = moving_square_clip(num_frames=8, height=36, width=50)
    fixed = torch.tensor([-6.0, -6.0, 6.0, 6.0, 6.0, -6.0, -6.0, -6.0])
    handle = model.temporal_head.register_forward_hook(lambda m, i, o: fixed.to(o).expand_as(o))
    try:
        gated = model.predict(clip, "Which object moves right?", mode="template", propagation=propagation)
        ungated = model.predict(
            clip, "Which object moves right?", gate=False, mode="template", propagation=propagation
        )
    finally:
        handle.remove()
    assert gated.masks.shape == (8, 36, 50) and gated.masks.dtype == bool
    assert gated.span == (2, 4)
    assert gated.frame_scores.shape == (8,) and gated.frame_scores.dtype == np.float32
    assert "[SEG]" in gated.text and "[LOC]" in gated.text
    outside = [0, 1, 5, 6, 7]
    assert not gated.masks[outside].any()
    assert np.array_equal(gated.masks[2:5], ungated.masks[2:5])  # same key frame / same per-frame decode
    assert ungated.masks.any(), "the random model should predict some foreground"
    if propagation == "per_frame":
        assert ungated.masks[outside].any(), "gating must have removed something"


def test_predict_generate_without_seg_returns_empty_masks(saved, caplog):
    model, _ = saved
    clip, _ = moving_square_clip()
    seg = model.config.seg_token_id

    def never_seg(module, inputs, logits):  # generation can then never emit [SEG]
        return logits.index_fill(-1, torch.tensor([seg], device=logits.device), float("-inf"))

    handle = model.get_output_embeddings().register_forward_hook(never_seg)
    model.config.max_new_tokens = 4
    try:
        pred = model.predict([Image.fromarray(f) for f in clip], "Which object moves right?")
    finally:
        model.config.max_new_tokens = 24
        handle.remove()
    assert pred.masks.shape == (NUM_FRAMES, *clip.shape[1:3])
    assert "[SEG]" not in pred.text
    assert not pred.masks.any() and pred.span is None
    assert "no [SEG]" in caplog.text


def test_load_model_from_folder_and_missing_paths(saved, tmp_path):
    _, path = saved
    model = load_model(path, dtype="float32")
    assert not model.training and model.processor is not None
    with pytest.raises(CheckpointNotFoundError, match="without config.json"):
        load_model(tmp_path)
    with pytest.raises(CheckpointNotFoundError, match="neither a checkpoint folder"):
        load_model(tmp_path / "missing")


def test_cli_init_tiny_and_predict(tmp_path, capsys):
    model_dir, frames_dir, out = tmp_path / "m", tmp_path / "frames", tmp_path / "out"
    assert main(["init-tiny", "--out", str(model_dir), "--mask-engine", "sam"]) == 0
    frames_dir.mkdir()
    clip, _ = moving_square_clip()
    for i, frame in enumerate(clip):
        Image.fromarray(frame).save(frames_dir / f"frame_{i:03d}.png")
    args = ["predict", "--model", str(model_dir), "--video", str(frames_dir), "--question", "What moves?"]
    assert main([*args, "--out", str(out), "--mode", "template"]) == 0
    result = json.loads((out / "prediction.json").read_text())
    assert set(result) >= {"span", "frame_scores", "text"} and len(result["frame_scores"]) == NUM_FRAMES
    assert sorted(p.name for p in (out / "masks").iterdir()) == [
        f"frame_{i:03d}.png" for i in range(NUM_FRAMES)
    ]
    lit = tmp_path / "lit"
    assert main([*args, "--out", str(lit), "--mode", "template", "--visual-prompt", "spotlight"]) == 0
    assert json.loads((lit / "prediction.json").read_text())["visual_prompt"] == "spotlight"
    assert len(list((lit / "masks").iterdir())) == NUM_FRAMES
    assert (
        main(
            [
                "predict",
                "--model",
                str(tmp_path / "nope"),
                "--video",
                str(frames_dir),
                "--question",
                "q",
                "--out",
                str(out),
            ]
        )
        == 2
    )
    assert "--model" in capsys.readouterr().err
    assert (
        main(
            [
                "predict",
                "--model",
                str(model_dir),
                "--video",
                str(tmp_path / "none.mp4"),
                "--question",
                "q",
                "--out",
                str(out),
            ]
        )
        == 2
    )
    assert "--video" in capsys.readouterr().err


def test_resized_vocabulary_survives_save_and_load(tmp_path):
    model = tiny_model()
    model.processor.tokenizer.add_tokens(["<extra_a>", "<extra_b>"])
    batch = model.processor([moving_square_clip()[0]], ["<extra_b> moves?"])
    with pytest.raises(ValueError, match="resize_token_embeddings"):
        model(**batch)
    model.resize_token_embeddings(len(model.processor.tokenizer))
    model.save_pretrained(tmp_path)
    loaded = MoRAForVideoGrounding.from_pretrained(tmp_path).eval()
    assert loaded.get_input_embeddings().weight.shape[0] == len(model.processor.tokenizer)
    with torch.no_grad():
        assert torch.equal(model.eval()(**batch).logits, loaded(**batch).logits)


@pytest.mark.parametrize(
    ("backbone", "engine"),
    [("llava", "sam"), ("llava", "sam2"), ("qwen2_5_vl", "sam"), ("qwen3_vl", "sam2")],
)
def test_every_tensor_survives_save_and_load(backbone, engine, tmp_path):
    """No key missing or unexpected, and every parameter and buffer equal: including weights the
    wrapped transformers models tie (SAM's prompt-encoder positional embedding is saved once, as the
    image one, and must be tied again at load, not initialised at random)."""
    model = tiny_model(backbone, engine, seed=9)
    model.save_pretrained(tmp_path)
    loaded, info = MoRAForVideoGrounding.from_pretrained(tmp_path, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"], info
    reference = model.state_dict()
    for key, value in loaded.state_dict().items():
        assert torch.equal(value, reference[key]), key
    if engine == "sam":
        sam = loaded.mask_engine.model
        assert torch.equal(
            sam.prompt_encoder.shared_embedding.positional_embedding,
            sam.shared_image_embedding.positional_embedding,
        )
