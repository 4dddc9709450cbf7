import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from mora.processing.image_ops import (
    RESIZE_MODES,
    ResizeGeometry,
    frames_to_tensor,
    logits_to_frames,
    masks_to_canvas,
)

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


def _blob_masks(num_frames, height, width):
    """An ellipse plus a rectangle that moves one pixel per frame."""
    yy, xx = np.mgrid[:height, :width]
    masks = []
    for t in range(num_frames):
        ellipse = ((yy - 0.4 * height) / (0.25 * height)) ** 2 + (
            (xx - 0.55 * width - t) / (0.3 * width)
        ) ** 2 < 1
        box = (yy > 0.7 * height) & (xx > 2 + t) & (xx < 0.3 * width + t)
        masks.append(ellipse | box)
    return np.stack(masks)


def _round_trip(masks, geometry):
    canvas = masks_to_canvas(masks, geometry)
    logits = (canvas * 2 - 1) * 10  # confident logits on the canvas
    return (logits_to_frames(logits, geometry) > 0).numpy()


def test_geometry_longest_pad_matches_sam_preprocess_shape():
    geometry = ResizeGeometry.compute((480, 640), 1024, "longest_pad")
    assert geometry.resized_size == (768, 1024)
    assert ResizeGeometry.compute((37, 23), 64, "longest_pad").resized_size == (64, 40)
    assert ResizeGeometry.compute((23, 37), 64, "longest_pad").resized_size == (40, 64)
    assert ResizeGeometry.compute((37, 23), 64, "squash").resized_size == (64, 64)


@pytest.mark.parametrize(
    ("size", "canvas", "mode"),
    [((0, 10), 64, "squash"), ((10, 10), 0, "squash"), ((10, 10), 64, "crop"), ((10, 10), 64.0, "squash")],
)
def test_geometry_rejects_bad_arguments(size, canvas, mode):
    with pytest.raises(ValueError):
        ResizeGeometry.compute(size, canvas, mode)


@pytest.mark.parametrize("mode", RESIZE_MODES)
def test_frames_to_tensor_shapes_normalisation_and_padding(mode):
    frames = np.full((3, 30, 50, 3), 200, dtype=np.uint8)
    pixels, geometry = frames_to_tensor(frames, 64, mode, MEAN, STD)
    assert pixels.shape == (3, 3, 64, 64) and pixels.dtype == torch.float32
    h, w = geometry.resized_size
    expected = (200 / 255 - torch.tensor(MEAN)) / torch.tensor(STD)
    content = pixels[:, :, :h, :w]
    assert torch.allclose(content, expected.view(1, 3, 1, 1).expand_as(content), atol=1e-5)
    if mode == "longest_pad":
        assert (h, w) == (38, 64)
        assert torch.count_nonzero(pixels[:, :, h:, :]) == 0
    else:
        assert (h, w) == (64, 64)


def test_frames_to_tensor_pil_equals_numpy_and_downscale_is_antialiased():
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, size=(2, 97, 131, 3), dtype=np.uint8)
    from_array, geometry = frames_to_tensor(frames, 64, "longest_pad", MEAN, STD)
    from_pil, geometry_pil = frames_to_tensor(
        [Image.fromarray(f) for f in frames], 64, "longest_pad", MEAN, STD
    )
    assert geometry == geometry_pil
    assert torch.equal(from_array, from_pil)
    # Antialiasing averages the noise: the resized content varies much less than the input does.
    h, w = geometry.resized_size
    raw = (torch.from_numpy(frames).float() / 255).std()
    resized = (from_array[:, :, :h, :w] * torch.tensor(STD).view(1, 3, 1, 1)).std()
    assert resized < 0.5 * raw  # plain bilinear keeps about 0.67 of it here


@pytest.mark.parametrize(
    ("frames", "error"),
    [
        (np.zeros((2, 8, 8, 3), dtype=np.float32), TypeError),
        (np.zeros((2, 8, 8), dtype=np.uint8), ValueError),
        (np.zeros((2, 8, 8, 4), dtype=np.uint8), ValueError),
        (np.zeros((0, 8, 8, 3), dtype=np.uint8), ValueError),
        ([], ValueError),
        ([Image.new("RGB", (8, 8)), Image.new("RGB", (9, 8))], ValueError),
        ([np.zeros((8, 8, 3), dtype=np.uint8)], TypeError),
        ("frames.mp4", TypeError),
    ],
)
def test_frames_to_tensor_rejects_bad_frames(frames, error):
    with pytest.raises(error):
        frames_to_tensor(frames, 64, "squash", MEAN, STD)


