"""`VideoAdapter`: space-time attention over every frame's patch grid, between vision tower and language model.

A vision tower sees one frame at a time; which object moves, where to and after whom is only visible across
frames. The adapter mixes the grid features of all frames of a clip with factorised attention, as MoRA's
own adapters do across patches and frames: each block attends among the cells of one frame (space), then
among the frames of one cell (time), then applies an MLP. Cells carry a 2-D sinusoidal position and frames
a sinusoidal time code of their place in the clip (0 = first sampled frame, 1 = last), so a clip sampled
with 16 frames for training and 20 for evaluation spans the same time codes.

The output has the input's width and is added to it through a zero-initialised projection: with pretrained
backbones the adapter starts as the identity, and everything downstream (projector, motion tokens, mask
prompts, temporal head) reads the mixed grid unchanged in shape.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def sinusoid(positions: torch.Tensor, dim: int) -> torch.Tensor:
    """``[..., dim]`` sine/cosine codes of real ``positions [...]`` (frequencies 1 .. 1/1000, dim even)."""
    half = dim // 2
    freqs = torch.exp(-math.log(1000.0) * torch.arange(half, device=positions.device) / max(1, half - 1))
    angles = positions.unsqueeze(-1).float() * freqs * math.pi * 8  # 8 half-turns across [0, 1] at most
    return torch.cat([angles.sin(), angles.cos()], dim=-1)


def neighbour_differences(
    x: torch.Tensor, frames: list[int] | torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Differences of each frame to the previous and next frame of its clip, along dim 1 of ``x [V, T, ...]``.

    Args:
        x: ``[V, T, ...]`` clips.
        frames: the T' frames to return (default: all T); their neighbours may lie outside the selection.

    Returns:
        ``x_t - x_{t-1}`` and ``x_{t+1} - x_t``, each ``[V, T', ...]``, zero where the clip has no such frame.
    """
    T = x.shape[1]
    at = torch.arange(T) if frames is None else torch.as_tensor(frames, dtype=torch.long)
    current = x[:, at]
    return current - x[:, (at - 1).clamp(min=0)], x[:, (at + 1).clamp(max=T - 1)] - current


