"""``mora convert lisa`` on a tiny checkpoint written in LISA's real key layout and file formats.

The source is assembled from the real modules LISA is made of: segment-anything's ``Sam`` under
``model.visual_model.``, transformers' CLIP vision tower under ``model.vision_tower.vision_tower.vision_model.``
(or in a separate ``--clip`` folder, as LISA's released weights lack it), a Llama (``model.*``/``lm_head``,
with the ``rotary_emb.inv_freq`` buffers transformers 4.31 saved), a one-Linear ``mm_projector`` and
``text_hidden_fcs``; LLaMA's sentencepiece ``tokenizer.model`` with LISA's added tokens in
``added_tokens.json``; ``.bin`` shards + index, or one safetensors file. The converted model's mask for an
image and a prompt ending in ``[SEG]`` must equal the same computation done directly with those modules:
CLIP penultimate-layer patches -> projector -> Llama -> the state before ``[SEG]`` -> ``text_hidden_fcs`` ->
SAM prompt encoder (no-mask dense embedding) -> mask decoder (single mask).
"""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from transformers import (
    CLIPConfig,
    CLIPModel,
    CLIPVisionConfig,
    CLIPVisionModel,
    LlamaConfig,
    LlamaForCausalLM,
)

import mora
from mora.cli import main
from mora.convert.checkpoint_io import ConversionError
from mora.convert.lisa import FRESH_MODULES, PROVENANCE_NAME, convert_lisa
from tests.hub_testing import add_snapshot
from tests.test_convert_sam import PROMPT_DIM, SIZE, _tiny_sam

spm = pytest.importorskip(
    "sentencepiece", reason="LLaMA's tokenizer.model needs sentencepiece (mora[convert])"
)

BASE_VOCAB = 320
ADDED = {
    "<im_patch>": BASE_VOCAB,
    "<im_start>": BASE_VOCAB + 1,
    "<im_end>": BASE_VOCAB + 2,
    "[SEG]": BASE_VOCAB + 3,
}
VOCAB = BASE_VOCAB + len(ADDED)
HIDDEN, LAYERS, HEADS = 64, 2, 4
CLIP_WIDTH, CLIP_SIZE = 64, 32  # head size 64 as OpenAI's CLIP; 4x4 patches of 8 px
CLIP_PREFIX = "model.vision_tower.vision_tower."
QUESTION = "Which object moves to the left?"
ATOL = 1e-4