def test_frames_to_tensor_rejects_bad_constants():
    frames = np.zeros((1, 8, 8, 3), dtype=np.uint8)
    with pytest.raises(ValueError, match="mean"):
        frames_to_tensor(frames, 64, "squash", (0.5, 0.5), STD)
    with pytest.raises(ValueError, match="std"):
        frames_to_tensor(frames, 64, "squash", MEAN, (0.2, 0.0, 0.2))
    with pytest.raises(ValueError, match="mode"):
        frames_to_tensor(frames, 64, "pad", MEAN, STD)


@pytest.mark.parametrize("mode", RESIZE_MODES)
@pytest.mark.parametrize("size", [(31, 23), (23, 31), (29, 17), (21, 21)])
def test_round_trip_is_exact_for_any_mask_when_upscaled_at_least_twice(mode, size):
    # Every canvas pixel that bilinear sampling touches for a frame pixel was copied from that pixel.
    geometry = ResizeGeometry.compute(size, 64, mode)
    assert all(r >= 2 * o for r, o in zip(geometry.resized_size, size))
    noise = np.random.default_rng(1).random((3, *size)) > 0.5
    np.testing.assert_array_equal(_round_trip(noise, geometry), noise)


@pytest.mark.parametrize("mode", RESIZE_MODES)
def test_round_trip_is_exact_without_resampling(mode):
    size = (64, 41) if mode == "longest_pad" else (64, 64)
    geometry = ResizeGeometry.compute(size, 64, mode)
    assert geometry.resized_size == size
    noise = np.random.default_rng(2).random((2, *size)) > 0.5
    np.testing.assert_array_equal(_round_trip(noise, geometry), noise)


@pytest.mark.parametrize("mode", RESIZE_MODES)
@pytest.mark.parametrize("size", [(45, 61), (101, 77), (130, 97)])
def test_round_trip_errors_stay_on_the_boundary_when_resampled(mode, size):
    masks = _blob_masks(2, *size)
    geometry = ResizeGeometry.compute(size, 64, mode)
    back = _round_trip(masks, geometry)
    inter = (back & masks).sum()
    assert inter / (back | masks).sum() > 0.9
    # Every wrong pixel lies within one canvas pixel (in frame units) of the true mask boundary.
    reach = int(np.ceil(max(o / r for o, r in zip(size, geometry.resized_size)))) + 1
    padded = np.pad(masks, ((0, 0), (reach, reach), (reach, reach)), mode="edge")
    near_boundary = np.zeros_like(masks)
    for dy in range(-reach, reach + 1):
        for dx in range(-reach, reach + 1):
            shifted = padded[:, reach + dy : reach + dy + size[0], reach + dx : reach + dx + size[1]]
            near_boundary |= shifted != masks
    assert not (back != masks)[~near_boundary].any()


def test_masks_to_canvas_pads_with_background_and_validates():
    masks = np.ones((2, 20, 40), dtype=bool)
    geometry = ResizeGeometry.compute((20, 40), 64, "longest_pad")
    canvas = masks_to_canvas(masks, geometry)
    assert canvas.shape == (2, 64, 64) and canvas.dtype == torch.float32
    assert canvas[:, :32, :].eq(1).all() and canvas[:, 32:, :].eq(0).all()
    with pytest.raises(TypeError, match="boolean"):
        masks_to_canvas(masks.astype(np.uint8), geometry)
    with pytest.raises(ValueError, match="geometry"):
        masks_to_canvas(np.ones((2, 21, 40), dtype=bool), geometry)
    with pytest.raises(ValueError, match=r"\[T, H, W\]"):
        masks_to_canvas(np.ones((20, 40), dtype=bool), geometry)


def test_logits_to_frames_accepts_low_resolution_logits_and_validates():
    size = (31, 23)
    geometry = ResizeGeometry.compute(size, 64, "longest_pad")
    masks = _blob_masks(2, *size)
    canvas_logits = (masks_to_canvas(masks, geometry) * 2 - 1) * 10
    low_res = torch.nn.functional.avg_pool2d(canvas_logits.unsqueeze(1), 4).squeeze(1)  # [T, S/4, S/4]
    frames = logits_to_frames(low_res, geometry)
    assert frames.shape == (2, *size) and frames.dtype == torch.float32
    inter = ((frames > 0).numpy() & masks).sum()
    assert inter / ((frames > 0).numpy() | masks).sum() > 0.8
    with pytest.raises(ValueError, match="square"):
        logits_to_frames(torch.zeros(2, 16, 8), geometry)
    with pytest.raises(TypeError):
        logits_to_frames(torch.zeros(2, 16, 16, dtype=torch.long), geometry)