def _blur_matrix(n: int, sigma: float, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """``[n, n]`` matrix of a 1-D Gaussian blur with replicate padding: ``M @ v`` blurs ``v [n]``."""
    radius = max(1, int(round(2 * sigma)))
    taps = torch.arange(-radius, radius + 1, device=device, dtype=torch.float64)
    kernel = torch.exp(-0.5 * (taps / sigma) ** 2)
    kernel = kernel / kernel.sum()
    rows = torch.arange(n, device=device)[:, None].expand(n, taps.numel())
    cols = (rows + taps.long()[None, :]).clamp(0, n - 1)  # replicate padding: taps past an edge read the edge
    matrix = torch.zeros(n, n, device=device, dtype=torch.float64)
    matrix.index_put_((rows, cols), kernel.expand(n, -1), accumulate=True)
    return matrix.to(dtype)


def _blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of ``x [N, c, H, W]`` (replicate padding), as two small matrix products (on
    CPU about 3x faster than the same blur as depthwise convolutions; the test checks they are equal)."""
    H, W = x.shape[-2:]
    rows = _blur_matrix(H, sigma, x.device, x.dtype)
    cols = _blur_matrix(W, sigma, x.device, x.dtype)
    return rows @ x @ cols.T


def normal_flow(pixel_values: torch.Tensor, grid: tuple[int, int], sigma: float = 2.0) -> torch.Tensor:
    """Per-cell motion estimates of clips from brightness constancy (Lucas-Kanade's normal equations).

    For a frame pair (a, b) the displacement v of a cell satisfies ``I_b - I_a ~ -v . grad I``, so
    ``m = -sum(I_t grad I) / sum(|grad I|^2)`` over the cell's pixels (and colour channels) points along v
    (the structure tensor is positive semi-definite) and has its scale in pixels. Frames are blurred first
    so that displacements of a few pixels stay within the linear range.

    Args:
        pixel_values: ``[V, T, c, H, W]`` frames of V clips.
        grid: (h, w) cells per frame.

    Returns:
        ``[V, T, h, w, 4]``: (dx, dy) from the previous frame to this one, then from this one to the next
        (pixels, clamped to +-8; zero where the clip has no such frame).
    """
    V, T, c, H, W = pixel_values.shape
    x = _blur(pixel_values.float().flatten(0, 1), sigma).view(V, T, c, H, W)
    between = _flow_between(x[:, :-1].flatten(0, 1), x[:, 1:].flatten(0, 1), grid)
    between = between.view(V, T - 1, *grid, 2)  # pair (t, t+1)
    zero = between.new_zeros(V, 1, *grid, 2)
    return torch.cat([torch.cat([zero, between], 1), torch.cat([between, zero], 1)], dim=-1)


def motion_time_scale(num_frames: int, reference_frames: int | None) -> float:
    """Factor that puts motion between neighbouring frames of a clip sampled at ``num_frames`` frames on the time
    scale of ``reference_frames`` frames spread over the same clip: ``(T - 1) / (R - 1)`` (1 when
    ``reference_frames`` is None or the clip has a single frame).

    Brightness-constancy estimates (`normal_flow`) are displacements between neighbouring *sampled* frames, so the
    same object reads slower on GroundMoRe's 20 evaluation frames than on 12-frame training clips; rescaled, a
    model reads the same speeds at training and evaluation (as `MoRAForVideoGrounding.motion_stride` does for
    motion tokens).
    """
    if reference_frames is None or num_frames < 2:
        return 1.0
    return (num_frames - 1) / (reference_frames - 1)


MOTION_STILL_EPS = (
    0.05  # cell motion (normal_flow / 4) below which a cell reads as still; moving cells: 0.15-0.8
)


def motion_direction(motion: torch.Tensor, eps: float = MOTION_STILL_EPS) -> torch.Tensor:
    """``[..., 4]`` each (dx, dy) pair of cell motions ``motion [..., 4]`` as a direction, ``m / sqrt(|m|^2 + eps^2)``:
    about unit length wherever the cell moves, whatever its speed, and about zero where it stands still."""
    pairs = motion.unflatten(-1, (2, 2))
    return (pairs / (pairs.square().sum(-1, keepdim=True) + eps**2).sqrt()).flatten(-2)


def triple_flow(frames: torch.Tensor, grid: tuple[int, int], sigma: float = 2.0) -> torch.Tensor:
    """`normal_flow` of frames given with their neighbours: ``frames [N, 3, c, H, W]`` (previous, this, next;
    a neighbour equal to the frame where there is none) -> ``[N, h, w, 4]``, equal to `normal_flow` of the
    clip at that frame."""
    N, _, c, H, W = frames.shape
    x = _blur(frames.float().flatten(0, 1), sigma).view(N, 3, c, H, W)
    back = _flow_between(x[:, 0], x[:, 1], grid)
    forward = _flow_between(x[:, 1], x[:, 2], grid)
    return torch.cat([back, forward], dim=-1)


def _flow_between(a: torch.Tensor, b: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """``[N, h, w, 2]`` (dx, dy) per cell from blurred frames ``a`` to ``b`` ``[N, c, H, W]`` (zero where a == b)."""
    mean = 0.5 * (a + b)
    gx = torch.zeros_like(mean)
    gy = torch.zeros_like(mean)
    gx[..., 1:-1] = 0.5 * (mean[..., 2:] - mean[..., :-2])
    gy[..., 1:-1, :] = 0.5 * (mean[..., 2:, :] - mean[..., :-2, :])
    it = b - a
    terms = torch.stack([-(it * gx).sum(1), -(it * gy).sum(1), (gx * gx + gy * gy).sum(1)], dim=1)
    pooled = F.adaptive_avg_pool2d(terms, grid)  # [N, 3, h, w]
    flow = (pooled[:, :2] / (pooled[:, 2:] + 1e-4)).clamp(-8, 8)  # [N, 2, h, w]
    return flow.permute(0, 2, 3, 1)


def grid_positions(h: int, w: int, dim: int, device: torch.device) -> torch.Tensor:
    """``[h * w, dim]`` codes of the cells of an ``h x w`` grid: half for the row, half for the column."""
    rows = torch.arange(h, device=device).float() / max(1, h - 1)
    cols = torch.arange(w, device=device).float() / max(1, w - 1)
    row_code = sinusoid(rows, dim // 2)[:, None, :].expand(h, w, dim // 2)
    col_code = sinusoid(cols, dim // 2)[None, :, :].expand(h, w, dim // 2)
    return torch.cat([row_code, col_code], dim=-1).reshape(h * w, dim)


class SpaceTimeBlock(nn.Module):
    """Pre-norm block: attention over the cells of a frame, over the frames of a cell, then an MLP."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.norm_space = nn.LayerNorm(dim)
        self.space = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.norm_time = nn.LayerNorm(dim)
        self.time = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.norm_mlp = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x [B, T, n, a]`` -> ``[B, T, n, a]`` (n = cells per frame)."""
        B, T, n, a = x.shape
        s = x.reshape(B * T, n, a)
        y = self.norm_space(s)
        s = s + self.space(y, y, y, need_weights=False)[0]
        t = s.view(B, T, n, a).transpose(1, 2).reshape(B * n, T, a)
        y = self.norm_time(t)
        t = t + self.time(y, y, y, need_weights=False)[0]
        x = t.view(B, n, T, a).transpose(1, 2)
        return x + self.mlp(self.norm_mlp(x))


class VideoAdapter(nn.Module):
    """Residual space-time mixing of per-frame grid features.

    Args:
        in_dim: d, channels of the vision grid.
        dim: a, the width the blocks run at.
        layers: number of `SpaceTimeBlock` s.
        heads: attention heads (must divide ``dim``).
        differences: each cell's input also holds its differences to the previous and next frame
            (``g_t - g_{t-1}``, ``g_{t+1} - g_t``; zero at the clip's ends): what arrived in and left the cell.
        flow: each cell's input also holds its motion estimate (`normal_flow` / 4).
        flow_embedding: that estimate, linearly embedded, is added to the output grid.
        reference_frames: the estimate is put on the time scale of this many frames over the clip
            (`motion_time_scale`); None = per pair of neighbouring sampled frames.
        direction: the estimate is read as each cell's direction of motion (`motion_direction`), not its
            displacement.
    """

    def __init__(
        self,
        in_dim: int,
        dim: int,
        layers: int,
        heads: int,
        differences: bool = False,
        flow: bool = False,
        flow_embedding: bool = False,
        reference_frames: int | None = None,
        direction: bool = False,
    ) -> None:
        super().__init__()
        if layers < 1:
            raise ValueError(f"VideoAdapter needs at least one layer, got {layers}")
        if dim % heads or dim % 4:
            raise ValueError(f"video adapter width {dim} must be divisible by 4 and by its {heads} heads")
        self.dim = dim
        self.differences = differences
        self.flow = flow
        self.reference_frames = reference_frames  # `motion_time_scale` of the motion estimate
        if direction and not (flow or flow_embedding):
            raise ValueError(
                "VideoAdapter(direction=True) reads the cells' motion: it needs flow or flow_embedding"
            )
        self.direction = direction
        self.inp = nn.Linear((3 * in_dim if differences else in_dim) + (4 if flow else 0), dim)
        self.blocks = nn.ModuleList(SpaceTimeBlock(dim, heads) for _ in range(layers))
        self.norm = nn.LayerNorm(dim)
        self.out = nn.Linear(dim, in_dim)
        # the motion estimate embedded straight into the output grid (not zero-initialised): the direction
        # of motion is linearly readable by everything downstream from the first step
        self.flow_embed = nn.Linear(4, in_dim) if flow_embedding else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Zero output projection: the adapter starts as the identity map of its input."""
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, grid: torch.Tensor, pixel_values: torch.Tensor | None = None) -> torch.Tensor:
        """``grid [B, T, h, w, d]`` (with ``flow``, the clips ``pixel_values [B, T, c, H, W]``) -> the mixed
        grid ``[B, T, h, w, d]``."""
        B, T, h, w, d = grid.shape
        dtype = self.inp.weight.dtype
        inputs = grid.to(dtype)
        if self.differences:
            inputs = torch.cat([inputs, *neighbour_differences(inputs)], dim=-1)  # [B, T, h, w, 3d]
        flow = None
        if self.flow or self.flow_embed is not None:
            if pixel_values is None:
                raise ValueError("this VideoAdapter reads per-cell motion; pass pixel_values [B, T, c, H, W]")
            scale = motion_time_scale(T, self.reference_frames) / 4
            flow = normal_flow(pixel_values, (h, w)) * scale  # [B, T, h, w, 4]
            flow = (motion_direction(flow) if self.direction else flow).to(dtype)
        if self.flow:
            inputs = torch.cat([inputs, flow], dim=-1)
        x = self.inp(inputs).reshape(B, T, h * w, self.dim)  # [B, T, n, a]
        times = torch.arange(T, device=grid.device).float() / max(1, T - 1)
        x = x + grid_positions(h, w, self.dim, grid.device).to(dtype)  # cells
        x = x + sinusoid(times, self.dim).to(dtype)[None, :, None, :]  # frames
        for block in self.blocks:
            x = block(x)
        delta = self.out(self.norm(x)).view(B, T, h, w, d)
        if self.flow_embed is not None:
            delta = delta + self.flow_embed(flow)
        return grid + delta.to(grid.dtype)
