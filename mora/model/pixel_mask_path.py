"""`PixelMaskPath`: a high-resolution mask path beside the mask engine's decoder.

A SAM-family decoder upsamples its image-embedding grid (S/16 for real SAM, 8x8 for the tiny engine) to
masks, and its output token lives in a small space (C/8 channels). Where objects are a few grid cells
large, separating neighbours needs per-pixel evidence. This path embeds every pixel of every frame at the
engine's full input resolution S, as the sum of a per-pixel MLP of the frame's pixels (3x3 conv, GELU, 1x1
conv) and the (adapted) vision grid projected and upsampled, and adds to the engine's logits the dot product
of those embeddings with a query read from the ``[SEG]`` state (after the grounding reader):

    logits_{b,t} = engine_{b,t} + < q_b , P_{v(b),t} > + up(< q_b , G_{v(b),t} >),     q_b = Q s_b

with P ``[e, S, S]`` the pixel MLP and G ``[e, h, w]`` the projected grid. Bilinear upsampling is linear, so
the grid term is the dot product with the upsampled grid embedding, computed at grid resolution (one
channel is upsampled per question instead of e per frame).

The query comes from the language-model-width ``[SEG]`` state, not from the engine's prompt: measured on the
tiny default (train/README.md), a query behind the SAM prompt projector and a pixel embedding mixed through a
nonlinearity with the engine's embedding never learned to single out the answer object (Dice stuck at 0.5,
the masks covering every moving object), while this form did. Pixel embeddings are computed once per video
frame and read by all of its questions.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mora.model.packing import slots_by_video
from mora.model.video_adapter import motion_direction, neighbour_differences, triple_flow


def cell_motion(inputs: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """``[V, T, h, w, 4]`` each cell's (dx, dy) from the previous frame and to the next one (`triple_flow`,
    in units of 4 pixels) of path inputs ``[V, T, 9, S, S]`` (frames and their differences, `PixelMaskPath.inputs`)."""
    V, T = inputs.shape[:2]
    frame = inputs[:, :, :3]
    trio = torch.stack([frame - inputs[:, :, 3:6], frame, frame + inputs[:, :, 6:9]], dim=2)
    return (triple_flow(trio.flatten(0, 1), grid) / 4).view(V, T, *grid, 4)


class PixelMaskPath(nn.Module):
    """Per-pixel embeddings of frames and their dot product with ``[SEG]`` queries.

    Args:
        query_dim: D, width of the ``[SEG]`` states the queries are read from.
        grid_dim: d, channels of the vision grid (0: no grid input).
        dim: e, width of the pixel embeddings.
        differences: the pixel MLP also reads each frame's differences to the previous and next frame
            (9 input channels instead of 3; `inputs`).
        grid_flow: the grid term also reads each cell's motion (``grid_motion`` of `forward`), embedded beside
            its features.
        grid_direction: it reads each cell's direction of motion (`motion_direction`) instead of its displacement.
        motion_direction: the motion match (``motion_match``) reads each cell's direction of motion, not its
            displacement.
    """

    def __init__(
        self,
        query_dim: int,
        grid_dim: int,
        dim: int,
        differences: bool = False,
        stem: int = 0,
        motion_match: int = 0,
        grid_flow: bool = False,
        grid_direction: bool = False,
        motion_direction: bool = False,
    ) -> None:
        super().__init__()
        if grid_flow and not grid_dim:
            raise ValueError("PixelMaskPath(grid_flow=True) needs a grid input (grid_dim > 0)")
        if grid_direction and not grid_flow:
            raise ValueError(
                "PixelMaskPath(grid_direction=True) reads the cells' motion: it needs grid_flow=True"
            )
        if motion_direction and not motion_match:
            raise ValueError(
                "PixelMaskPath(motion_direction=True) normalises the motion match: it needs motion_match > 0"
            )
        self.grid_direction = grid_direction
        self.motion_direction = motion_direction
        self.dim = dim
        self.differences = differences
        channels = 9 if differences else 3
        self.input_channels = 9 if (differences or stem or motion_match) else 3
        self.pixels = nn.Sequential(nn.Conv2d(channels, dim, 3, padding=1), nn.GELU(), nn.Conv2d(dim, dim, 1))
        self.stem = (
            nn.Sequential(
                nn.Conv2d(9, stem, 3, 2, 1),
                nn.GELU(),
                nn.Conv2d(stem, stem, 3, 2, 1),
                nn.GELU(),
                nn.Conv2d(stem, dim, 1),
            )
            if stem
            else None
        )
        self.grid = nn.Linear(grid_dim, dim) if grid_dim else None
        # each grid cell's motion (dx, dy) to the previous and next frame, embedded beside its features
        self.grid_flow = nn.Linear(4, dim) if grid_flow else None
        self.query = nn.Linear(query_dim, dim)
        # the motion each question asks for, (dx, dy) to the previous and next frame, matched against the
        # brightness-constancy motion of each cell of a motion_match x motion_match grid
        self.motion_grid = motion_match
        self.motion_match = nn.Linear(query_dim, 4) if motion_match else None

    def inputs(self, pixel_values: torch.Tensor, frames: list[int] | None = None) -> torch.Tensor:
        """``[V, T', c, S, S]`` inputs of the pixel MLP for ``frames`` (default: all T) of clips
        ``pixel_values [V, T, 3, S, S]``: the frames (c = 3), with ``differences`` also ``x_t - x_{t-1}`` and
        ``x_{t+1} - x_t`` (c = 9; zero where the clip has no such frame), so a window of frames keeps the
        differences to its neighbours outside the window."""
        current = pixel_values if frames is None else pixel_values[:, frames]
        if self.input_channels == 3:
            return current
        return torch.cat([current, *neighbour_differences(pixel_values, frames)], dim=2)

    def _hidden_pixels(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """``[BT, S, S, e]`` the pixel MLP's hidden layer (after the 3x3 convolution and GELU) for BT frames
        ``pixel_values [BT, c, S, S]``, channels last; `forward` applies the last 1x1 layer on the queries.

        The convolution runs on channels-last memory, so its output already has the ``[BT, S, S, e]`` layout
        the queries read: on CPU its forward and backward take about 2/3 of the time of the same convolution
        in NCHW or of a matrix product over unfolded 3x3 neighbourhoods, with no transposed copy of the
        ``e x S x S`` activations of every frame.
        """
        first, act, _ = self.pixels
        x = pixel_values.to(first.weight.dtype).contiguous(memory_format=torch.channels_last)
        return act(first(x)).permute(0, 2, 3, 1)  # [BT, S, S, e], a view of the channels-last memory

    def forward(
        self,
        pixel_values: torch.Tensor,
        seg_states: torch.Tensor,
        grid: torch.Tensor | None = None,
        video_index: torch.Tensor | None = None,
        question_states: torch.Tensor | None = None,
        grid_motion: torch.Tensor | None = None,
        motion_scale: float = 1.0,
    ) -> torch.Tensor:
        """Mask logits of the path.

        Args:
            pixel_values: ``[V, T, c, S, S]`` `inputs` of V videos (normalised mask-engine frames, c = 3, when
                the path reads no differences).
            seg_states: ``[B, D]`` the ``[SEG]`` state of each question.
            grid: ``[V, T, h, w, d]`` the videos' (adapted) vision grid, when the path has a grid input.
            video_index: ``[B]`` the video of each question (default: question b, video b).
            question_states: ``[B, D]`` the mean state of each question's words (the motion match's input;
                required when it is on).
            grid_motion: ``[V, T, h, w, 4]`` each grid cell's (dx, dy) from the previous and to the next frame
                (`normal_flow` of the clips / 4; required with ``grid_flow``).
            motion_scale: factor on the motion match's own estimates (`motion_time_scale` of the whole clip,
                which a window of frames does not know).

        Returns:
            ``[B, T, S, S]`` float32 logits.
        """
        V, T, c, H, W = pixel_values.shape
        B = seg_states.shape[0]
        if c != self.input_channels:
            raise ValueError(
                f"this PixelMaskPath reads {self.input_channels} channels per pixel, got {c}; pass inputs()"
            )
        if self.grid is not None and grid is None:
            raise ValueError("this PixelMaskPath reads the vision grid; pass grid [V, T, h, w, d]")
        if video_index is None:
            video_index = torch.arange(B)
        video_index = video_index.to(seg_states.device)
        queries = self.query(seg_states.to(self.query.weight.dtype))  # [B, e]
        rows, slots = slots_by_video(video_index, V)
        packed = queries.new_zeros(V * slots, self.dim).index_copy(0, rows, queries).view(V, slots, self.dim)
        mlp_in = pixel_values[:, :, : self.pixels[0].in_channels]
        # q . (W2 h + b2) = (W2^T q) . h + q . b2: the MLP's last (linear) layer moves onto the queries, so it
        # runs once per question instead of once per pixel; W2^T q and q . b2 in one matrix product (a
        # matrix-vector product with the bias alone rounds differently with its memory alignment, e.g. after
        # loading from safetensors, and saved models must give the same outputs)
        second = self.pixels[2]
        weights = torch.cat([second.weight.flatten(1), second.bias[:, None]], dim=1)  # [e, e + 1]
        folded = packed @ weights  # [V, slots, e + 1]
        hidden = self._hidden_pixels(mlp_in.flatten(0, 1)).reshape(V, T * H * W, self.dim)
        # pixels x queries, then the small result transposed: the e x (T*S*S) activations are never copied
        per_pixel = torch.bmm(hidden, folded[..., :-1].transpose(1, 2)).transpose(1, 2)  # [V, slots, T*S*S]
        per_pixel = per_pixel + folded[..., -1:]
        logits = per_pixel.reshape(V * slots, T, H, W)[rows]  # [B, T, S, S]
        if self.grid is not None:
            h, w = grid.shape[2:4]
            cells = self.grid(grid.to(queries.dtype))  # [V, T, h, w, e]
            if self.grid_flow is not None:
                if grid_motion is None or tuple(grid_motion.shape) != (V, T, h, w, 4):
                    got = None if grid_motion is None else tuple(grid_motion.shape)
                    raise ValueError(
                        f"this PixelMaskPath reads the cells' motion; pass grid_motion {(V, T, h, w, 4)}, got {got}"
                    )
                motion = motion_direction(grid_motion) if self.grid_direction else grid_motion
                cells = cells + self.grid_flow(motion.to(queries.dtype))
            cells = cells.reshape(V, T * h * w, self.dim)
            coarse = torch.bmm(packed, cells.transpose(1, 2)).view(V * slots, T, h, w)[rows]  # [B, T, h, w]
            logits = logits + F.interpolate(coarse, size=(H, W), mode="bilinear", align_corners=False)
        if self.motion_match is not None:
            logits = logits + self._motion_logits(
                pixel_values, question_states, rows, slots, (H, W), motion_scale
            )
        if self.stem is not None:
            x = self.stem(pixel_values.flatten(0, 1).to(queries.dtype))  # [V*T, e, H/4, W/4]
            h, w = x.shape[-2:]
            x = x.view(V, T, self.dim, h * w).permute(0, 1, 3, 2).reshape(V, T * h * w, self.dim)
            fine = torch.bmm(packed, x.transpose(1, 2)).view(V * slots, T, h, w)[rows]  # [B, T, H/4, W/4]
            logits = logits + F.interpolate(fine, size=(H, W), mode="bilinear", align_corners=False)
        return logits.float()

    def _motion_logits(
        self,
        inputs: torch.Tensor,
        question_states: torch.Tensor | None,
        rows: torch.Tensor,
        slots: int,
        size: tuple[int, int],
        motion_scale: float = 1.0,
    ) -> torch.Tensor:
        """``[B, T, S, S]``: the dot product of each question's asked-for motion with every cell's motion.

        A question's words give a 4-vector (``motion_match``, linear in the mean of their states, so a
        direction word moves it from the first step); each cell of each frame has the motion `triple_flow`
        estimates from the frame and its neighbours (rebuilt from `inputs`' differences); their product is
        upsampled to the frame. "Which object moves left" learns to light up cells moving left.
        """
        if question_states is None:
            raise ValueError(
                "this PixelMaskPath matches the question against motion; pass question_states [B, D]"
            )
        V, T = inputs.shape[:2]
        g = self.motion_grid
        motion = cell_motion(inputs, (g, g)) * motion_scale
        if self.motion_direction:
            motion = motion_direction(motion)
        motion = motion.to(self.motion_match.weight.dtype).view(V, T * g * g, 4)
        asked = self.motion_match(question_states.to(self.motion_match.weight.dtype))  # [B, 4]
        packed = asked.new_zeros(V * slots, 4).index_copy(0, rows, asked).view(V, slots, 4)
        matched = torch.bmm(packed, motion.transpose(1, 2)).view(V * slots, T, g, g)[rows]  # [B, T, g, g]
        return F.interpolate(matched, size=size, mode="bilinear", align_corners=False)
