"""``mora convert sam2`` against Meta's ``sam2`` package: a tiny random SAM2.1 built from its own modules and
config, saved as Meta saves checkpoints (``{"model": state_dict}``), converted, and compared on image-level
mask decoding (points, a sparse prompt embedding through mora's engine) and on video propagation with
its ``SAM2VideoPredictor`` on CPU. The published layouts are checked for keys and shapes.

The ``sam2`` package installs only with ``SAM2_BUILD_CUDA=0 pip install --no-deps --no-build-isolation
sam2==1.1.0`` (``bash run.sh test`` does this); without it these tests are skipped with that reason.
"""

from __future__ import annotations

import copy
import itertools
import os

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import Sam2VideoModel

from mora.cli import main
from mora.convert.sam2 import HieraLayout, convert_sam2, convert_sam2_state_dict
from mora.model.mask_engines import Sam2MaskEngine, sam2_1_hiera_large_config, sam2_1_hiera_tiny_config

sam2 = pytest.importorskip(
    "sam2",
    reason="the sam2 package is not installed (SAM2_BUILD_CUDA=0 pip install --no-deps --no-build-isolation sam2==1.1.0)",
)
hydra_utils = pytest.importorskip(
    "hydra.utils", reason="hydra-core (needed by the sam2 package) is not installed"
)
from omegaconf import OmegaConf  # noqa: E402  (after the skip: omegaconf comes with hydra-core)

SIZE, HIDDEN, MEMORY = 64, 128, 64
TINY_HIERA = HieraLayout(num_heads=1, global_attention_blocks=(3,), window_sizes=(4, 4, 4, 2))
ATOL = 1e-5
VIDEO_ATOL = 5e-3  # measured 1.8e-3: bf16 memories (see the video test)


def _meta_config(name: str):
    return OmegaConf.load(os.path.join(sam2.__path__[0], "configs", name))