# ---------------------------------------------------------------- fast paths against plain references
def _smooth_frames(num_frames, height, width, seed):
    """Natural-image-like frames: smooth gradients plus mild noise and a hard edge."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:height, :width].astype(np.float32)
    frames = []
    for t in range(num_frames):
        base = np.stack(
            [
                128 + 100 * np.sin(xx / (7 + t) + yy / 11),
                255 * xx / width,
                np.where(yy > 0.6 * height, 220.0, 30.0),
            ],
            -1,
        )
        frames.append(np.clip(base + rng.normal(0, 12, base.shape), 0, 255))
    return np.stack(frames).astype(np.uint8)


def _to_unit_range(pixels, geometry):
    """Undo the normalisation of the content area: ``[T, 3, h', w']`` in 0..1 units."""
    h, w = geometry.resized_size
    mean, std = torch.tensor(MEAN).view(1, 3, 1, 1), torch.tensor(STD).view(1, 3, 1, 1)
    return pixels[:, :, :h, :w] * std + mean


@pytest.mark.parametrize("mode", RESIZE_MODES)
@pytest.mark.parametrize(
    ("size", "canvas"),
    [((180, 320), 64), ((180, 320), 256), ((320, 180), 100), ((45, 80), 128), ((97, 131), 200)],
)
@pytest.mark.parametrize("kind", ["smooth", "noise"])
def test_frames_to_tensor_matches_pil_bilinear_reference(mode, size, canvas, kind):
    # Tolerance (0..1 units): every value within 2/255 of PIL's antialiased bilinear resize
    # (both round to 8 bits), and on average within 0.25/255.
    if kind == "smooth":
        frames = _smooth_frames(2, *size, seed=3)
    else:
        frames = np.random.default_rng(4).integers(0, 256, size=(2, *size, 3), dtype=np.uint8)
    pixels, geometry = frames_to_tensor(frames, canvas, mode, MEAN, STD)
    h, w = geometry.resized_size
    reference = np.stack([np.asarray(Image.fromarray(f).resize((w, h), Image.BILINEAR)) for f in frames])
    reference = torch.from_numpy(reference).permute(0, 3, 1, 2).float() / 255
    error = (_to_unit_range(pixels, geometry) - reference).abs()
    assert error.max() <= 2 / 255 + 1e-5
    assert error.mean() <= 0.25 / 255


@pytest.mark.parametrize("mode", RESIZE_MODES)
@pytest.mark.parametrize(("size", "canvas"), [((180, 320), 64), ((180, 320), 256), ((45, 80), 128)])
def test_frames_to_tensor_matches_float_antialiased_reference(mode, size, canvas):
    # The former float pipeline (uint8 -> float -> antialiased bilinear): the 8-bit resize differs by
    # its rounding only: at most 1/255 (+ float slack) in 0..1 units, on average ~0.3/255.
    frames = _smooth_frames(2, *size, seed=5)
    pixels, geometry = frames_to_tensor(frames, canvas, mode, MEAN, STD)
    h, w = geometry.resized_size
    reference = torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255
    reference = F.interpolate(reference, size=(h, w), mode="bilinear", align_corners=False, antialias=True)
    error = (_to_unit_range(pixels, geometry) - reference).abs()
    assert error.max() <= 1 / 255 + 1e-4
    assert error.mean() <= 0.35 / 255
    if mode == "longest_pad":
        assert torch.count_nonzero(pixels[:, :, h:, :]) == 0
        assert torch.count_nonzero(pixels[:, :, :, w:]) == 0


@pytest.mark.parametrize("mode", RESIZE_MODES)
@pytest.mark.parametrize("size", [(45, 61), (61, 45), (130, 97), (64, 41)])
def test_masks_to_canvas_equals_float_reference(mode, size):
    masks = _blob_masks(2, *size)
    geometry = ResizeGeometry.compute(size, 64, mode)
    h, w = geometry.resized_size
    reference = torch.from_numpy(masks).float().unsqueeze(1)
    if (h, w) != size:
        reference = F.interpolate(reference, size=(h, w), mode="nearest-exact")
    reference = F.pad(reference, (0, 64 - w, 0, 64 - h)).squeeze(1)
    assert torch.equal(masks_to_canvas(masks, geometry), reference)


@pytest.mark.parametrize("mode", RESIZE_MODES)
@pytest.mark.parametrize(("size", "low"), [((45, 61), 16), ((61, 45), 16), ((97, 130), 32), ((40, 40), 24)])
def test_logits_to_frames_equals_upsample_crop_resize_reference(mode, size, low):
    geometry = ResizeGeometry.compute(size, 64, mode)
    h, w = geometry.resized_size
    logits = torch.randn(2, low, low, generator=torch.Generator().manual_seed(6))
    reference = F.interpolate(logits.unsqueeze(1), size=(64, 64), mode="bilinear", align_corners=False)
    reference = reference[..., :h, :w]
    if (h, w) != size:
        reference = F.interpolate(reference, size=size, mode="bilinear", align_corners=False)
    assert torch.equal(logits_to_frames(logits, geometry), reference.squeeze(1))