# ------------------------------------------------------------------------------------------ source
class TinyLisa:
    """The modules a LISA checkpoint is made of, and their state dict under LISA's key names."""

    def __init__(self, seed: int = 0) -> None:
        torch.manual_seed(seed)
        self.llama = LlamaForCausalLM(
            LlamaConfig(
                vocab_size=VOCAB,
                hidden_size=HIDDEN,
                intermediate_size=128,
                num_hidden_layers=LAYERS,
                num_attention_heads=HEADS,
                num_key_value_heads=HEADS,
                max_position_embeddings=512,
                rms_norm_eps=1e-6,
                tie_word_embeddings=False,
            )
        ).eval()
        vision = CLIPVisionConfig(
            hidden_size=CLIP_WIDTH,
            intermediate_size=128,
            num_hidden_layers=3,
            num_attention_heads=CLIP_WIDTH // 64,
            image_size=CLIP_SIZE,
            patch_size=8,
        )
        full = CLIPModel(
            CLIPConfig(
                vision_config=vision.to_dict(),
                text_config=dict(
                    hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=1
                ),
            )
        ).eval()
        self.clip_full = full  # what `--clip` points at (openai/clip-vit-large-patch14 is a CLIPModel)
        self.clip = CLIPVisionModel(vision).eval()
        self.clip.load_state_dict(full.vision_model.state_dict())
        self.projector = torch.nn.Linear(CLIP_WIDTH, HIDDEN)
        self.text_hidden_fcs = torch.nn.Sequential(
            torch.nn.Linear(HIDDEN, HIDDEN),
            torch.nn.ReLU(),
            torch.nn.Linear(HIDDEN, PROMPT_DIM),
            torch.nn.Dropout(0.0),
        )
        self.sam = _tiny_sam(seed)

    def state_dict(self, with_clip: bool = False) -> dict[str, torch.Tensor]:
        state = dict(self.llama.state_dict())  # model.embed_tokens, model.layers.N.*, model.norm, lm_head
        head_dim = HIDDEN // HEADS
        inv_freq = 1.0 / 10000 ** (torch.arange(0, head_dim, 2).float() / head_dim)
        for i in range(LAYERS):  # saved as a persistent buffer by transformers 4.31 (LISA's version)
            state[f"model.layers.{i}.self_attn.rotary_emb.inv_freq"] = inv_freq.clone()
        state.update({f"model.mm_projector.{k}": v for k, v in self.projector.state_dict().items()})
        state.update(
            {f"model.text_hidden_fcs.0.{k}": v for k, v in self.text_hidden_fcs.state_dict().items()}
        )
        state.update({f"model.visual_model.{k}": v for k, v in self.sam.state_dict().items()})
        if with_clip:
            state.update({f"{CLIP_PREFIX}vision_model.{k}": v for k, v in self.clip.state_dict().items()})
            state[f"{CLIP_PREFIX}vision_model.embeddings.position_ids"] = torch.arange(17)[None]
        return {k: v.detach().clone().contiguous() for k, v in state.items()}

    @torch.no_grad()
    def reference_mask(self, input_ids, pixel_values, mask_pixel_values, seg_id: int, video_id: int):
        """The [SEG] mask computed directly with the source modules (one frame, mora's token layout)."""
        hidden_states = self.clip(pixel_values, output_hidden_states=True).hidden_states
        patches = hidden_states[-2][:, 1:]  # [1, n, d]: penultimate layer, CLS dropped (LLaVA-v1)
        # mora's video tokens for one frame: every patch, then the frame's mean patch (Video-ChatGPT)
        video = self.projector(torch.cat([patches, patches.mean(dim=1, keepdim=True)], dim=1))[0]
        is_video = input_ids[0] == video_id
        embeds = self.llama.model.embed_tokens(input_ids.clamp(max=VOCAB - 1))[0].clone()
        embeds[is_video] = video
        hidden = self.llama.model(inputs_embeds=embeds[None]).last_hidden_state[0]  # [L, D], after the norm
        seg_pos = int(torch.nonzero(input_ids[0] == seg_id)[0, 0])
        prompt = self.text_hidden_fcs(hidden[seg_pos - 1])  # the state before [SEG] (LISA's convention)
        image_embeddings = self.sam.image_encoder(mask_pixel_values)
        grid = image_embeddings.shape[-1]
        dense = self.sam.prompt_encoder.no_mask_embed.weight.reshape(1, -1, 1, 1).expand(1, -1, grid, grid)
        low_res, _ = self.sam.mask_decoder(
            image_embeddings=image_embeddings,
            image_pe=self.sam.prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=prompt.view(1, 1, -1),
            dense_prompt_embeddings=dense,
            multimask_output=False,
        )
        return F.interpolate(low_res, size=(SIZE, SIZE), mode="bilinear", align_corners=False)[0, 0]


def _write_tokenizer(folder) -> None:
    """LLaMA's format as LISA saved it (transformers 4.31): tokenizer.model + added_tokens.json."""
    corpus = [
        "Which object moves to the left? Sure, it is the red ball.",
        "A chat between a curious human and an artificial intelligence assistant.",
        "USER: ASSISTANT: Please output the spatiotemporal segmentation masks as the answer",
        "according to both temporal and spatial motion clues",
    ] * 20
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(corpus),
        model_writer=model,
        vocab_size=BASE_VOCAB,
        model_type="bpe",
        unk_id=0,
        bos_id=1,
        eos_id=2,
        pad_id=-1,
        byte_fallback=True,
        character_coverage=1.0,
        minloglevel=2,
    )
    (folder / "tokenizer.model").write_bytes(model.getvalue())
    (folder / "added_tokens.json").write_text(json.dumps(ADDED))
    (folder / "special_tokens_map.json").write_text(
        json.dumps({"bos_token": "<s>", "eos_token": "</s>", "pad_token": "<unk>", "unk_token": "<unk>"})
    )
    (folder / "tokenizer_config.json").write_text(
        json.dumps(
            {
                "tokenizer_class": "LlamaTokenizer",
                "add_bos_token": True,
                "add_eos_token": False,
                "bos_token": "<s>",
                "eos_token": "</s>",
                "unk_token": "<unk>",
                "pad_token": None,
                "legacy": False,
                "model_max_length": 512,
                "padding_side": "right",
            }
        )
    )


