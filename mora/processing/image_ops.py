"""Frame and mask geometry between input videos and the mask engine's square S x S canvas.

Two mappings are supported (``ResizeGeometry.mode``):

* ``"longest_pad"`` (SAM): resize so that the longest side is S, keep the aspect ratio, then pad
  bottom/right with zeros (after normalisation) up to S x S.
* ``"squash"`` (SAM2): resize both sides to S, ignoring the aspect ratio.

Frames are resized with antialiased bilinear interpolation, masks with nearest-neighbour
(pixel-centre, ``nearest-exact``), predicted logits back to the frame with bilinear. No torchvision.

Speed: frames and masks are resized while still 8-bit (torch's uint8 antialiased bilinear kernel,
which follows PIL's fixed-point ``Image.resize(BILINEAR)``), and only the S x S result is converted to
float, normalised and written into the canvas in one fused pass per channel; only the padding is
zero-filled. Resized frame values are therefore rounded to whole 0..255 levels (within 1 level of
float resampling; see ``tests/test_image_ops.py``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from transformers import PretrainedConfig
from transformers.utils.constants import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

RESIZE_MODES = ("longest_pad", "squash")
_FRAME_CHUNK = 8  # frames resized at a time, to bound the uint8 intermediate on long clips


@dataclass(frozen=True)
class FrameSettings:
    """How frames are fitted onto one model part's S x S input and normalised (0..1 RGB units)."""

    image_size: int  # S
    resize_mode: str  # one of RESIZE_MODES
    image_mean: tuple[float, float, float]
    image_std: tuple[float, float, float]


def mask_engine_frame_settings(engine_config: PretrainedConfig) -> FrameSettings:
    """The frame settings of the mask engine a ``Sam2VideoConfig`` / ``Sam2Config`` / ``SamConfig`` builds,
    read from the config alone (the engines in ``mora.model.mask_engines`` use the same values).

    SAM2 squashes frames to S x S (S = the prompt encoder's image size); SAM resizes the longest side to
    S = the vision encoder's image size and pads. Both normalise with the ImageNet mean and std.
    """
    if engine_config.model_type == "sam":
        size, mode = engine_config.vision_config.image_size, "longest_pad"
    elif engine_config.model_type in ("sam2", "sam2_video"):
        size, mode = engine_config.prompt_encoder_config.image_size, "squash"
    else:
        raise ValueError(
            f"no mask engine for model_type {engine_config.model_type!r} (sam2_video, sam2, sam)"
        )
    if not isinstance(size, int):
        height, width = size
        if height != width:
            raise ValueError(f"mask engines need a square input, got image_size {list(size)}")
        size = height
    return FrameSettings(
        image_size=int(size),
        resize_mode=mode,
        image_mean=tuple(float(v) for v in IMAGENET_DEFAULT_MEAN),
        image_std=tuple(float(v) for v in IMAGENET_DEFAULT_STD),
    )


@dataclass(frozen=True)
class ResizeGeometry:
    """How an (H, W) frame was mapped onto an S x S canvas."""

    orig_size: tuple[int, int]  # (H, W)
    resized_size: tuple[int, int]  # (h', w') before padding
    canvas: int  # S
    mode: str  # "longest_pad" | "squash"

    @classmethod
    def compute(cls, orig_size: tuple[int, int], canvas: int, mode: str) -> ResizeGeometry:
        """Geometry for frames of ``orig_size`` = (H, W) on an S = ``canvas`` square in ``mode``."""
        height, width = (int(v) for v in orig_size)
        if height <= 0 or width <= 0:
            raise ValueError(f"frame size must be positive, got (H, W) = {orig_size}")
        _check_canvas(canvas)
        _check_mode(mode)
        if mode == "squash":
            resized = (canvas, canvas)
        else:  # SAM's ResizeLongestSide.get_preprocess_shape
            scale = canvas / max(height, width)
            resized = (max(1, int(height * scale + 0.5)), max(1, int(width * scale + 0.5)))
        return cls(orig_size=(height, width), resized_size=resized, canvas=int(canvas), mode=mode)


