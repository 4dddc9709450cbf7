"""The Qwen3-VL backbone against transformers' own ``Qwen3VLForConditionalGeneration`` path (its video
patchify, ``mm_token_type_ids``, rope index, DeepStack injection and ``generate``), plus predict, the CLI,
save/load and a few training steps on the tiny preset."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from model_testing import NUM_FRAMES, moving_square_clip, tiny_model, training_batch
from PIL import Image
from transformers.models.qwen3_vl.video_processing_qwen3_vl import Qwen3VLVideoProcessor

from mora.cli import main
from mora.model.modeling_mora import MoRAForVideoGrounding
from mora.model.trainable import TrainableSettings, configure_trainable


def _reference_inputs(model, batch):
    """transformers' inputs for the same prompts: its own video patch layout and grid."""
    vc = model.config.vlm_config.vision_config
    patches, t, h, w = Qwen3VLVideoProcessor.patchify(
        None,
        batch["pixel_values"],
        patch_size=vc.patch_size,
        merge_size=vc.spatial_merge_size,
        temporal_patch_size=vc.temporal_patch_size,
    )
    V = batch["pixel_values"].shape[0]
    return {
        "input_ids": batch["input_ids"],
        "attention_mask": batch["attention_mask"],
        "mm_token_type_ids": batch["mm_token_type_ids"],
        "pixel_values_videos": patches.flatten(0, 1),
        "video_grid_thw": torch.tensor([[t, h, w]] * V),
    }


@pytest.fixture(scope="module")
def model():
    return tiny_model("qwen3_vl", "sam2", seed=5).eval()


def test_language_model_states_equal_transformers_forward(model):
    """Hidden states of MoRA's path (adapter tokens + DeepStack + M-RoPE) equal the VLM's native forward on
    a right-padded batch of two questions with timestamped video groups."""
    clips = [moving_square_clip(seed=0)[0], moving_square_clip(seed=1)[0]]
    batch = model.processor(clips, ["Which object moves right?", "Why did the red square move?"])
    assert int(batch["attention_mask"][0].sum()) < batch["input_ids"].shape[1]  # padding is exercised
    with torch.no_grad():
        features, _, llm_idx = model.encode_video(batch["pixel_values"])
        embeds, lm_kwargs = model.build_inputs_embeds(
            batch["input_ids"], batch["pixel_values"], features, llm_idx
        )
        ours = model.language_model_hidden(
            embeds, batch["input_ids"], batch["attention_mask"], len(llm_idx), lm_kwargs
        )
        reference = model.vlm.model(**_reference_inputs(model, batch)).last_hidden_state
        without_deepstack = model.language_model_hidden(
            embeds, batch["input_ids"], batch["attention_mask"], len(llm_idx)
        )
    assert len(lm_kwargs["deepstack_visual_embeds"]) == 2  # tiny: DeepStack after both vision blocks
    keep = batch["attention_mask"].bool()
    torch.testing.assert_close(ours[keep], reference[keep], atol=1e-5, rtol=1e-5)
    assert not torch.allclose(without_deepstack[keep], reference[keep], atol=1e-3)


def test_greedy_generation_equals_transformers_generate(model):
    """`predict`'s decoding loop (KV cache, next M-RoPE positions) gives the tokens of ``vlm.generate``."""
    from mora.model.inference import greedy_generate

    clip, _ = moving_square_clip()
    batch = model.processor([clip], ["Which object moves right?"])
    L = batch["input_ids"].shape[1]
    steps = 6
    model.config.max_new_tokens = steps
    try:
        with torch.no_grad():
            features, _, llm_idx = model.encode_video(batch["pixel_values"])
            embeds, lm_kwargs = model.build_inputs_embeds(
                batch["input_ids"], batch["pixel_values"], features, llm_idx
            )
            sequence, hidden = greedy_generate(model, batch["input_ids"], embeds, len(llm_idx), lm_kwargs)
            reference = model.vlm.generate(
                **_reference_inputs(model, batch),
                max_new_tokens=steps,
                do_sample=False,
                eos_token_id=None,
                output_logits=True,
                return_dict_in_generate=True,
            )
            logits = model.adapter.lm_head(
                hidden[0, L - 1 :]
            )  # the prompt's last state, then each fed-back token
    finally:
        model.config.max_new_tokens = 24
    generated = sequence[0, L:].tolist()
    assert len(generated) >= 2 and generated == reference.sequences[0, L : L + len(generated)].tolist()
    for step, (mine, theirs) in enumerate(zip(logits, reference.logits)):  # positions of generated tokens too
        torch.testing.assert_close(mine, theirs[0], atol=1e-4, rtol=1e-4, msg=f"step {step}")