def _lisa_config() -> dict:
    """LISA's flat config.json (LLaVA-v1: Llama fields + mm_* + LISA's own)."""
    return {
        "architectures": ["LISAForCausalLM"],
        "model_type": "llava",
        "hidden_size": HIDDEN,
        "intermediate_size": 128,
        "num_attention_heads": HEADS,
        "num_hidden_layers": LAYERS,
        "num_key_value_heads": HEADS,
        "max_position_embeddings": 512,
        "rms_norm_eps": 1e-6,
        "vocab_size": VOCAB,
        "mm_hidden_size": CLIP_WIDTH,
        "mm_vision_select_layer": -2,
        "mm_vision_select_feature": "patch",
        "mm_use_im_start_end": True,
        "mm_vision_tower": "openai/clip-vit-large-patch14",
        "out_dim": PROMPT_DIM,
        "train_mask_decoder": True,
        "tie_word_embeddings": False,
        "torch_dtype": "float32",
    }


def write_lisa_folder(folder, state: dict[str, torch.Tensor], fmt: str = "bin"):
    """A LISA-layout folder: weights as .bin shards + index (``fmt="bin"``) or one safetensors file."""
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps(_lisa_config()))
    _write_tokenizer(folder)
    if fmt == "safetensors":
        save_file(state, folder / "model.safetensors")
        return folder
    keys = sorted(state)
    half = len(keys) // 2
    weight_map = {}
    for i, part in enumerate((keys[:half], keys[half:]), start=1):
        name = f"pytorch_model-{i:05d}-of-00002.bin"
        torch.save({k: state[k] for k in part}, folder / name)
        weight_map.update(dict.fromkeys(part, name))
    index = {"metadata": {"total_size": sum(v.numel() * v.element_size() for v in state.values())}}
    (folder / "pytorch_model.bin.index.json").write_text(json.dumps({**index, "weight_map": weight_map}))
    return folder


@pytest.fixture(scope="module")
def source():
    return TinyLisa()


@pytest.fixture(scope="module")
def clip_folder(source, tmp_path_factory):
    folder = tmp_path_factory.mktemp("clip") / "clip-vit-tiny"
    source.clip_full.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def converted_bin(source, clip_folder, tmp_path_factory):
    """LISA's released layout: .bin shards without the CLIP tower, converted with --clip through the CLI."""
    root = tmp_path_factory.mktemp("lisa_bin")
    src = write_lisa_folder(root / "LISA-tiny", source.state_dict(with_clip=False), "bin")
    out = root / "mora"
    assert _convert(src, out, "--clip", str(clip_folder)) == 0
    return out


def _convert(checkpoint, out, *options: str) -> int:
    return main(["convert", "lisa", "--checkpoint", str(checkpoint), "--out", str(out), *options])


def _seg_inputs(model, frames):
    """Processor inputs for one image and a prompt ending in [SEG] (the answer cut after it)."""
    processor = model.processor
    batch = processor([frames], [QUESTION])
    seg_id = processor.tokenizer.convert_tokens_to_ids("[SEG]")
    answer = processor.tokenizer(" Sure, it is", add_special_tokens=False).input_ids
    ids = torch.cat([batch["input_ids"], torch.tensor([answer + [seg_id]])], dim=1)
    return ids, batch["pixel_values"], batch["mask_pixel_values"], seg_id


