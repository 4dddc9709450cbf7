"""`mora assemble`: a MoRA folder from transformers-format base checkpoints (here: tiny Qwen3-VL and SAM2
written with ``save_pretrained``), loaded back with every base weight unchanged; mismatches name the field."""

from __future__ import annotations

import pytest
import torch
from model_testing import moving_square_clip, tiny_config
from transformers import Qwen3VLForConditionalGeneration, Sam2VideoModel

from mora.assemble import AssembleError, assemble
from mora.cli import main
from mora.model.modeling_mora import MoRAForVideoGrounding
from mora.processing.tokenizer import build_tiny_tokenizer


@pytest.fixture(scope="module")
def bases(tmp_path_factory):
    root = tmp_path_factory.mktemp("bases")
    config = tiny_config("qwen3_vl", "sam2")
    torch.manual_seed(0)
    vlm = Qwen3VLForConditionalGeneration(config.vlm_config)
    vlm.save_pretrained(root / "vlm")
    tokenizer = build_tiny_tokenizer()
    tokenizer.add_tokens(["<extra_0>", "<extra_1>"])  # a vocabulary larger than the embeddings: resized
    tokenizer.save_pretrained(root / "vlm")
    sam = Sam2VideoModel(config.mask_engine_config)
    sam.save_pretrained(root / "sam2")
    return config, root, vlm.state_dict(), sam.state_dict(), len(tokenizer)


def test_assembled_folder_keeps_the_base_weights(bases, tmp_path):
    config, root, vlm_state, sam_state, vocab = bases
    assemble(config, root / "vlm", root / "sam2", tmp_path / "mora", dtype="float32")
    model = MoRAForVideoGrounding.from_pretrained(tmp_path / "mora").eval()
    assert model.processor is not None and model.config.backbone_family == "qwen3_vl"
    assert model.get_input_embeddings().weight.shape[0] == vocab
    old_rows = vlm_state["model.language_model.embed_tokens.weight"].shape[0]
    for key, value in vlm_state.items():
        loaded = model.vlm.state_dict()[key]
        if key in ("model.language_model.embed_tokens.weight", "lm_head.weight"):
            loaded = loaded[:old_rows]
        assert torch.equal(loaded, value), key
    engine = model.mask_engine.model.state_dict()
    assert all(torch.equal(engine[k], v) for k, v in sam_state.items())
    clip, _ = moving_square_clip()
    pred = model.predict(clip, "Which object moves right?", mode="template")
    assert pred.masks.shape == clip.shape[:3]


def test_mismatched_architecture_names_the_fields(bases, tmp_path, capsys):
    config, root, *_ = bases
    bigger = config.to_dict()
    bigger["vlm_config"]["text_config"]["num_hidden_layers"] = 6
    with pytest.raises(AssembleError, match=r"text_config.num_hidden_layers: preset 6, checkpoint 4"):
        assemble(config.from_dict(bigger), root / "vlm", root / "sam2", dtype="float32")
    args = ["assemble", "--vlm", str(root / "vlm"), "--mask-engine", str(root / "sam2")]
    assert main([*args, "--preset", "qwen3_vl_8b_sam2_1_large", "--out", str(tmp_path / "a")]) == 2
    err = capsys.readouterr().err
    assert "text_config.hidden_size: preset 4096, checkpoint 128" in err and "Traceback" not in err
    assert main([*args, "--preset", "tiny", "--out", str(tmp_path / "b")]) == 2
    assert "unknown real preset 'tiny'" in capsys.readouterr().err
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