def test_token_type_mismatch_is_an_error_with_both_counts(model):
    batch = training_batch(model.processor)
    types = batch["mm_token_type_ids"].clone()
    first = int(types[0].nonzero()[0])
    types[0, first] = 0
    n = int((batch["input_ids"][0] == model.config.video_token_id).sum())
    with pytest.raises(ValueError, match=rf"mark \[{n - 1}, {n}\] visual tokens .* \[{n}, {n}\] <video>"):
        model(**{**batch, "mm_token_type_ids": types})


def test_predict_generate_and_template(model):
    clip, _ = moving_square_clip(num_frames=8, height=36, width=50)
    fixed = torch.tensor([-6.0, -6.0, 6.0, 6.0, 6.0, -6.0, -6.0, -6.0])
    handle = model.temporal_head.register_forward_hook(lambda m, i, o: fixed.to(o).expand_as(o))
    try:
        pred = model.predict(clip, "Which object moves right?", mode="template", propagation="per_frame")
        generated = model.predict([Image.fromarray(f) for f in clip], "Which object moves right?")
    finally:
        handle.remove()
    assert pred.masks.shape == (8, 36, 50) and pred.span == (2, 4)
    assert not pred.masks[[0, 1, 5, 6, 7]].any()
    assert generated.masks.shape == (8, 36, 50) and isinstance(generated.text, str)


def test_save_load_round_trip_and_lora(tmp_path):
    model = tiny_model("qwen3_vl", "sam2", seed=9)
    configure_trainable(model, TrainableSettings())
    lora = [n for n, _ in model.named_parameters() if "lora_" in n]
    assert lora and all(n.startswith("vlm.model.language_model.layers.") for n in lora)
    assert not any("visual" in n for n in lora)
    for name, param in model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(param, std=0.5)
    model.save_pretrained(tmp_path)
    loaded, info = MoRAForVideoGrounding.from_pretrained(tmp_path, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"], info
    assert (
        loaded.config.backbone_family == "qwen3_vl" and loaded.processor.layout.backbone_family == "qwen3_vl"
    )
    batch = training_batch(model.processor)
    with torch.no_grad():
        a, b = model.eval()(**batch, full_logits=True), loaded.eval()(**batch, full_logits=True)
    for key in ("logits", "mask_logits", "span_logits", "loss"):
        assert torch.equal(getattr(a, key), getattr(b, key)), key


def test_a_few_training_steps_reduce_the_loss():
    model = tiny_model("qwen3_vl", "sam2", seed=1)
    counts = configure_trainable(model, TrainableSettings.everything())
    assert counts["vision_tower"] > 0 and counts["projector"] > 0
    batch = training_batch(model.processor)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    losses = []
    for _ in range(6):
        out = model(**batch)
        losses.append(float(out.loss.detach()))
        optimizer.zero_grad()
        out.loss.backward()
        deepstack = model.vlm.model.visual.deepstack_merger_list
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in deepstack.parameters())
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
    assert all(np.isfinite(losses)) and losses[-1] < losses[0]


def test_cli_init_tiny_and_predict(tmp_path):
    model_dir, out = tmp_path / "m", tmp_path / "out"
    assert main(["init-tiny", "--out", str(model_dir), "--backbone", "qwen3_vl"]) == 0
    config = json.loads((model_dir / "config.json").read_text())
    assert config["backbone_family"] == "qwen3_vl" and config["vlm_config"]["model_type"] == "qwen3_vl"
    frames = tmp_path / "frames"
    frames.mkdir()
    for i, frame in enumerate(moving_square_clip()[0]):
        Image.fromarray(frame).save(frames / f"frame_{i:03d}.png")
    args = ["predict", "--model", str(model_dir), "--video", str(frames), "--question", "What moves?"]
    assert main([*args, "--out", str(out), "--mode", "template"]) == 0
    result = json.loads((out / "prediction.json").read_text())
    assert len(result["frame_scores"]) == NUM_FRAMES