def _check_same_mask(source, folder) -> None:
    model = mora.load_model(folder)
    frames = np.random.default_rng(0).integers(0, 255, size=(1, 48, 40, 3), dtype=np.uint8)
    ids, pixel_values, mask_pixel_values, seg_id = _seg_inputs(model, frames)
    with torch.no_grad():
        out = model(
            input_ids=ids,
            attention_mask=torch.ones_like(ids),
            pixel_values=pixel_values,
            mask_pixel_values=mask_pixel_values,
        )
    expected = source.reference_mask(
        ids, pixel_values[0], mask_pixel_values[0], seg_id, model.config.video_token_id
    )
    assert out.mask_logits.shape == (1, 1, SIZE, SIZE)
    torch.testing.assert_close(out.mask_logits[0, 0], expected, atol=ATOL, rtol=0)
    assert expected.abs().max() > 1e-2  # a non-trivial mask


# --------------------------------------------------------------------------------------------- tests
def test_bin_shards_with_clip_folder_give_lisas_mask(source, converted_bin):
    _check_same_mask(source, converted_bin)


def test_converted_folder_layout_config_and_tokens(source, converted_bin):
    names = {p.name for p in converted_bin.iterdir()}
    assert {"config.json", "model.safetensors", "mora_processor_config.json", PROVENANCE_NAME} <= names
    assert not any(n.endswith((".bin", ".pth")) for n in names)
    model = mora.load_model(converted_bin)
    cfg = model.config
    # the lisa_7b_sam_vit_h preset's MoRA-level settings, sizes from the tensors
    assert (cfg.seg_hidden_offset, cfg.frame_prompts, cfg.chat_template, cfg.propagation) == (
        -1,
        False,
        "vicuna_v1",
        "per_frame",
    )
    assert cfg.mask_engine_kind == "sam" and cfg.backbone_family == "llava"
    assert cfg.vlm_config.vision_feature_layer == -2 and cfg.vlm_config.projector_hidden_act == "linear"
    assert cfg.backbone_image_size == CLIP_SIZE and cfg.hidden_size == HIDDEN
    tok = model.processor.tokenizer
    # LISA's [SEG] keeps its id and trained row; mora's [LOC], <video>, <motion> follow
    assert tok.convert_tokens_to_ids("[SEG]") == ADDED["[SEG]"] == cfg.seg_token_id
    assert tok("Sure, it is [SEG].", add_special_tokens=False).input_ids.count(cfg.seg_token_id) == 1
    assert sorted([cfg.loc_token_id, cfg.video_token_id, cfg.motion_token_id]) == [
        VOCAB,
        VOCAB + 1,
        VOCAB + 2,
    ]
    embed = model.get_input_embeddings().weight
    assert embed.shape[0] == len(tok) == VOCAB + 3
    src_embed = source.llama.model.embed_tokens.weight
    torch.testing.assert_close(embed[:VOCAB], src_embed, atol=0, rtol=0)
    torch.testing.assert_close(
        embed[VOCAB:], src_embed.mean(0, keepdim=True).expand(3, -1), atol=1e-6, rtol=0
    )
    provenance = json.loads((converted_bin / PROVENANCE_NAME).read_text())
    assert provenance["preset"] == "lisa_7b_sam_vit_h" and set(provenance["fresh_modules"]) == set(
        FRESH_MODULES
    )


def test_seg_projection_and_sam_decoder_equal_the_source_tensors(source, converted_bin):
    model = mora.load_model(converted_bin)
    fcs = source.text_hidden_fcs
    for i in (0, 2):
        torch.testing.assert_close(model.seg_projector[i].weight, fcs[i].weight, atol=0, rtol=0)
        torch.testing.assert_close(model.seg_projector[i].bias, fcs[i].bias, atol=0, rtol=0)
    decoder, src = model.mask_engine.model.mask_decoder, source.sam.mask_decoder
    pairs = {
        "iou_token.weight": "iou_token.weight",
        "mask_tokens.weight": "mask_tokens.weight",
        "transformer.layers.0.self_attn.q_proj.weight": "transformer.layers.0.self_attn.q_proj.weight",
        "transformer.layers.1.mlp.lin2.bias": "transformer.layers.1.mlp.lin2.bias",
        "upscale_conv1.weight": "output_upscaling.0.weight",
        "output_hypernetworks_mlps.2.proj_out.weight": "output_hypernetworks_mlps.2.layers.2.weight",
        "iou_prediction_head.proj_in.weight": "iou_prediction_head.layers.0.weight",
    }
    mine, theirs = decoder.state_dict(), src.state_dict()
    for ours, meta in pairs.items():
        torch.testing.assert_close(mine[ours], theirs[meta], atol=0, rtol=0)
    assert len(mine) == len(theirs)
    projector = model.vlm.model.multi_modal_projector
    torch.testing.assert_close(projector.linear_1.weight, source.projector.weight, atol=0, rtol=0)
    torch.testing.assert_close(projector.linear_2.weight, torch.eye(HIDDEN), atol=0, rtol=0)


