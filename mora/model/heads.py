"""The trainable heads MoRA adds to the backbone (the motion tokens are `mora.model.motion_tokens`).

* `SegProjector`: ``[SEG]`` hidden state -> mask-engine prompt (LISA's ``text_hidden_fcs``).
* `TemporalHead`: ``[LOC]`` hidden state -> one in-span logit per frame, for any number of frames.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from mora.model.motion_tokens import MotionTokenizer  # noqa: F401  (its former home)
from mora.model.video_adapter import motion_direction


class SegProjector(nn.Sequential):
    """``[..., D]`` -> ``[..., C]``: Linear(D, D), ReLU, Linear(D, C), Dropout(0) as LISA."""

    def __init__(self, hidden_size: int, prompt_dim: int) -> None:
        super().__init__(
            nn.Linear(hidden_size, hidden_size),
            nn.ReLU(inplace=False),
            nn.Linear(hidden_size, prompt_dim),
            nn.Dropout(0.0),
        )


class TemporalHead(nn.Module):
    """Per-frame in-span logits from the ``[LOC]`` hidden state.

    logit_t = max_i <q, k_{t,i}> / sqrt(dim) + bias, with q an MLP of the ``[LOC]`` state and k_{t,i} a
    linear map of frame t's tokens (its visual tokens and the motion tokens into and out of it).
    """

    def __init__(self, hidden_size: int, dim: int) -> None:
        super().__init__()
        self.query = nn.Sequential(
            nn.Linear(hidden_size, hidden_size), nn.ReLU(), nn.Linear(hidden_size, dim)
        )
        self.key = nn.Linear(hidden_size, dim)
        self.bias = nn.Parameter(torch.zeros(1))
        self.scale = 1.0 / math.sqrt(dim)

    def forward(self, loc_hidden: torch.Tensor, frame_tokens: torch.Tensor) -> torch.Tensor:
        """Args: loc_hidden ``[B, D]``; frame_tokens ``[B, T, n, D]``. Returns span logits ``[B, T]``."""
        q = self.query(loc_hidden)  # [B, dim]
        k = self.key(frame_tokens.to(q.dtype))  # [B, T, n, dim]
        scores = torch.einsum("bd,btnd->btn", q, k) * self.scale  # [B, T, n]
        return scores.amax(dim=-1) + self.bias  # [B, T]


class FramePromptReader(nn.Module):
    """A per-frame prompt token: the ``[SEG]`` state attends over one frame's tokens.

    The readout (a softmax-weighted sum of the frame's visual and motion tokens, projected to the prompt
    width C) tells the mask decoder what the referred object looks like and where it moves in that frame;
    it is added as a second sparse prompt beside the ``[SEG]`` projection.
    """

    def __init__(self, hidden_size: int, dim: int, prompt_dim: int) -> None:
        super().__init__()
        self.query = nn.Linear(hidden_size, dim)
        self.key = nn.Linear(hidden_size, dim)
        self.value = nn.Linear(hidden_size, prompt_dim)
        self.scale = 1.0 / math.sqrt(dim)

    def forward(self, seg_hidden: torch.Tensor, frame_tokens: torch.Tensor) -> torch.Tensor:
        """Args: seg_hidden ``[B, D]``; frame_tokens ``[B, T, n, D]``. Returns ``[B, T, C]``."""
        q = self.query(seg_hidden)  # [B, dim]
        tokens = frame_tokens.to(q.dtype)
        weights = (torch.einsum("bd,btnd->btn", q, self.key(tokens)) * self.scale).softmax(
            dim=-1
        )  # [B, T, n]
        return torch.einsum("btn,btnc->btc", weights, self.value(tokens))  # [B, T, C]


def temporal_frame_tokens(visual_tokens: torch.Tensor, motion_tokens: torch.Tensor | None) -> torch.Tensor:
    """Keys of the temporal head for every frame.

    Args:
        visual_tokens: ``[B, T, n, D]`` projected per-frame tokens.
        motion_tokens: ``[B, T - s, m, D]`` motion tokens of the frame pairs ``(t, t + s)`` (`MotionTokenizer`
            with stride s, read off the shapes), or None.

    Returns:
        ``[B, T, n + 2m, D]``: frame t's visual tokens, the motion into t (from t - s) and out of t (to t + s);
        missing partners (t < s, t >= T - s) are zeros.
    """
    if motion_tokens is None:
        return visual_tokens
    B, T = visual_tokens.shape[:2]
    s = T - motion_tokens.shape[1]
    if not 1 <= s <= T:
        raise ValueError(f"{motion_tokens.shape[1]} motion tokens per clip do not fit {T} frames")
    motion_tokens = motion_tokens.to(visual_tokens.dtype)
    zero = motion_tokens.new_zeros(B, s, *motion_tokens.shape[2:])  # [B, s, m, D]
    into = torch.cat([zero, motion_tokens], dim=1)  # [B, T, m, D]
    out_of = torch.cat([motion_tokens, zero], dim=1)  # [B, T, m, D]
    return torch.cat([visual_tokens, into, out_of], dim=2)


class MaskPooledSpanHead(nn.Module):
    """Per-frame in-span logits from what lies under the predicted mask of the answer object.

    The span is when *that* object moves, so each frame is scored from (a) its grid tokens averaged under
    the predicted mask (the object's appearance and, after the video adapter, its motion in context) and
    (b) the mask's own motion: the shift of its centroid to the previous and next frame and its area.
    Both meet the ``[LOC]`` query in a two-layer MLP::

        z_t = GELU(K [pool_t ; motion_t] + Q loc [+ Q' question]);   logit_t = w . GELU(W z_t) + b

    With ``question=True`` the query also reads the mean state of the question's own words
    (`MoRAForVideoGrounding.question_states`): a Descriptive question's span is when the masked object
    moves *the asked way*, and the direction word reaches that mean from the first step while the ``[LOC]``
    state of a model trained from scratch barely depends on it (session 9).

    Each grid cell can also be scored on its own, and the frame then gets the mask-weighted log-sum-exp of its
    cells' scores ("some part of the masked object moves the way the question asks")::

        logit_t += log sum_c wbar_{t,c} exp(s_{t,c}),     s_{t,c} = a . m_{t,c}  [+ u . GELU(K_c norm(x_{t,c}) [+ M m_{t,c}] + Q_c loc + Q'_c question)]

    with wbar the mask's weights on the grid normalised over the frame, m_{t,c} the cell's motion estimate
    (dx, dy to the previous and next frame, `normal_flow` / 4) and, with ``motion_match=True``, a = A question
    the motion the question asks for (a linear map of the question's words, so "left" points a to the left
    from the first steps; with ``motion_direction=True`` m in a . m is the direction of each pair,
    `motion_direction`, so a slow mover matches the asked way as strongly as a fast one); ``cells=True`` adds the
    learned score of the cell's token (``cell_flow``: and of its motion). Pooled features of a mask that covers
    the answer and another object moving another way mix both motions, so the frame-level key cannot tell whether
    the answer moves the asked way; each cell's own score can. A and u start at zero, so the head starts as the
    pooled one.

    The mask probabilities are detached: the span loss does not pull masks towards frames it likes.
    """

    MOTION_FEATURES = 5  # centroid shift to t-1 (dy, dx), to t+1 (dy, dx), area
    SHIFT_FRAMES = 8  # shifts are reported per 1/8 of the clip

    def __init__(
        self,
        hidden_size: int,
        dim: int,
        question: bool = False,
        cells: bool = False,
        cell_flow: bool = False,
        motion_match: bool = False,
        motion_direction: bool = False,
    ) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(hidden_size)
        self.key = nn.Linear(hidden_size + self.MOTION_FEATURES, dim)
        self.query = nn.Linear(hidden_size, dim)
        self.mlp = nn.Sequential(nn.GELU(), nn.Linear(dim, dim), nn.GELU(), nn.Linear(dim, 1))
        self.question_query = nn.Linear(hidden_size, dim) if question else None
        self.cells = cells
        if cells:
            self.cell_norm = nn.LayerNorm(hidden_size)
            self.cell_key = nn.Linear(hidden_size, dim)
            self.cell_query = nn.Linear(hidden_size, dim)
            self.cell_question = nn.Linear(hidden_size, dim) if question else None
            self.cell_out = nn.Linear(dim, 1, bias=False)
            nn.init.zeros_(self.cell_out.weight)
        if cell_flow and not cells:
            raise ValueError("MaskPooledSpanHead(cell_flow=True) scores cells: it needs cells=True")
        # each cell's motion estimate (dx, dy to the previous and next frame) beside its token
        self.cell_flow = nn.Linear(4, dim) if cell_flow else None
        if motion_match and not question:
            raise ValueError("MaskPooledSpanHead(motion_match=True) reads the asked motion from the question")
        self.motion_match = nn.Linear(hidden_size, 4) if motion_match else None
        if motion_match:
            nn.init.zeros_(self.motion_match.weight)
            nn.init.zeros_(self.motion_match.bias)
        if motion_direction and not motion_match:
            raise ValueError("MaskPooledSpanHead(motion_direction=True) normalises the motion match's input")
        self.motion_direction = motion_direction

    @classmethod
    def mask_motion(cls, weights: torch.Tensor) -> torch.Tensor:
        """``[B, T, 5]`` centroid shifts to the previous / next frame and the covered fraction.

        Shifts are in grid cells per ``1 / SHIFT_FRAMES`` of the clip (frames are spread over the whole clip, so
        a shift between neighbouring sampled frames times ``T - 1`` is the same speed whatever T is).

        Args:
            weights: ``[B, T, h, w]`` mask probabilities pooled to the grid.
        """
        B, T, h, w = weights.shape
        mass = weights.flatten(2).sum(-1).clamp_min(1e-4)  # [B, T]
        rows = torch.arange(h, device=weights.device, dtype=weights.dtype)
        cols = torch.arange(w, device=weights.device, dtype=weights.dtype)
        cy = (weights.sum(3) * rows).sum(-1) / mass  # [B, T]
        cx = (weights.sum(2) * cols).sum(-1) / mass
        centre = torch.stack([cy, cx], dim=-1) * (max(1, T - 1) / cls.SHIFT_FRAMES)  # [B, T, 2]
        back = torch.zeros_like(centre)
        fwd = torch.zeros_like(centre)
        if T > 1:
            back[:, 1:] = centre[:, 1:] - centre[:, :-1]
            fwd[:, :-1] = centre[:, 1:] - centre[:, :-1]
        area = weights.flatten(2).mean(-1, keepdim=True)  # [B, T, 1]
        return torch.cat([back, fwd, area], dim=-1)

    def forward(
        self,
        loc_hidden: torch.Tensor,
        frame_tokens: torch.Tensor,
        mask_probs: torch.Tensor,
        question_states: torch.Tensor | None = None,
        video_index: torch.Tensor | None = None,
        cell_motion: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Args: loc_hidden ``[B, D]``; frame_tokens ``[V, T, n, D]`` (n = h * w grid cells) of the videos
        ``video_index [B]`` (default: V = B, question b reads video b); mask_probs ``[B, T, S, S]`` predicted mask
        probabilities; question_states ``[B, D]`` (required when the head reads the question); cell_motion
        ``[V, T, h, w, 4]`` each cell's (dx, dy) to the previous and next frame (`normal_flow` / 4; required with
        ``cell_flow`` or ``motion_match``). Returns span logits ``[B, T]``."""
        B = loc_hidden.shape[0]
        if video_index is None:
            video_index = torch.arange(B, device=frame_tokens.device)
        video_index = torch.as_tensor(video_index, dtype=torch.long, device=frame_tokens.device)
        videos = frame_tokens
        frame_tokens = videos[video_index]  # [B, T, n, D]
        _, T, n, D = frame_tokens.shape
        side = int(round(n**0.5))
        if side * side != n:
            raise ValueError(f"MaskPooledSpanHead needs square grids, got {n} tokens per frame")
        dtype = self.key.weight.dtype
        probs = mask_probs.detach().to(dtype).flatten(0, 1).unsqueeze(1)  # [B*T, 1, S, S]
        weights = F.adaptive_avg_pool2d(probs, side).view(B, T, side, side)  # [B, T, h, w]
        flat = weights.flatten(2)  # [B, T, n]
        pooled = (flat.unsqueeze(-1) * frame_tokens.to(dtype)).sum(2) / flat.sum(-1, keepdim=True).clamp_min(
            1e-4
        )
        keys = self.key(torch.cat([self.norm(pooled), self.mask_motion(weights)], dim=-1))  # [B, T, dim]
        query = self.query(loc_hidden.to(dtype))  # [B, dim]
        if self.question_query is not None:
            if question_states is None:
                raise ValueError("this span head reads the question; pass question_states [B, D]")
            query = query + self.question_query(question_states.to(dtype))
        z = keys + query.unsqueeze(1)
        logits = self.mlp(z).squeeze(-1)  # [B, T]
        if self.cells or self.motion_match is not None:
            logits = logits + self._cell_scores(
                videos, video_index, flat, loc_hidden, question_states, cell_motion
            )
        return logits

    def _cell_scores(
        self,
        videos: torch.Tensor,
        video_index: torch.Tensor,
        weights: torch.Tensor,
        loc_hidden: torch.Tensor,
        question_states: torch.Tensor | None,
        cell_motion: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``[B, T]`` log sum_c wbar_{t,c} exp(s_{t,c}) of the cells' own scores (see the class docstring).

        Args: videos ``[V, T, n, D]``; video_index ``[B]``; weights ``[B, T, n]`` the mask on the grid;
        loc_hidden / question_states ``[B, D]``; cell_motion ``[V, T, h, w, 4]`` (with ``cell_flow`` or
        ``motion_match``).
        """
        dtype = self.key.weight.dtype
        V, T, n = videos.shape[:3]
        motion = None
        if self.cell_flow is not None or self.motion_match is not None:
            if cell_motion is None or cell_motion.shape[:2] != (V, T) or cell_motion[0, 0].numel() != 4 * n:
                got = None if cell_motion is None else tuple(cell_motion.shape)
                raise ValueError(
                    f"this span head reads each cell's motion; pass cell_motion [{V}, {T}, h, w, 4], got {got}"
                )
            motion = cell_motion.to(dtype).reshape(V, T, n, 4)
        scores = weights.new_zeros(weights.shape, dtype=dtype)  # [B, T, n]
        if self.cells:
            keys = self.cell_key(self.cell_norm(videos.to(dtype)))  # [V, T, n, dim], once per video
            if self.cell_flow is not None:
                keys = keys + self.cell_flow(motion)
            query = self.cell_query(loc_hidden.to(dtype))  # [B, dim]
            if self.cell_question is not None:
                query = query + self.cell_question(question_states.to(dtype))
            scores = scores + self.cell_out(F.gelu(keys[video_index] + query[:, None, None])).squeeze(-1)
        if self.motion_match is not None:
            asked = self.motion_match(question_states.to(dtype))  # [B, 4]
            moved = motion_direction(motion) if self.motion_direction else motion
            scores = scores + torch.einsum("bk,btnk->btn", asked, moved[video_index])
        share = weights / weights.sum(-1, keepdim=True).clamp_min(1e-4)  # [B, T, n]
        return torch.logsumexp(scores + torch.log(share + 1e-6), dim=-1)
