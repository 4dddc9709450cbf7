"""``mora convert sam`` against Meta's ``segment-anything`` package (PyPI 1.0): a tiny random ``Sam`` built
from its modeling classes, saved as a ``.pth`` state dict, converted, and compared on the same image with
points, boxes, a mask prompt and a raw sparse embedding (through mora's SAM engine). The published ViT-B/L/H
builds are checked key for key on the meta device.

segment-anything imports torchvision in its package ``__init__`` (for the predictor's transforms), which
cannot be imported here; its ``modeling`` subpackage does not, so the test imports that subpackage under an
empty package shell instead of stubbing torchvision (a stub would fool transformers' availability checks).
"""

from __future__ import annotations

import functools
import importlib.util
import sys
import types

import pytest
import torch
from transformers import SamModel

from mora.cli import main
from mora.convert.checkpoint_io import ConversionError
from mora.convert.sam import convert_sam, convert_sam_state_dict
from mora.model.mask_engines import SamMaskEngine, sam_vit_h_config

SIZE, PATCH, WIDTH, PROMPT_DIM = 64, 8, 48, 32
GRID = SIZE // PATCH
ATOL = 1e-5


@functools.cache
def _segment_anything_modeling() -> types.ModuleType:
    if "segment_anything" not in sys.modules:  # (the shell below has no __spec__ for find_spec to read)
        spec = importlib.util.find_spec("segment_anything")
        if spec is None:
            pytest.skip("segment-anything is not installed (pip install segment-anything==1.0)")
        shell = types.ModuleType("segment_anything")
        shell.__path__ = list(spec.submodule_search_locations)
        sys.modules["segment_anything"] = shell
    import segment_anything.modeling as modeling

    return modeling


def _tiny_sam(seed: int = 0) -> torch.nn.Module:
    """ViT width 48, 2 blocks (windowed + global), patch 8 on 64 px; prompt dim 32; 8 decoder heads as Meta's."""
    sam = _segment_anything_modeling()
    torch.manual_seed(seed)
    encoder = sam.ImageEncoderViT(
        img_size=SIZE,
        patch_size=PATCH,
        embed_dim=WIDTH,
        depth=2,
        num_heads=2,
        out_chans=PROMPT_DIM,
        qkv_bias=True,
        norm_layer=functools.partial(torch.nn.LayerNorm, eps=1e-6),
        use_rel_pos=True,
        window_size=4,
        global_attn_indexes=(1,),
    )
    model = sam.Sam(
        image_encoder=encoder,
        prompt_encoder=sam.PromptEncoder(
            embed_dim=PROMPT_DIM,
            image_embedding_size=(GRID, GRID),
            input_image_size=(SIZE, SIZE),
            mask_in_chans=16,
        ),
        mask_decoder=sam.MaskDecoder(
            num_multimask_outputs=3,
            transformer=sam.TwoWayTransformer(depth=2, embedding_dim=PROMPT_DIM, mlp_dim=64, num_heads=8),
            transformer_dim=PROMPT_DIM,
            iou_head_hidden_dim=32,
        ),
    ).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(
                torch.randn_like(p) * 0.05
            )  # zero-initialised tables (relative positions) become non-trivial
    return model


def _convert(checkpoint, out, *options: str) -> int:
    """``mora convert sam`` through the CLI entry point; its exit status."""
    return main(["convert", "sam", "--checkpoint", str(checkpoint), "--out", str(out), *options])


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    model = _tiny_sam()
    folder = tmp_path_factory.mktemp("sam")
    torch.save(model.state_dict(), folder / "sam_tiny.pth")
    return model, convert_sam(folder / "sam_tiny.pth", folder / "hf")


def _prompts():
    points, labels = torch.tensor([[[10.0, 20.0], [40.0, 33.0]]]), torch.tensor([[1, 0]])
    box = torch.tensor([[5.0, 6.0, 50.0, 40.0]])
    mask = torch.randn(1, 1, 4 * GRID, 4 * GRID)
    return [
        (
            "points",
            dict(points=(points, labels)),
            dict(input_points=points[:, None], input_labels=labels[:, None]),
        ),
        ("box", dict(boxes=box), dict(input_boxes=box[None])),
        (
            "points+box+mask",
            dict(points=(points, labels), boxes=box, masks=mask),
            dict(
                input_points=points[:, None],
                input_labels=labels[:, None],
                input_boxes=box[None],
                input_masks=mask,
            ),
        ),
    ]


def test_points_boxes_masks_give_the_same_logits_and_iou(converted):
    model, out = converted
    hf = SamModel.from_pretrained(out).eval()
    pixels = torch.randn(1, 3, SIZE, SIZE)
    with torch.no_grad():
        embeddings = model.image_encoder(pixels)
        for name, original, ours in _prompts():
            sparse, dense = model.prompt_encoder(
                points=original.get("points"), boxes=original.get("boxes"), masks=original.get("masks")
            )
            for multimask in (True, False):
                logits, iou = model.mask_decoder(
                    image_embeddings=embeddings,
                    image_pe=model.prompt_encoder.get_dense_pe(),
                    sparse_prompt_embeddings=sparse,
                    dense_prompt_embeddings=dense,
                    multimask_output=multimask,
                )
                result = hf(pixel_values=pixels, multimask_output=multimask, **ours)
                torch.testing.assert_close(result.pred_masks[:, 0], logits, atol=ATOL, rtol=0, msg=name)
                torch.testing.assert_close(result.iou_scores[:, 0], iou, atol=ATOL, rtol=0, msg=name)