def test_safetensors_with_clip_in_checkpoint(source, tmp_path):
    src = write_lisa_folder(tmp_path / "LISA-st", source.state_dict(with_clip=True), "safetensors")
    out = convert_lisa(src, tmp_path / "mora")  # the tower in the checkpoint: no --clip needed
    _check_same_mask(source, out)


def test_predict_runs_on_the_converted_model(converted_bin):
    model = mora.load_model(converted_bin)
    model.config.max_new_tokens = 6
    frames = np.random.default_rng(1).integers(0, 255, size=(3, 40, 56, 3), dtype=np.uint8)
    pred = model.predict(frames, QUESTION)
    assert pred.masks.shape == (3, 40, 56) and pred.masks.dtype == bool
    assert len(pred.frame_scores) == 3 and isinstance(pred.text, str)
    pred = model.predict(frames, QUESTION, mode="template")
    assert pred.masks.shape == (3, 40, 56)


def test_default_clip_from_the_hub_cache_and_checkpoint_by_hub_id(source, clip_folder, hub_cache, tmp_path):
    add_snapshot(hub_cache, "openai/clip-vit-large-patch14", clip_folder)
    src = write_lisa_folder(tmp_path / "src", source.state_dict(with_clip=False), "bin")
    add_snapshot(hub_cache, "xinlai/LISA-tiny", src)
    out = tmp_path / "mora"
    assert _convert("xinlai/LISA-tiny", out) == 0  # Hub id, and --clip's default from the offline cache
    provenance = json.loads((out / PROVENANCE_NAME).read_text())
    assert provenance["clip"] == "openai/clip-vit-large-patch14"
    _check_same_mask(source, out)


@pytest.mark.parametrize("sam_format", ["meta_pth", "transformers_folder"])
def test_sam_replaced_by_meta_sam(source, clip_folder, tmp_path, sam_format):
    """--sam: LISA's language model and [SEG] projector with another SAM (the released MoRA training's start),
    here also for a checkpoint saved without its SAM keys."""
    import copy

    from mora.convert.sam import convert_sam

    other = copy.copy(source)
    other.sam = _tiny_sam(seed=1)
    torch.save(other.sam.state_dict(), tmp_path / "sam_tiny.pth")
    sam = tmp_path / "sam_tiny.pth"
    if sam_format == "transformers_folder":
        sam = convert_sam(sam, tmp_path / "sam-hf")
    state = {k: v for k, v in source.state_dict().items() if not k.startswith("model.visual_model.")}
    src = write_lisa_folder(tmp_path / "src", state, "bin")
    out = tmp_path / "mora"
    assert _convert(src, out, "--clip", str(clip_folder), "--sam", str(sam)) == 0
    _check_same_mask(other, out)
    decoder = mora.load_model(out).mask_engine.model.mask_decoder
    torch.testing.assert_close(
        decoder.iou_token.weight, other.sam.mask_decoder.iou_token.weight, atol=0, rtol=0
    )
    provenance = json.loads((out / PROVENANCE_NAME).read_text())
    assert provenance["sam"] == str(sam) and "replaced by --sam" in str(provenance["ignored_keys"])


# --------------------------------------------------------------------------------------------- errors
def _fails(tmp_path, capsys, state, *options, fmt="bin") -> str:
    src = write_lisa_folder(tmp_path / "bad", state, fmt)
    out = tmp_path / "out"
    capsys.readouterr()
    assert _convert(src, out, *options) == 2
    assert not out.exists()  # no partial folder
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.count("\n") == 1
    return err