def frames_to_tensor(
    frames: np.ndarray | Sequence[Image.Image],
    size: int,
    mode: str,
    mean: Sequence[float],
    std: Sequence[float],
) -> tuple[torch.Tensor, ResizeGeometry]:
    """Resize, normalise and (for ``longest_pad``) pad video frames for a mask engine.

    Args:
        frames: ``[T, H, W, 3]`` uint8 RGB array, or a list of T PIL images of one size.
        size: canvas side S.
        mode: ``"longest_pad"`` or ``"squash"``.
        mean, std: per-channel normalisation constants in 0..1 units (3 values each).

    Returns:
        pixel_values ``[T, 3, S, S]`` float32 (padding is 0 after normalisation) and the geometry.
    """
    array = _frames_as_array(frames)
    _check_mode(mode)
    _check_canvas(size)
    mean_t = _channel_constants(mean, "mean")
    std_t = _channel_constants(std, "std")
    if bool((std_t <= 0).any()):
        raise ValueError(f"std must be positive, got {tuple(std)}")
    num_frames, height, width, _ = array.shape
    geometry = ResizeGeometry.compute((height, width), size, mode)
    resized_h, resized_w = geometry.resized_size
    # (x / 255 - mean) / std == x * scale + shift, evaluated in one pass from uint8 into the canvas.
    scale = (1.0 / (255.0 * std_t)).flatten().tolist()
    shift = (-mean_t / std_t).flatten()
    out = torch.empty(num_frames, 3, size, size, dtype=torch.float32)
    _zero_padding(out, resized_h, resized_w)
    source = torch.from_numpy(array).permute(0, 3, 1, 2)  # [T, 3, H, W] uint8 view (channels-last)
    for start in range(0, num_frames, _FRAME_CHUNK):
        chunk = source[start : start + _FRAME_CHUNK]
        if (resized_h, resized_w) != (height, width):
            chunk = F.interpolate(
                chunk, size=(resized_h, resized_w), mode="bilinear", align_corners=False, antialias=True
            )  # uint8 [t, 3, h', w']
        stop = start + chunk.shape[0]
        for channel in range(3):
            torch.add(
                shift[channel],
                chunk[:, channel],
                alpha=scale[channel],
                out=out[start:stop, channel, :resized_h, :resized_w],
            )
    return out, geometry


def masks_to_canvas(masks: np.ndarray | torch.Tensor, geometry: ResizeGeometry) -> torch.Tensor:
    """Map boolean masks ``[T, H, W]`` onto the canvas with nearest-neighbour resizing.

    Returns ``[T, S, S]`` float32 in {0, 1}; the padded area (``longest_pad``) is 0.
    """
    tensor = torch.as_tensor(masks)
    if tensor.dtype != torch.bool:
        raise TypeError(f"masks must be boolean, got dtype {tensor.dtype}")
    if tensor.ndim != 3:
        raise ValueError(f"masks must be [T, H, W], got shape {tuple(tensor.shape)}")
    if tuple(tensor.shape[1:]) != tuple(geometry.orig_size):
        raise ValueError(
            f"masks are {tuple(tensor.shape[1:])} but the geometry was computed for frames of {geometry.orig_size}"
        )
    resized_h, resized_w = geometry.resized_size
    canvas = geometry.canvas
    values = tensor.view(torch.uint8)  # resize as bytes; float only at canvas size
    if (resized_h, resized_w) != geometry.orig_size:
        values = F.interpolate(values.unsqueeze(1), size=(resized_h, resized_w), mode="nearest-exact")
        values = values.squeeze(1)
    out = torch.empty(tensor.shape[0], canvas, canvas, dtype=torch.float32, device=tensor.device)
    _zero_padding(out, resized_h, resized_w)
    out[:, :resized_h, :resized_w].copy_(values)
    return out


