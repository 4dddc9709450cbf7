"""LoRA placement, trainable groups and the new-token-row gradient mask."""

from __future__ import annotations

import pytest
import torch
from model_testing import tiny_model, training_batch

from mora.model.trainable import TrainableSettings, configure_trainable, trainable_parameter_counts


@pytest.mark.parametrize("backbone", ["qwen2_5_vl", "qwen3_vl"])
def test_lora_touches_only_the_language_model(backbone):
    model = tiny_model(backbone, "sam2")
    configure_trainable(model, TrainableSettings())
    lora = [n for n, _ in model.named_parameters() if "lora_" in n]
    assert lora
    assert all(n.startswith("vlm.model.language_model.layers.") for n in lora), lora
    assert all(n.split(".lora_")[0].endswith(("q_proj", "v_proj")) for n in lora)
    assert not any("visual" in n or "vision" in n for n in lora)


def test_default_groups_are_frozen_or_trained_as_lisa():
    model = tiny_model("llava", "sam2")
    counts = configure_trainable(model, TrainableSettings())
    assert counts["vision_tower"] == counts["projector"] == counts["mask_image_encoder"] == 0
    assert counts["language_model"] == 0
    groups = ("lora", "mask_decoder", "seg_projector", "temporal_head", "video_adapter", "grounding_reader")
    for group in (*groups, "video_dense_prompt", "pixel_mask_path"):
        assert counts[group] > 0, group
    assert counts["motion_tokenizer"] == 0  # the tiny default has no motion tokens
    hidden = model.config.hidden_size
    assert counts["new_token_rows"] == 2 * 2 * hidden  # [SEG], [LOC] rows of embeddings and lm_head
    assert counts["total"] == sum(v for k, v in counts.items() if k != "total")
    for module in model.mask_engine.image_encoder_modules():
        assert not any(p.requires_grad for p in module.parameters())


def test_only_new_token_rows_of_embeddings_change():
    model = tiny_model("llava", "sam2")
    configure_trainable(model, TrainableSettings())
    embed = model.vlm.get_input_embeddings().weight
    before = embed.detach().clone()
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1.0)
    model(**training_batch(model.processor)).loss.backward()
    optimizer.step()
    changed = (embed.detach() != before).any(dim=1).nonzero().flatten().tolist()
    assert changed and set(changed) <= {model.config.seg_token_id, model.config.loc_token_id}


def test_everything_recipe_trains_all_groups_without_lora():
    model = tiny_model("llava", "sam")
    counts = configure_trainable(model, TrainableSettings.everything())
    assert counts["lora"] == 0 and counts["new_token_rows"] == 0
    for group in ("vision_tower", "projector", "mask_image_encoder", "language_model", "mask_decoder"):
        assert counts[group] > 0, group
    assert trainable_parameter_counts(model) == counts