def test_missing_sam_keys_is_one_clear_error(source, clip_folder, tmp_path, capsys):
    state = {k: v for k, v in source.state_dict().items() if not k.startswith("model.visual_model.")}
    err = _fails(tmp_path, capsys, state, "--clip", str(clip_folder))
    assert "without its SAM keys" in err and "model.visual_model." in err


def test_unknown_missing_and_misshapen_keys_are_named(source, clip_folder, tmp_path, capsys):
    state = source.state_dict()
    state["model.seg_token_temporal_module.weight"] = torch.zeros(3)
    del state["model.norm.weight"]
    state["model.text_hidden_fcs.0.2.weight"] = torch.zeros(PROMPT_DIM + 1, HIDDEN)
    state["model.text_hidden_fcs.0.2.bias"] = torch.zeros(PROMPT_DIM + 1)
    err = _fails(tmp_path, capsys, state, "--clip", str(clip_folder))
    assert "model.seg_token_temporal_module.weight" in err  # unknown
    assert "vlm.model.language_model.norm.weight" in err  # missing
    assert "model.text_hidden_fcs.0.2.weight" in err and "shape mismatches" in err


def test_unknown_key_in_the_clip_folder_is_named(source, tmp_path, capsys):
    folder = tmp_path / "clip"
    source.clip_full.save_pretrained(folder)
    from safetensors.torch import load_file

    state = load_file(folder / "model.safetensors")
    state["vision_model.adapter.weight"] = torch.zeros(2)
    save_file(state, folder / "model.safetensors")
    err = _fails(tmp_path, capsys, source.state_dict(), "--clip", str(folder))
    assert "vision_model.adapter.weight" in err


def test_no_clip_tower_anywhere(source, hub_cache, tmp_path, capsys):
    err = _fails(tmp_path, capsys, source.state_dict())  # default openai/clip-vit-large-patch14, not cached
    assert "--clip" in err and "openai/clip-vit-large-patch14" in err


def test_tokenizer_that_does_not_match_the_embeddings(source, clip_folder, tmp_path, capsys):
    state = source.state_dict()
    for key in ("model.embed_tokens.weight", "lm_head.weight"):
        state[key] = state[key][:-1].clone()  # one row fewer than the tokenizer's tokens
    err = _fails(tmp_path, capsys, state, "--clip", str(clip_folder))
    assert f"{VOCAB} tokens" in err and f"{VOCAB - 1} rows" in err


def test_output_folder_is_not_overwritten_without_the_flag(converted_bin, capsys):
    assert _convert(converted_bin, converted_bin) == 2
    assert "--overwrite" in capsys.readouterr().err


def test_errors_of_the_python_api_are_conversion_errors(tmp_path):
    with pytest.raises(ConversionError, match="does not exist"):
        convert_lisa(tmp_path / "nowhere", tmp_path / "out")


# ------------------------------------------------------------------------------------- published layout
class _StubTokenizer:
    """LISA-7B-v1's vocabulary by size alone: LLaMA's 32000 tokens, then LISA's 4 (``[SEG]`` = 32003)."""

    def __init__(self) -> None:
        self.vocab = {f"<piece{i}>": i for i in range(32000)}
        self.vocab.update({"<im_patch>": 32000, "<im_start>": 32001, "<im_end>": 32002, "[SEG]": 32003})
        self.unk_token_id, self.bos_token_id, self.eos_token_id = 0, 1, 2
        self.eos_token, self.pad_token = "<piece2>", None

    def __len__(self) -> int:
        return len(self.vocab)

    def get_vocab(self) -> dict[str, int]:
        return dict(self.vocab)

    def add_tokens(self, tokens, special_tokens: bool = False) -> int:
        new = [t for t in tokens if t not in self.vocab]
        for t in new:
            self.vocab[t] = len(self.vocab)
        return len(new)

    def convert_tokens_to_ids(self, token: str) -> int:
        return self.vocab.get(token, self.unk_token_id)

    @property
    def pad_token_id(self) -> int:
        return self.vocab[self.pad_token]