def logits_to_frames(logits: torch.Tensor, geometry: ResizeGeometry) -> torch.Tensor:
    """Map mask logits from the canvas back to the input frames.

    Args:
        logits: ``[T, h, w]`` with h == w; canvas-resolution (S) or low-resolution (e.g. S/4) logits.

    Returns:
        ``[T, H, W]`` float logits (threshold at 0): upsampled to S, padding cropped, resized to (H, W),
        all bilinear, on the input's device.
    """
    if not torch.is_tensor(logits) or not logits.is_floating_point():
        raise TypeError("logits must be a floating-point torch.Tensor")
    if logits.ndim != 3 or logits.shape[1] != logits.shape[2]:
        raise ValueError(f"logits must be square [T, h, w], got shape {tuple(logits.shape)}")
    canvas = geometry.canvas
    resized_h, resized_w = geometry.resized_size
    values = logits.unsqueeze(1)  # [T, 1, h, w]
    low = values.shape[-1]
    if low != canvas:
        if canvas % low == 0:
            # Upsample only the rows/columns the crop keeps: same scale (low / canvas) and source
            # pixels as upsampling all of it, so the kept values are identical.
            factor = canvas // low
            rows = min(low, -(-resized_h // factor) + 1)
            cols = min(low, -(-resized_w // factor) + 1)
            values = F.interpolate(
                values[..., :rows, :cols], scale_factor=float(factor), mode="bilinear", align_corners=False
            )
        else:
            values = F.interpolate(values, size=(canvas, canvas), mode="bilinear", align_corners=False)
    values = values[..., :resized_h, :resized_w]  # [T, 1, h', w']
    if (resized_h, resized_w) != geometry.orig_size:
        values = F.interpolate(values, size=geometry.orig_size, mode="bilinear", align_corners=False)
    return values.squeeze(1)


def _frames_as_array(frames: np.ndarray | Sequence[Image.Image]) -> np.ndarray:
    """Validate frames and return a ``[T, H, W, 3]`` uint8 array."""
    if isinstance(frames, np.ndarray):
        if frames.dtype != np.uint8:
            raise TypeError(f"frames must be uint8, got dtype {frames.dtype}")
        if frames.ndim != 4 or frames.shape[-1] != 3:
            raise ValueError(f"frames must be [T, H, W, 3] RGB, got shape {frames.shape}")
        if frames.shape[0] == 0 or frames.shape[1] == 0 or frames.shape[2] == 0:
            raise ValueError(f"frames must be non-empty, got shape {frames.shape}")
        return np.ascontiguousarray(frames)
    if isinstance(frames, (list, tuple)):
        if not frames:
            raise ValueError("frames must contain at least one image")
        for index, image in enumerate(frames):
            if not isinstance(image, Image.Image):
                raise TypeError(f"frames[{index}] is {type(image).__name__}, expected a PIL image")
        sizes = {image.size for image in frames}
        if len(sizes) != 1:
            raise ValueError(f"all frames must have the same size, got (W, H) sizes {sorted(sizes)}")
        return np.stack([np.asarray(image.convert("RGB"), dtype=np.uint8) for image in frames])
    raise TypeError(
        f"frames must be a [T, H, W, 3] uint8 numpy array or a list of PIL images, got {type(frames)}"
    )


def _zero_padding(canvas: torch.Tensor, height: int, width: int) -> None:
    """Zero the part of ``[..., S, S]`` outside the top-left ``height`` x ``width`` content."""
    canvas[..., height:, :].zero_()
    canvas[..., :height, width:].zero_()


def _channel_constants(values: Sequence[float], name: str) -> torch.Tensor:
    tensor = torch.as_tensor(values, dtype=torch.float32).flatten()
    if tensor.numel() != 3:
        raise ValueError(f"{name} must have 3 values (RGB, 0..1 units), got {values}")
    return tensor.view(1, 3, 1, 1)


def _check_mode(mode: str) -> None:
    if mode not in RESIZE_MODES:
        raise ValueError(f"unknown resize mode {mode!r}; expected one of {RESIZE_MODES}")


def _check_canvas(canvas: int) -> None:
    if isinstance(canvas, bool) or not isinstance(canvas, (int, np.integer)) or canvas <= 0:
        raise ValueError(f"canvas size must be a positive int, got {canvas!r}")