def test_sparse_embedding_through_the_engine(converted):
    model, out = converted
    engine = SamMaskEngine.from_pretrained(str(out))
    pixels, prompt = torch.randn(2, 3, SIZE, SIZE), torch.randn(2, 3, PROMPT_DIM)
    references = []
    with torch.no_grad():
        for frame, tokens in zip(pixels, prompt):  # segment-anything's decoder takes one image per call
            embedding = model.image_encoder(frame[None])
            logits, _ = model.mask_decoder(
                image_embeddings=embedding,
                image_pe=model.prompt_encoder.get_dense_pe(),
                sparse_prompt_embeddings=tokens[None],
                dense_prompt_embeddings=model.prompt_encoder.no_mask_embed.weight.reshape(
                    1, -1, 1, 1
                ).expand_as(embedding),
                multimask_output=False,
            )
            references.append(model.postprocess_masks(logits, (SIZE, SIZE), (SIZE, SIZE))[:, 0])
        reference = torch.cat(references)
        ours = engine.decode(engine.encode(pixels), prompt)
    torch.testing.assert_close(ours, reference, atol=ATOL, rtol=0)


def test_cli_converts_with_dtype(converted, tmp_path):
    model, _ = converted
    torch.save(model.state_dict(), tmp_path / "sam.pth")
    assert _convert(tmp_path / "sam.pth", tmp_path / "bf16", "--dtype", "bf16") == 0
    loaded = SamModel.from_pretrained(tmp_path / "bf16", dtype="auto")
    assert loaded.dtype == torch.bfloat16
    assert sorted(p.name for p in (tmp_path / "bf16").iterdir()) == ["config.json", "model.safetensors"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary folder left behind


@pytest.mark.parametrize(
    ("builder", "heads", "global_blocks"),
    [
        ("build_sam_vit_b", 12, [2, 5, 8, 11]),
        ("build_sam_vit_l", 16, [5, 11, 17, 23]),
        ("build_sam_vit_h", 16, [7, 15, 23, 31]),
    ],
)
def test_published_vits_convert_key_for_key(builder, heads, global_blocks):
    _segment_anything_modeling()
    import segment_anything.build_sam as build_sam

    with torch.device("meta"):
        model = getattr(build_sam, builder)()
    config, state = convert_sam_state_dict(model.state_dict())
    assert config.vision_config.num_attention_heads == heads
    assert config.vision_config.global_attn_indexes == global_blocks
    with torch.device("meta"):
        expected = SamModel(config).state_dict()
    assert {k: v.shape for k, v in state.items()} == {k: v.shape for k, v in expected.items()}
    if builder == "build_sam_vit_h":
        assert config.to_diff_dict() == sam_vit_h_config().to_diff_dict()


def test_unknown_missing_and_misshapen_keys_are_named(converted):
    model, _ = converted
    state = model.state_dict()
    extra = {**state, "image_encoder.extra_head.weight": torch.zeros(1)}
    with pytest.raises(
        ConversionError, match=r"unknown keys \(no rule, not ignored\): image_encoder.extra_head.weight"
    ):
        convert_sam_state_dict(extra)
    missing = {k: v for k, v in state.items() if k != "mask_decoder.iou_token.weight"}
    with pytest.raises(ConversionError, match="iou_token.weight"):
        convert_sam_state_dict(missing)
    misshapen = {**state, "mask_decoder.mask_tokens.weight": torch.zeros(4, PROMPT_DIM + 1)}
    with pytest.raises(ConversionError, match="mask_decoder.mask_tokens.weight"):
        convert_sam_state_dict(misshapen)
    stats = torch.tensor([123.675, 116.28, 103.53]).view(-1, 1, 1)
    convert_sam_state_dict({**state, "pixel_mean": stats})  # ImageNet's, on the ignore list
    with pytest.raises(ConversionError, match="pixel_mean"):
        convert_sam_state_dict({**state, "pixel_mean": stats * 0})


def test_cli_errors_are_one_line_and_leave_no_folder(converted, tmp_path, capsys):
    model, _ = converted
    state = model.state_dict()
    del state["prompt_encoder.no_mask_embed.weight"]
    torch.save(state, tmp_path / "partial.pth")
    (tmp_path / "garbage.pth").write_bytes(b"\x00" * 64)
    for checkpoint in ("partial.pth", "garbage.pth", "absent.pth"):
        code = _convert(tmp_path / checkpoint, tmp_path / "out")
        err = capsys.readouterr().err
        lines = [line for line in err.splitlines() if "error" in line]
        assert code == 2 and len(lines) == 1 and checkpoint in lines[0] and "Traceback" not in err, err
        assert not (tmp_path / "out").exists()
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("mine")
    torch.save(model.state_dict(), tmp_path / "sam.pth")
    assert _convert(tmp_path / "sam.pth", tmp_path / "out") == 2
    assert "--overwrite" in capsys.readouterr().err and (tmp_path / "out" / "keep.txt").exists()
    assert _convert(tmp_path / "sam.pth", tmp_path / "out", "--overwrite") == 0
    assert not (tmp_path / "out" / "keep.txt").exists()