def _tiny_sam2(predictor: bool = False) -> torch.nn.Module:
    """A ~2.6M-parameter SAM2.1 from the package's own classes and hiera_t config, every weight random."""
    cfg = _meta_config("sam2.1/sam2.1_hiera_t.yaml").model
    if predictor:
        cfg._target_ = "sam2.sam2_video_predictor.SAM2VideoPredictor"
    cfg.image_size = SIZE
    # as build_sam2 / build_sam2_video_predictor build it (and as transformers' config defaults to)
    cfg.sam_mask_decoder_extra_args = {
        "dynamic_multimask_via_stability": True,
        "dynamic_multimask_stability_delta": 0.05,
        "dynamic_multimask_stability_thresh": 0.98,
    }
    trunk = cfg.image_encoder.trunk
    trunk.embed_dim, trunk.stages = 16, [1, 1, 2, 1]
    trunk.global_att_blocks, trunk.window_spec = (
        list(TINY_HIERA.global_attention_blocks),
        list(TINY_HIERA.window_sizes),
    )
    trunk.window_pos_embed_bkg_spatial_size = [4, 4]
    neck = cfg.image_encoder.neck
    neck.d_model, neck.backbone_channel_list, neck.position_encoding.num_pos_feats = (
        HIDDEN,
        [128, 64, 32, 16],
        HIDDEN,
    )
    attention = cfg.memory_attention
    attention.d_model, attention.num_layers = HIDDEN, 1
    attention.layer.d_model, attention.layer.dim_feedforward = HIDDEN, 256
    for block in (attention.layer.self_attention, attention.layer.cross_attention):
        block.embedding_dim, block.feat_sizes = HIDDEN, [SIZE // 16] * 2
    attention.layer.cross_attention.kv_in_dim = MEMORY
    encoder = cfg.memory_encoder
    encoder.out_dim, encoder.in_dim, encoder.mask_downsampler.embed_dim = MEMORY, HIDDEN, HIDDEN
    encoder.fuser.layer.dim, encoder.fuser.num_layers = HIDDEN, 1
    torch.manual_seed(0)
    model = hydra_utils.instantiate(cfg, _recursive_=True).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(
                torch.randn_like(p) * 0.05
            )  # zero-initialised tables (memory, pointers) become non-trivial
    return model


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    model = _tiny_sam2()
    folder = tmp_path_factory.mktemp("sam2")
    torch.save({"model": model.state_dict()}, folder / "sam2.1_tiny.pt")
    out = convert_sam2(folder / "sam2.1_tiny.pt", folder / "hf", image_size=SIZE, hiera=TINY_HIERA)
    return model, out


def _reference_features(model, pixels):
    """Image embedding (with the no-memory embedding, as on a first frame) and high-resolution maps."""
    backbone = model.forward_image(pixels)
    _, feats, _, sizes = model._prepare_backbone_features(backbone)
    feats[-1] = feats[-1] + model.no_mem_embed
    maps = [f.permute(1, 2, 0).reshape(1, -1, *s) for f, s in zip(feats, sizes)]
    return maps[-1], maps[:-1]


def test_points_give_the_same_masks_scores_and_pointers(converted):
    """Points (and a box, as SAM2 encodes it: corner points labelled 2 and 3), single and multimask output,
    through the package's ``_forward_sam_heads`` (mask choice, object-score gating, object pointer)."""
    model, out = converted
    hf = Sam2VideoModel.from_pretrained(out).eval()
    pixels = torch.randn(1, 3, SIZE, SIZE)
    prompts = [
        (torch.tensor([[[12.0, 30.0], [44.0, 20.0]]]), torch.tensor([[1, 0]])),
        (torch.tensor([[[5.0, 8.0], [50.0, 41.0]]]), torch.tensor([[2, 3]])),
    ]
    with torch.no_grad():
        image_embed, high_res = _reference_features(model, pixels)
        for (points, labels), multimask in itertools.product(prompts, (True, False)):
            _, _, iou, low_res, high_res_masks, pointer, object_score = model._forward_sam_heads(
                backbone_features=image_embed,
                point_inputs={"point_coords": points, "point_labels": labels},
                high_res_features=high_res,
                multimask_output=multimask,
            )
            ours = hf._single_frame_forward(
                pixel_values=pixels,
                input_points=points[:, None],
                input_labels=labels[:, None],
                multimask_output=multimask,
            )
            for name, mine, reference in [
                ("low-res masks", ours.pred_masks, low_res),
                ("high-res masks", ours.high_res_masks, high_res_masks),
                ("IoU", ours.iou_scores, iou),
                ("object pointer", ours.object_pointer, pointer),
                ("object score", ours.object_score_logits, object_score),
            ]:
                torch.testing.assert_close(
                    mine.reshape(reference.shape), reference, atol=ATOL, rtol=0, msg=name
                )


def test_sparse_prompt_through_the_engine(converted):
    model, out = converted
    engine = Sam2MaskEngine.from_pretrained(str(out))
    pixels, prompt = torch.randn(1, 3, SIZE, SIZE), torch.randn(1, 2, HIDDEN)
    decoder = copy.deepcopy(model.sam_mask_decoder)
    decoder.dynamic_multimask_via_stability = False  # the engine always uses the single-mask token
    with torch.no_grad():
        image_embed, high_res = _reference_features(model, pixels)
        dense = model.sam_prompt_encoder.no_mask_embed.weight.reshape(1, -1, 1, 1).expand_as(image_embed)
        low_res, *_ = decoder(
            image_embeddings=image_embed,
            image_pe=model.sam_prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=prompt,
            dense_prompt_embeddings=dense,
            multimask_output=False,
            repeat_image=False,
            high_res_features=high_res,
        )
        reference = torch.nn.functional.interpolate(
            low_res, (SIZE, SIZE), mode="bilinear", align_corners=False
        )
        ours = engine.decode(engine.encode(pixels), prompt)
    torch.testing.assert_close(ours, reference[:, 0], atol=ATOL, rtol=0)


def test_video_propagation_matches_the_sam2_video_predictor(converted, tmp_path):
    """mora's engine (transformers' Sam2VideoModel) against the package's SAM2VideoPredictor on 4 frames.

    Two known differences of the implementations, not of the weights, are aligned first: transformers
    encodes the conditioning frame's memory from the sharp input mask, the package from its low-res mask
    upsampled (so the package's own memory encoder is run on the sharp mask); and both keep memories in
    bfloat16, so float32 rounding differences of 1e-7 flip bf16 roundings and reach ~2e-3 in the logits.
    """
    model, out = converted
    predictor = _tiny_sam2(predictor=True)
    predictor.load_state_dict(model.state_dict())
    predictor.binarize_mask_from_pts_for_mem_enc = True  # as build_sam2_video_predictor sets it
    rng = np.random.default_rng(0)
    base = rng.integers(0, 255, (SIZE, SIZE, 3), dtype=np.uint8)
    for i in range(4):  # a slowly drifting random texture
        Image.fromarray(np.roll(base, 3 * i, axis=1)).save(tmp_path / f"{i:05d}.jpg")
    engine = Sam2MaskEngine.from_pretrained(str(out))
    prompt = torch.randn(1, HIDDEN)
    with torch.no_grad():
        state = predictor.init_state(str(tmp_path))
        frames = state["images"]  # [T, 3, S, S] normalised exactly as the package does
        ours = engine.propagate(frames, prompt, key_frames=[0])
        mask = ours[0] > 0
        predictor.add_new_mask(state, frame_idx=0, obj_id=1, mask=mask.numpy())
        predictor.propagate_in_video_preflight(state)
        _, _, feats, _, sizes = predictor._get_image_feature(state, 0, 1)
        first = state["output_dict_per_obj"][0]["cond_frame_outputs"][0]
        memory, _ = predictor._encode_new_memory(
            current_vision_feats=feats,
            feat_sizes=sizes,
            pred_masks_high_res=(mask.float() * 20 - 10)[None, None],
            object_score_logits=first["object_score_logits"],
            is_mask_from_pts=True,
        )
        first["maskmem_features"] = memory.to(torch.bfloat16)
        reference = {i: masks[0, 0] for i, _, masks in predictor.propagate_in_video(state)}
    assert sorted(reference) == [0, 1, 2, 3]
    for i in (1, 2, 3):
        torch.testing.assert_close(ours[i], reference[i], atol=VIDEO_ATOL, rtol=0)


@pytest.mark.parametrize(
    ("name", "mora_config"),
    [
        ("sam2.1/sam2.1_hiera_t.yaml", sam2_1_hiera_tiny_config),
        ("sam2.1/sam2.1_hiera_s.yaml", None),
        ("sam2.1/sam2.1_hiera_b+.yaml", None),
        ("sam2.1/sam2.1_hiera_l.yaml", sam2_1_hiera_large_config),
        ("sam2/sam2_hiera_t.yaml", None),
    ],
)
def test_published_layouts_convert_key_for_key(name, mora_config):
    model = hydra_utils.instantiate(_meta_config(name).model, _recursive_=True)
    config, state = convert_sam2_state_dict(model.state_dict())
    assert config.enable_occlusion_spatial_embedding == name.startswith("sam2.1")
    assert config.enable_temporal_pos_encoding_for_object_pointers == name.startswith("sam2.1")
    with torch.device("meta"):
        expected = Sam2VideoModel(config).state_dict()
    assert {k: v.shape for k, v in state.items()} == {k: v.shape for k, v in expected.items()}
    if mora_config is not None:
        assert config.to_diff_dict() == mora_config().to_diff_dict()


def test_cli_converts_published_layouts_and_names_unknown_ones(converted, tmp_path, capsys):
    model, _ = converted
    torch.save({"model": model.state_dict()}, tmp_path / "tiny.pt")
    code = main(
        ["convert", "sam2", "--checkpoint", str(tmp_path / "tiny.pt"), "--out", str(tmp_path / "out")]
    )
    err = capsys.readouterr().err
    assert code == 2 and "tiny.pt" in err and "not a published SAM2 layout" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()
