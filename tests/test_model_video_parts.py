"""The tiny default's video parts: `VideoAdapter`, `GroundingReader`, `VideoDensePrompt`, `MaskPooledSpanHead`,
and questions sharing one encoding of their video (``video_index``)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from model_testing import PAPER_STYLE, moving_square_clip, tiny_model, training_batch

from mora.constants import ANSWER_WITH_SPAN
from mora.model.grounding_reader import GroundingReader
from mora.model.heads import MaskPooledSpanHead
from mora.model.packing import slots_by_video
from mora.model.pixel_mask_path import PixelMaskPath
from mora.model.video_adapter import (
    VideoAdapter,
    _blur,
    motion_direction,
    motion_time_scale,
    neighbour_differences,
    normal_flow,
    triple_flow,
)
from mora.model.video_dense_prompt import VideoDensePrompt


def _randomise(module: torch.nn.Module, seed: int = 0) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.2)


def test_video_adapter_starts_as_identity_and_mixes_space_and_time():
    torch.manual_seed(0)
    adapter = VideoAdapter(in_dim=16, dim=32, layers=2, heads=4)
    grid = torch.randn(2, 5, 3, 3, 16)  # [B, T, h, w, d]
    assert torch.equal(adapter(grid), grid)  # zero-initialised output
    _randomise(adapter)
    out = adapter(grid)
    assert out.shape == grid.shape
    changed = grid.clone()
    changed[0, 2, 1, 1] += 1.0  # one cell of one frame of clip 0
    delta = (adapter(changed) - out).abs().flatten(3).sum(-1)  # [B, T, h]
    assert delta[0, 0].sum() > 0 and delta[0, 4].sum() > 0  # other frames see it (time)
    assert delta[0, 2, 0] > 0  # other cells of the frame see it (space)
    assert delta[1].sum() == 0  # the other clip does not
    with pytest.raises(ValueError, match="divisible"):
        VideoAdapter(in_dim=16, dim=30, layers=1, heads=4)


def test_grounding_reader_packs_the_questions_of_a_video_exactly():
    torch.manual_seed(0)
    reader = GroundingReader(hidden_size=32, layers=2, heads=4)
    queries = torch.randn(5, 2, 32)
    tokens = torch.randn(3, 4, 6, 32)  # [V, T, n, D]
    video_index = torch.tensor([2, 0, 2, 2, 1])
    assert torch.equal(reader(queries, tokens, video_index), queries)  # identity at init
    _randomise(reader)
    packed = reader(queries, tokens, video_index)
    for b, v in enumerate(video_index.tolist()):  # one question at a time, its video alone
        alone = reader(queries[b : b + 1], tokens[v : v + 1])
        torch.testing.assert_close(packed[b : b + 1], alone, atol=1e-5, rtol=1e-5)
    other = tokens.clone()
    other[1] += 1.0  # changing video 1 changes question 4 only
    moved = (reader(queries, other, video_index) - packed).abs().sum((1, 2))
    assert moved[4] > 0 and torch.all(moved[:4] == 0)


def test_video_dense_prompt_is_zero_at_init_and_resizes_to_the_engine_grid():
    prompt = VideoDensePrompt(in_dim=16, prompt_dim=8, embedding_size=4)
    grid = torch.randn(2, 3, 8, 8, 16)
    out = prompt(grid)
    assert out.shape == (6, 8, 4, 4) and torch.count_nonzero(out) == 0
    _randomise(prompt)
    assert torch.count_nonzero(prompt(grid)) > 0


def test_slots_by_video_packs_and_unpacks():
    video_index = torch.tensor([2, 0, 2, 2, 1, 0])
    rows, slots = slots_by_video(video_index, 4)
    assert slots == 3 and sorted(rows.tolist()) == [0, 1, 3, 6, 7, 8]
    assert torch.equal(rows // slots, video_index)  # each question lands in its video's block
    x = torch.arange(6.0)[:, None]
    packed = x.new_zeros(4 * slots, 1).index_copy(0, rows, x)
    assert torch.equal(packed[rows], x)


def test_pixel_mask_path_reads_each_question_against_its_video():
    torch.manual_seed(0)
    path = PixelMaskPath(query_dim=8, grid_dim=6, dim=4)
    V, T, S = 2, 3, 16
    pix, grid = torch.randn(V, T, 3, S, S), torch.randn(V, T, 2, 2, 6)
    seg = torch.randn(3, 8)
    index = torch.tensor([1, 0, 1])
    logits = path(pix, seg, grid, index)
    assert logits.shape == (3, T, S, S)
    # the definition: per-pixel MLP (as convolutions) + the projected grid upsampled, dot the query
    for b, v in enumerate(index.tolist()):
        cells = path.grid(grid[v]).permute(0, 3, 1, 2)  # [T, e, 2, 2]
        embeds = path.pixels(pix[v]) + torch.nn.functional.interpolate(cells, size=S, mode="bilinear")
        expected = torch.einsum("e,tehw->thw", path.query(seg[b]), embeds)
        torch.testing.assert_close(logits[b], expected, atol=1e-5, rtol=1e-5)
    moved = pix.clone()
    moved[1, 1, :, 5, 5] += 3.0  # one pixel of video 1, frame 1: its 3x3 neighbourhood changes, nothing else
    delta = (path(moved, seg, grid, index) - logits).abs()
    assert delta[1].sum() == 0 and delta[0, 1, 4:7, 4:7].sum() > 0 and delta[0, 1, :3].sum() == 0
    with pytest.raises(ValueError, match="grid"):
        path(pix, seg, None, index)


def test_neighbour_differences_and_the_adapter_that_reads_them():
    torch.manual_seed(0)
    x = torch.randn(2, 4, 3, 3, 5)  # [V, T, h, w, d]
    before, after = neighbour_differences(x)
    torch.testing.assert_close(before[:, 1:], x[:, 1:] - x[:, :-1])
    torch.testing.assert_close(after[:, :-1], x[:, 1:] - x[:, :-1])
    assert before[:, 0].abs().sum() == 0 and after[:, -1].abs().sum() == 0
    part = neighbour_differences(x, [0, 2])
    torch.testing.assert_close(part[0], before[:, [0, 2]])
    torch.testing.assert_close(part[1], after[:, [0, 2]])
    adapter = VideoAdapter(5, 8, 1, 2, differences=True)
    assert adapter.inp.in_features == 15
    torch.nn.init.normal_(adapter.out.weight)  # leave the identity start
    with torch.no_grad():
        adapter.inp.weight[:, 5:] = 0  # the same adapter blind to the differences
    blind = adapter(x)
    with torch.no_grad():
        adapter.inp.weight[:, 5:10] = 1.0
    assert not torch.allclose(adapter(x), blind)  # it reads them
    static = x[:, :1].expand_as(x)
    with torch.no_grad():
        seen = adapter(static)
        adapter.inp.weight[:, 5:] = 0
        torch.testing.assert_close(seen, adapter(static))  # a static clip has no differences to read


def test_pixel_mask_path_differences_keep_a_window_equal_to_the_whole_clip():
    torch.manual_seed(0)
    path = PixelMaskPath(query_dim=8, grid_dim=6, dim=4, differences=True)
    V, T, S = 2, 5, 12
    pix, grid = torch.randn(V, T, 3, S, S), torch.randn(V, T, 2, 2, 6)
    inputs = path.inputs(pix)
    assert inputs.shape == (V, T, 9, S, S)
    torch.testing.assert_close(inputs[:, 2, 3:6], pix[:, 2] - pix[:, 1])
    torch.testing.assert_close(inputs[:, 2, 6:], pix[:, 3] - pix[:, 2])
    assert inputs[:, 0, 3:6].abs().sum() == 0 and inputs[:, -1, 6:].abs().sum() == 0  # no frame there
    static = path.inputs(pix[:, :1].expand(V, T, 3, S, S))
    assert static[:, :, 3:].abs().sum() == 0  # nothing moves, nothing differs
    window = [1, 2, 4]
    torch.testing.assert_close(path.inputs(pix, window), inputs[:, window])
    seg, index = torch.randn(3, 8), torch.tensor([0, 1, 1])
    whole = path(inputs, seg, grid, index)
    part = path(path.inputs(pix, window), seg, grid[:, window], index)
    torch.testing.assert_close(part, whole[:, window], atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="9 channels"):
        path(pix, seg, grid, index)


def test_mask_pooled_span_head_reads_the_motion_of_the_mask():
    B, T, side = 1, 5, 8
    weights = torch.zeros(B, T, side, side)
    for t in range(T):  # a 2x2 blob moving one cell right per frame
        weights[0, t, 3:5, t : t + 2] = 1.0
    motion = MaskPooledSpanHead.mask_motion(weights)  # [B, T, 5]
    per_frame = (T - 1) / MaskPooledSpanHead.SHIFT_FRAMES
    torch.testing.assert_close(motion[0, 1:, 1], torch.full((T - 1,), per_frame))  # dx back
    torch.testing.assert_close(motion[0, :-1, 3], torch.full((T - 1,), per_frame))  # dx forward
    assert torch.all(motion[0, :, 0] == 0) and motion[0, 0, 1] == 0  # no dy; no frame before 0
    torch.testing.assert_close(motion[0, :, 4], torch.full((T,), 4 / 64))  # covered fraction
    head = MaskPooledSpanHead(hidden_size=16, dim=8)
    logits = head(torch.randn(B, 16), torch.randn(B, T, side * side, 16), torch.rand(B, T, 32, 32))
    assert logits.shape == (B, T)


def test_span_cells_score_each_masked_cell_where_the_pooled_mean_mixes_two_motions():
    """A mask covering two objects: on in-span frames one moves the asked way (+m) and the other the opposite way
    (-m); on the other frames both stand still. Their pooled mean is the same on every frame, so the pooled
    head cannot tell the frames apart; the cells' own scores can. Both start from the same weights."""
    torch.manual_seed(0)
    B, T, side, D = 16, 6, 4, 8
    moving = torch.zeros(D)
    moving[0] = 1.0
    tokens = torch.zeros(B, T, side * side, D)
    labels = torch.zeros(B, T)
    for b in range(B):
        frames = torch.randperm(T)[: T // 2]
        labels[b, frames] = 1.0
        tokens[b, frames, 5] = moving  # the answer's cell moves the asked way...
        tokens[b, frames, 10] = -moving  # ...while the other covered object moves the other way
    tokens = tokens + 0.05 * torch.randn(D)  # one background feature everywhere
    masks = torch.zeros(B, T, 32, 32)
    masks[:, :, 8:16, 8:16] = 1.0  # cell 5 of the 4x4 grid
    masks[:, :, 16:24, 16:24] = 1.0  # cell 10
    loc = torch.randn(1, D).expand(B, D)
    pooled = MaskPooledSpanHead(hidden_size=D, dim=16)
    cells = MaskPooledSpanHead(hidden_size=D, dim=16, cells=True)
    cells.load_state_dict(pooled.state_dict(), strict=False)
    torch.testing.assert_close(cells(loc, tokens, masks), pooled(loc, tokens, masks), atol=1e-4, rtol=1e-4)
    accuracy = {}
    for name, head in (("pooled", pooled), ("cells", cells)):
        opt = torch.optim.Adam(head.parameters(), lr=1e-2)
        for _ in range(150):
            loss = torch.nn.functional.binary_cross_entropy_with_logits(head(loc, tokens, masks), labels)
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():
            accuracy[name] = float(((head(loc, tokens, masks) > 0) == labels.bool()).float().mean())
    assert accuracy["cells"] == 1.0
    assert accuracy["pooled"] <= 0.6  # the same pooled features on every frame: no better than a guess
    # questions reading one video's tokens (video_index) equal the tokens given once per question
    index = torch.tensor([0, 0, 1])
    torch.testing.assert_close(
        cells(loc[:3], tokens[:2], masks[:3], video_index=index), cells(loc[:3], tokens[index], masks[:3])
    )
    with pytest.raises(ValueError, match="span_cells needs span_head='mask_pooled'"):
        tiny_model("llava", "sam", span_head="tokens", span_cells=True)


def test_span_motion_direction_matches_a_slow_mover_as_strongly_as_a_fast_one():
    """The span's motion match on a masked cell moving the asked way at speed v: proportional to v on raw
    displacements, about the same for every v on directions; still cells add nothing either way."""
    D, T, side = 8, 4, 4
    states = torch.randn(1, D)
    masks = torch.zeros(1, T, 32, 32)
    masks[:, :, 8:16, 8:16] = 1.0  # cell 5 of the 4x4 grid
    tokens = torch.zeros(1, T, side * side, D)
    raw = MaskPooledSpanHead(D, 16, question=True, motion_match=True)
    direction = MaskPooledSpanHead(D, 16, question=True, motion_match=True, motion_direction=True)
    for head in (raw, direction):
        torch.nn.init.normal_(head.motion_match.weight)
    direction.load_state_dict(raw.state_dict())
    asked = raw.motion_match(states).detach()[0]  # [4]

    def match(head, speed: float) -> float:
        motion = torch.zeros(1, T, side, side, 4)
        motion[0, 1:3, 1, 1] = speed * asked / asked.norm()  # cell 5 moves the asked way on frames 1-2
        with torch.no_grad():
            logits = head(torch.zeros(1, D), tokens, masks, question_states=states, cell_motion=motion)
        return float(logits[0, 1] - logits[0, 0])  # the moving frame against a still one

    assert match(raw, 0.6) == pytest.approx(2 * match(raw, 0.3), rel=1e-3)
    assert (
        match(direction, 0.3) == pytest.approx(match(direction, 0.6), rel=0.05) and match(direction, 0.3) > 0
    )
    assert motion_direction(torch.zeros(3, 4)).abs().max() == 0
    with pytest.raises(ValueError, match="span_motion_direction"):
        tiny_model("llava", "sam", span_motion_direction=True)


def test_pixel_grid_direction_selects_a_slow_mover_as_strongly_as_a_fast_one():
    """The pixel path's grid term on a cell moving at speed v: its logit grows with v on raw displacements and
    is about the same for every v on directions."""
    raw = PixelMaskPath(query_dim=8, grid_dim=5, dim=4, grid_flow=True)
    direction = PixelMaskPath(query_dim=8, grid_dim=5, dim=4, grid_flow=True, grid_direction=True)
    _randomise(raw, seed=5)
    direction.load_state_dict(raw.state_dict())
    frames = torch.zeros(1, 3, 3, 64, 64)
    grid = torch.zeros(1, 3, 8, 8, 5)
    states = torch.randn(1, 8, generator=torch.Generator().manual_seed(2))
    index = torch.zeros(1, dtype=torch.long)

    def logit(path, speed: float) -> float:
        motion = torch.zeros(1, 3, 8, 8, 4)
        motion[0, 1, 3, 3] = torch.tensor([speed, 0.0, speed, 0.0])  # one cell moving right on frame 1
        with torch.no_grad():
            out = path(frames, states, grid, index, grid_motion=motion)
        return float(out[0, 1, 28, 28] - out[0, 0, 28, 28])  # that cell's centre against a still frame

    assert abs(logit(raw, 0.6)) == pytest.approx(2 * abs(logit(raw, 0.3)), rel=1e-3) and logit(raw, 0.3) != 0
    assert logit(direction, 0.3) == pytest.approx(logit(direction, 0.6), rel=0.05)
    with pytest.raises(ValueError, match="grid_direction"):
        PixelMaskPath(query_dim=8, grid_dim=5, dim=4, grid_direction=True)
    with pytest.raises(ValueError, match="pixel_mask_grid_direction"):
        tiny_model("llava", "sam", pixel_mask_grid_direction=True)


def test_questions_sharing_a_video_equal_the_video_given_once_per_question():
    """``video_index``: two questions about one video give the same outputs as the video repeated."""
    model = tiny_model("llava", "sam", seed=3).eval()
    for name in ("video_adapter", "grounding_reader", "video_dense_prompt", "pixel_mask_path"):
        _randomise(getattr(model, name), seed=len(name))
    clip, masks = moving_square_clip()
    other, other_masks = moving_square_clip(seed=5)
    questions = ["Which object moves right?", "What moves?", "Which object moves left?"]
    kwargs = dict(answers=[ANSWER_WITH_SPAN] * 3, spans=[(1, 3), (0, 2), (2, 4)])
    shared = model.processor(
        [clip, other], questions, masks=[masks, other_masks, masks], video_index=[0, 1, 0], **kwargs
    )
    repeated = model.processor([clip, other, clip], questions, masks=[masks, other_masks, masks], **kwargs)
    assert shared["pixel_values"].shape[0] == 2 and "video_index" not in repeated
    with torch.no_grad():
        a, b = model(**shared), model(**repeated)
    for key in ("loss", "mask_logits", "span_logits"):
        scale = float(getattr(b, key).abs().max().clamp(min=1))  # float32 sums in another order
        torch.testing.assert_close(getattr(a, key), getattr(b, key), atol=1e-5 * scale, rtol=1e-4)
    with pytest.raises(ValueError, match="video_index"):
        model(**{**shared, "video_index": torch.tensor([0, 2, 0])})


@pytest.mark.parametrize("engine", ["sam", "sam2"])
def test_every_part_trains_and_the_paper_style_model_has_none_of_them(engine):
    model = tiny_model("llava", engine, seed=1)
    assert model.config.span_head == "mask_pooled" and model.motion_tokenizer is None
    out = model(**training_batch(model.processor))
    out.loss.backward()
    for name in (
        "video_adapter",
        "grounding_reader",
        "video_dense_prompt",
        "pixel_mask_path",
        "temporal_head",
    ):
        grads = [p.grad for p in getattr(model, name).parameters()]
        assert all(g is not None for g in grads) and sum(g.abs().sum() for g in grads) > 0, name
    paper = tiny_model("llava", engine, **PAPER_STYLE)
    assert paper.video_adapter is None and paper.grounding_reader is None and paper.video_dense_prompt is None
    assert paper.pixel_mask_path is None


def test_predict_returns_ungated_masks_of_the_same_pass():
    model = tiny_model("llava", "sam", seed=2).eval()
    frames, _ = moving_square_clip()
    pred = model.predict(frames, "Which object moves right?", mode="template", with_ungated=True)
    assert pred.ungated_masks.shape == pred.masks.shape == frames.shape[:3]
    assert np.all(pred.ungated_masks[pred.masks])  # gating only removes foreground
    if pred.span is not None:
        inside = slice(pred.span[0], pred.span[1] + 1)
        assert np.array_equal(pred.masks[inside], pred.ungated_masks[inside])
    assert model.predict(frames, "Which object moves right?", mode="template").ungated_masks is None


@pytest.mark.parametrize("dx, dy", [(3, 0), (0, -3), (-2, 0), (0, 4)])
def test_normal_flow_points_along_the_motion(dx, dy):
    g = torch.Generator().manual_seed(0)
    T, S = 6, 64
    frames = torch.rand(1, T, 3, S, S, generator=g) * 0.3
    for t in range(T):
        y0, x0 = 24 + dy * t, 20 + dx * t
        frames[0, t, 0, y0 : y0 + 12, x0 : x0 + 12] = 1.0
    flow = normal_flow(frames, (8, 8))  # [1, T, 8, 8, 4]
    assert flow.shape == (1, T, 8, 8, 4)
    assert flow[:, 0, ..., :2].abs().sum() == 0 and flow[:, -1, ..., 2:].abs().sum() == 0  # no frame there
    moving = flow[0, 1:-1].norm(dim=-1) > 0.5  # cells where the square moves
    assert moving.any()
    mean = flow[0, 1:-1][moving].mean(0)  # (dx, dy) before, (dx, dy) after
    truth = torch.tensor([dx, dy] * 2, dtype=torch.float32)
    assert torch.nn.functional.cosine_similarity(mean, truth, dim=0) > 0.9
    still = normal_flow(frames[:, :1].expand(1, T, 3, S, S), (8, 8))
    assert still.abs().max() < 1e-5  # nothing moves


def test_video_adapter_reads_the_flow_of_its_clip():
    torch.manual_seed(0)
    adapter = VideoAdapter(5, 8, 1, 2, flow=True)
    assert adapter.inp.in_features == 9
    torch.nn.init.normal_(adapter.out.weight)
    grid, pix = torch.randn(2, 4, 8, 8, 5), torch.randn(2, 4, 3, 64, 64)
    moved = pix.roll(2, dims=-1)
    moved[:, 0] = pix[:, 0]
    assert not torch.allclose(adapter(grid, pix), adapter(grid, moved))
    with pytest.raises(ValueError, match="pixel_values"):
        adapter(grid)


def test_pixel_mask_path_stem_reads_fine_features_and_keeps_windows_exact():
    torch.manual_seed(0)
    path = PixelMaskPath(query_dim=8, grid_dim=6, dim=4, stem=5)
    V, T, S = 2, 5, 16
    pix, grid = torch.randn(V, T, 3, S, S), torch.randn(V, T, 2, 2, 6)
    inputs = path.inputs(pix)
    assert inputs.shape == (V, T, 9, S, S)  # the stem reads the frame differences
    seg, index = torch.randn(3, 8), torch.tensor([0, 1, 1])
    logits = path(inputs, seg, grid, index)
    for b, v in enumerate(index.tolist()):
        fine = torch.einsum("e,tehw->thw", path.query(seg[b]), path.stem(inputs[v]))  # [T, S/4, S/4]
        cells = path.grid(grid[v]).permute(0, 3, 1, 2)
        embeds = path.pixels(inputs[v, :, :3]) + torch.nn.functional.interpolate(
            cells, size=S, mode="bilinear"
        )
        expected = torch.einsum("e,tehw->thw", path.query(seg[b]), embeds)
        expected = expected + torch.nn.functional.interpolate(fine[None], size=S, mode="bilinear")[0]
        torch.testing.assert_close(logits[b], expected, atol=1e-5, rtol=1e-5)
    window = [1, 3]
    part = path(path.inputs(pix, window), seg, grid[:, window], index)
    torch.testing.assert_close(part, logits[:, window], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("sigma", [0.4, 2.0])
def test_blur_equals_depthwise_gaussian_convolution_with_replicate_padding(sigma):
    x = torch.randn(2, 3, 12, 9)
    radius = max(1, int(round(2 * sigma)))
    taps = torch.arange(-radius, radius + 1, dtype=torch.float32)
    kernel = torch.exp(-0.5 * (taps / sigma) ** 2)
    kernel = kernel / kernel.sum()
    ref = torch.nn.functional.pad(x, (radius,) * 4, mode="replicate")
    ref = torch.nn.functional.conv2d(ref, kernel.view(1, 1, 1, -1).expand(3, 1, 1, -1), groups=3)
    ref = torch.nn.functional.conv2d(ref, kernel.view(1, 1, -1, 1).expand(3, 1, -1, 1), groups=3)
    torch.testing.assert_close(_blur(x, sigma), ref)


def test_triple_flow_of_a_frame_and_its_neighbours_equals_normal_flow_of_the_clip():
    x = torch.randn(2, 5, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    T = x.shape[1]
    before = x[:, [max(t - 1, 0) for t in range(T)]]
    after = x[:, [min(t + 1, T - 1) for t in range(T)]]
    trio = torch.stack([before, x, after], dim=2).flatten(0, 1)  # [V*T, 3, c, H, W]
    torch.testing.assert_close(triple_flow(trio, (4, 4)).view(2, T, 4, 4, 4), normal_flow(x, (4, 4)))


def _two_squares(T: int = 6, S: int = 64) -> tuple[torch.Tensor, tuple[slice, slice], tuple[slice, slice]]:
    """``[1, T, 3, S, S]``: a red square moving right 2 px per frame above a green one moving left; the
    (rows, cols) of each square's centre on frame 2."""
    background = torch.rand(3, S, S, generator=torch.Generator().manual_seed(0)) * 0.2
    frames = background.expand(1, T, 3, S, S).clone()  # a textured background that stays still
    for t in range(T):
        frames[0, t, 0, 8:20, 10 + 2 * t : 22 + 2 * t] = 1.0
        frames[0, t, 1, 40:52, 40 - 2 * t : 52 - 2 * t] = 1.0
    return frames, (slice(12, 16), slice(18, 22)), (slice(44, 48), slice(34, 38))


def test_motion_match_lights_up_what_moves_the_asked_way():
    path = PixelMaskPath(query_dim=8, grid_dim=0, dim=4, motion_match=16)
    assert path.input_channels == 9  # the motion is rebuilt from the frame and its differences
    with torch.no_grad():
        for p in path.parameters():
            p.zero_()
        path.motion_match.bias.copy_(torch.tensor([1.0, 0.0, 1.0, 0.0]))  # every question asks "rightwards"
    frames, right, left = _two_squares()
    with torch.no_grad():
        logits = path(path.inputs(frames), torch.zeros(1, 8), question_states=torch.zeros(1, 8))[
            0, 2
        ]  # [S, S]
    assert float(logits[right].mean()) > 0.1 and float(logits[left].mean()) < -0.1
    assert float(logits[56:, :8].abs().max()) < 0.02  # the still background
    with torch.no_grad():
        path.motion_match.weight[0, 0] = -4.0  # the question's own state now decides the direction
    states = torch.zeros(2, 8)
    states[1, 0] = 1.0  # "leftwards": 1 - 4 = -3 on both dx terms
    with torch.no_grad():
        asked = path(
            path.inputs(frames), states, None, torch.zeros(2, dtype=torch.long), states
        )  # [2, T, S, S]
    assert float(asked[0, 2][right].mean()) > 0.1 and float(asked[1, 2][right].mean()) < -0.1
    with pytest.raises(ValueError, match="question_states"):
        path(path.inputs(frames), torch.zeros(1, 8))


def test_grid_flow_lets_the_query_select_what_moves_its_way_and_keeps_windows_exact():
    path = PixelMaskPath(query_dim=8, grid_dim=5, dim=4, grid_flow=True)
    assert path.input_channels == 3  # the motion comes with the grid, the MLP reads the frame only
    with torch.no_grad():
        for p in path.parameters():
            p.zero_()
        path.grid_flow.weight[0, 0] = path.grid_flow.weight[0, 2] = 1.0  # embedding 0: dx back + forward
        path.query.weight[0, 0] = 1.0  # state 0 asks for rightwards, its negative for leftwards
    frames, right, left = _two_squares()
    states = torch.zeros(2, 8)
    states[0, 0], states[1, 0] = 1.0, -1.0
    grid = torch.zeros(1, frames.shape[1], 8, 8, 5)
    motion = normal_flow(frames, (8, 8)) / 4
    index = torch.zeros(2, dtype=torch.long)
    with torch.no_grad():
        logits = path(frames, states, grid, index, grid_motion=motion)  # [2, T, S, S]
    assert float(logits[0, 2][right].mean()) > 0.1 and float(logits[0, 2][left].mean()) < -0.1
    assert float(logits[1, 2][left].mean()) > 0.1 and float(logits[1, 2][right].mean()) < -0.1
    assert float(logits[:, 2, 56:, :8].abs().max()) < 0.02  # the still background
    with pytest.raises(ValueError, match="grid_motion"):
        path(frames, states, grid, index)
    with pytest.raises(ValueError, match="grid input"):
        PixelMaskPath(query_dim=8, grid_dim=0, dim=4, grid_flow=True)
    # in the model a window of frames reads the whole clip's motion, so its logits equal the clip's
    model = tiny_model("llava", "sam", seed=3, pixel_mask_grid_flow=True).eval()
    _randomise(model.pixel_mask_path)
    clip, _ = moving_square_clip()
    batch = model.processor([clip], ["Which object moves to the left?"], answers=[ANSWER_WITH_SPAN])
    seg = torch.randn(1, model.config.hidden_size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        features = model.encode_video(batch["pixel_values"])[0]
        whole = model.pixel_logits(batch["mask_pixel_values"], features, seg)
        part = model.pixel_logits(batch["mask_pixel_values"], features, seg, frames=[1, 2])
    torch.testing.assert_close(part, whole[:, [1, 2]])
    assert not torch.allclose(whole[:, 1], whole[:, 2])


@pytest.mark.parametrize(
    "option",
    [
        {"pixel_mask_motion_match": 8},
        {"span_question": True},
        {"span_question": True, "span_cells": True, "span_cell_flow": True},
        {"span_question": True, "span_motion_match": True},
        {"span_question": True, "span_motion_match": True, "pixel_mask_grid_flow": True},
    ],
)
def test_question_reading_model_predicts_as_it_trains_and_needs_the_question_mask(option):
    model = tiny_model("llava", "sam", seed=4, **option).eval()
    for name in ("video_adapter", "grounding_reader", "pixel_mask_path", "temporal_head"):
        _randomise(getattr(model, name), seed=len(name))
    clip, masks = moving_square_clip()
    question = "Which object moves to the left?"
    batch = model.processor([clip], [question], answers=[ANSWER_WITH_SPAN], masks=[masks], spans=[(1, 3)])
    with torch.no_grad():
        out = model(**batch)
        pred = model.predict(clip, question, mode="template", gate=False)
        other = model.predict(clip, "Which object moves to the right?", mode="template", gate=False)
    # inference builds the same question mask and states: the same span scores as the training forward
    np.testing.assert_allclose(pred.frame_scores, out.span_logits[0].sigmoid().numpy(), atol=1e-4)
    assert not np.allclose(pred.frame_scores, other.frame_scores)  # the direction word reaches the span
    with pytest.raises(ValueError, match="question_mask"):
        model(**{k: v for k, v in batch.items() if k != "question_mask"})


def test_cell_motion_is_estimated_once_per_step_and_once_per_clip(monkeypatch):
    """The pixel path's grid term and the span head's cells read one `cell_motion` of the clips."""
    import mora.model.modeling_mora as modeling

    options = dict(span_question=True, span_cells=True, span_cell_flow=True, span_motion_match=True)
    model = tiny_model("llava", "sam", seed=4, pixel_mask_grid_flow=True, **options).eval()
    _randomise(model.temporal_head, seed=2)
    calls = []

    def counted(pixel_values, grid, *args, **kwargs):
        calls.append(tuple(pixel_values.shape))
        return normal_flow(pixel_values, grid, *args, **kwargs)

    monkeypatch.setattr(modeling, "normal_flow", counted)
    clip, masks = moving_square_clip()
    question = "Which object moves to the left?"
    batch = model.processor([clip], [question], answers=[ANSWER_WITH_SPAN], masks=[masks], spans=[(1, 3)])
    with torch.no_grad():
        out = model(**batch)
    assert len(calls) == 1 and calls[0][:2] == tuple(batch["mask_pixel_values"].shape[:2])
    calls.clear()
    with torch.no_grad():
        pred = model.predict(clip, question, mode="template", gate=True)
    assert len(calls) == 1  # kept on the clip for the span and every decoded window
    np.testing.assert_allclose(pred.frame_scores, out.span_logits[0].sigmoid().numpy(), atol=1e-4)
    # a precomputed estimate gives the same logits as the one computed inside
    features = model.encode_video(batch["pixel_values"])[0]
    motion = model.cell_motion(batch["mask_pixel_values"], features)
    seg = torch.randn(1, model.config.hidden_size)
    with torch.no_grad():
        inner = model.pixel_logits(batch["mask_pixel_values"], features, seg)
        given = model.pixel_logits(batch["mask_pixel_values"], features, seg, cell_motion=motion)
    torch.testing.assert_close(inner, given)
    plain = tiny_model("llava", "sam", seed=4)
    assert not plain.reads_cell_motion and plain.cell_motion(batch["mask_pixel_values"], features) is None


def _square_clip(num_frames: int, speed: int, size: int = 64) -> torch.Tensor:
    """``[1, T, 3, S, S]`` a bright square moving right by ``speed`` pixels per frame on a fixed noisy background."""
    g = torch.Generator().manual_seed(3)
    background = torch.rand(3, size, size, generator=g) * 0.3
    frames = background.expand(num_frames, 3, size, size).clone()
    for t in range(num_frames):
        x0 = 8 + speed * t
        frames[t, :, 24:38, x0 : x0 + 14] = 1.0
    return frames[None]


def test_motion_time_scale_reads_the_same_speed_whatever_the_sampling():
    """The same motion sampled at 13 and 25 frames over a clip: raw estimates differ by the frame gap, estimates
    on a common time scale (`motion_time_scale`) agree."""
    source = _square_clip(25, speed=1)  # 1 px per source frame
    sparse, dense = source[:, ::2], source  # 13 frames (2 px apart), 25 frames (1 px apart)

    def speed(clip: torch.Tensor, reference: int | None) -> float:
        flow = normal_flow(clip, (8, 8))[0, 1:-1, ..., 0] * motion_time_scale(clip.shape[1], reference)
        return flow[flow > 0.1].mean().item()  # dx of the cells the square moves in

    assert speed(sparse, None) > 1.6 * speed(dense, None)  # per sampled-frame gap: twice as fast
    assert speed(sparse, 13) == pytest.approx(speed(dense, 13), rel=0.2)
    assert motion_time_scale(20, 12) == pytest.approx(19 / 11)
    assert motion_time_scale(20, None) == 1.0 and motion_time_scale(1, 12) == 1.0


def test_every_reader_of_the_cell_motion_uses_the_reference_time_scale():
    """The adapter's flow, `cell_motion` (pixel path grid term, span head) and the pixel path's motion match."""
    clip = _square_clip(9, speed=2)
    scale = motion_time_scale(9, 5)  # 2.0
    adapter = VideoAdapter(5, 8, 1, 2, flow_embedding=True, reference_frames=5)  # zero residual at init
    grid = torch.randn(1, 9, 8, 8, 5)
    with torch.no_grad():
        expected = adapter.flow_embed(normal_flow(clip, (8, 8)) * scale / 4)
        torch.testing.assert_close(adapter(grid, clip) - grid, expected)

    options = dict(span_question=True, span_cells=True, span_cell_flow=True, span_motion_match=True)
    plain = tiny_model("llava", "sam", seed=4, pixel_mask_grid_flow=True, **options).eval()
    scaled = tiny_model(
        "llava", "sam", seed=4, pixel_mask_grid_flow=True, motion_reference_frames=5, **options
    )
    features = plain.encode_video(torch.randn(1, 9, 3, 64, 64))[0]
    mask_pix = clip.expand(1, 9, 3, 64, 64)
    raw = plain.cell_motion(mask_pix, features)
    torch.testing.assert_close(scaled.cell_motion(mask_pix, features), raw * scale)
    assert raw.abs().max() > 0.1

    path = PixelMaskPath(16, 5, 8, motion_match=4)
    _randomise(path, seed=1)
    inputs = path.inputs(clip)
    states = torch.randn(1, 16)
    rows = torch.zeros(1, dtype=torch.long)
    once = path._motion_logits(inputs, states, rows, 1, (64, 64))
    twice = path._motion_logits(inputs, states, rows, 1, (64, 64), motion_scale=2.0)
    torch.testing.assert_close(
        twice - once, once - path._motion_logits(inputs, states, rows, 1, (64, 64), 0.0)
    )

    with pytest.raises(ValueError, match="motion_reference_frames"):
        tiny_model("llava", "sam", motion_reference_frames=1)


def test_adapter_flow_direction_gives_slow_and_fast_movers_the_same_embedding():
    """``video_flow_direction``: the adapter's flow embedding of a square moving 1 or 2 px per frame is about the
    same on directions (`motion_direction` of the estimate) and proportional to the speed on displacements."""
    raw = VideoAdapter(5, 8, 1, 2, flow_embedding=True)  # zero residual at init: output - input = embedding
    direction = VideoAdapter(5, 8, 1, 2, flow_embedding=True, direction=True)
    direction.load_state_dict(raw.state_dict())
    grid = torch.zeros(1, 9, 8, 8, 5)

    def moving_cells(adapter: VideoAdapter, speed: int) -> torch.Tensor:
        clip = _square_clip(9, speed=speed)
        with torch.no_grad():
            delta = (
                adapter(grid, clip) - grid - adapter.flow_embed.bias
            )  # [1, T, h, w, d], linear in the input
        flow = normal_flow(clip, (8, 8))[0, 4]  # the middle frame
        cell = flow[..., 0].flatten().argmax()  # the cell moving right the most
        return delta[0, 4].flatten(0, 1)[cell]

    assert moving_cells(raw, 2).norm() > 1.5 * moving_cells(raw, 1).norm()
    ratio = moving_cells(direction, 2).norm() / moving_cells(direction, 1).norm()
    assert 0.8 < ratio < 1.25
    clip = _square_clip(9, speed=1)
    with torch.no_grad():
        expected = direction.flow_embed(motion_direction(normal_flow(clip, (8, 8)) / 4))
        torch.testing.assert_close(direction(grid, clip) - grid, expected)
    with pytest.raises(ValueError, match="direction=True"):
        VideoAdapter(5, 8, 1, 2, direction=True)
    with pytest.raises(ValueError, match="video_flow_direction"):
        tiny_model(
            "llava", "sam", video_flow_direction=True, video_adapter_flow=False, video_flow_embedding=False
        )


def test_pixel_motion_match_on_directions_matches_slow_and_fast_movers_alike():
    """``pixel_mask_motion_direction``: the pixel path's motion match of a question with the cells of a square
    moving 1 or 2 px per frame: proportional to the speed on displacements, about equal on directions."""
    raw = PixelMaskPath(16, 5, 8, motion_match=8)
    direction = PixelMaskPath(16, 5, 8, motion_match=8, motion_direction=True)
    # the question asks for "right": (dx, dy) = (1, 0) from the previous and to the next frame
    with torch.no_grad():
        raw.motion_match.weight.zero_()
        raw.motion_match.bias.copy_(torch.tensor([1.0, 0.0, 1.0, 0.0]))
    direction.load_state_dict(raw.state_dict())
    states = torch.randn(1, 16, generator=torch.Generator().manual_seed(0))
    rows = torch.zeros(1, dtype=torch.long)

    def peak(path: PixelMaskPath, speed: int) -> float:
        inputs = path.inputs(_square_clip(9, speed=speed))
        with torch.no_grad():
            logits = path._motion_logits(inputs, states, rows, 1, (8, 8))[0, 4]  # cells of the middle frame
        return float(logits.max())

    assert peak(raw, 2) > 1.5 * peak(raw, 1) > 0
    assert peak(direction, 1) > 1.8 and 0.9 < peak(direction, 2) / peak(direction, 1) < 1.1  # at most 2
    with pytest.raises(ValueError, match="motion_direction=True"):
        PixelMaskPath(16, 5, 8, motion_direction=True)
    with pytest.raises(ValueError, match="pixel_mask_motion_direction"):
        tiny_model("llava", "sam", pixel_mask_motion_direction=True)