def test_lisa_7b_layout_gives_the_preset_key_for_key():
    """LISA-7B-v1's tensors (shapes on the meta device: Vicuna-7B, one-Linear projector, text_hidden_fcs
    4096 -> 256, segment-anything's ViT-H) with openai/clip-vit-large-patch14 give exactly the
    lisa_7b_sam_vit_h preset's configuration and every key of its model but the fresh modules."""
    from mora.convert.lisa import LisaParts, _expected_shapes, convert_lisa_state_dict
    from mora.model.mask_engines import sam_vit_h_config
    from mora.presets import lisa_7b_sam_vit_h
    from tests.test_convert_sam import _segment_anything_modeling

    _segment_anything_modeling()
    import segment_anything.build_sam as build_sam

    clip_config = CLIPVisionConfig(
        hidden_size=1024,
        intermediate_size=4096,
        num_hidden_layers=24,
        num_attention_heads=16,
        image_size=224,
        patch_size=14,
        projection_dim=768,
    )
    with torch.device("meta"):
        llama = LlamaForCausalLM(
            LlamaConfig(
                vocab_size=32004,
                hidden_size=4096,
                intermediate_size=11008,
                num_hidden_layers=32,
                num_attention_heads=32,
            )
        )
        state = dict(llama.state_dict())
        state.update(
            {f"model.visual_model.{k}": v for k, v in build_sam.build_sam_vit_h().state_dict().items()}
        )
        clip = {f"vision_model.{k}": v for k, v in CLIPVisionModel(clip_config).state_dict().items()}
        state["model.mm_projector.weight"] = torch.empty(4096, 1024)
        state["model.mm_projector.bias"] = torch.empty(4096)
        for i, shape in ((0, (4096, 4096)), (2, (256, 4096))):
            state[f"model.text_hidden_fcs.0.{i}.weight"] = torch.empty(shape)
            state[f"model.text_hidden_fcs.0.{i}.bias"] = torch.empty(shape[0])
    source_config = {**_lisa_config(), "hidden_size": 4096, "intermediate_size": 11008}
    source_config.update(
        num_attention_heads=32, num_hidden_layers=32, num_key_value_heads=32, vocab_size=32004
    )
    source_config.update(max_position_embeddings=2048, mm_hidden_size=1024, out_dim=256)
    parts = LisaParts(source_config, _StubTokenizer(), clip_state=clip, clip_config=clip_config)
    config, converted, tokenizer = convert_lisa_state_dict(state, parts)

    preset = lisa_7b_sam_vit_h()
    assert len(tokenizer) == preset.vlm_config.text_config.vocab_size == 32007
    assert tokenizer.convert_tokens_to_ids("[SEG]") == 32003
    for name in (
        "hidden_size",
        "intermediate_size",
        "num_hidden_layers",
        "num_attention_heads",
        "vocab_size",
    ):
        assert getattr(config.text_config, name) == getattr(preset.text_config, name), name
    ours, theirs = config.vlm_config.vision_config, preset.vlm_config.vision_config
    for name in (
        "hidden_size",
        "intermediate_size",
        "num_hidden_layers",
        "num_attention_heads",
        "image_size",
    ):
        assert getattr(ours, name) == getattr(theirs, name), name
    assert config.vlm_config.projector_hidden_act == preset.vlm_config.projector_hidden_act == "linear"
    assert config.vlm_config.vision_feature_layer == preset.vlm_config.vision_feature_layer == -2
    assert config.mask_engine_config.to_diff_dict() == sam_vit_h_config().to_diff_dict()
    fields = ("seg_hidden_offset", "frame_prompts", "chat_template", "propagation", "backbone_image_size")
    assert all(getattr(config, f) == getattr(preset, f) for f in fields)
    expected = {
        k: v
        for k, v in _expected_shapes(preset).items()
        if not k.startswith(tuple(f"{m}." for m in FRESH_MODULES))
    }
    assert {k: v.shape for k, v in converted.items()} == expected
