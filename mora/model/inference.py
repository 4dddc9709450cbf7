"""`predict`: one video + question -> `Prediction` (masks, span, frame scores, text).

mode="generate": greedy decoding with a KV cache; the ``[SEG]``/``[LOC]`` hidden states are read from
the generated sequence (no ``[SEG]`` -> empty masks and a warning). mode="template": the canonical answer
(``constants.ANSWER_WITH_SPAN``) is teacher-forced in one forward pass.
Masks: with SAM2 and propagation="memory", the prompt is decoded on the key frame (highest in-span
probability) and propagated to all frames by memory; "per_frame" decodes every frame with the prompt.

The steps are public for callers that reuse them (the streaming video pipeline, `mora.inference`):
`encode_clip` (frames -> backbone features, once per clip), `ground_clip` (one question -> text,
``[SEG]`` prompts, span scores: a `ClipGrounding`) and `clip_masks` (a grounding -> `Prediction`).
"""

from __future__ import annotations

import functools

import numpy as np
import torch

from mora.constants import ANSWER_WITH_SPAN
from mora.model.heads import MaskPooledSpanHead
from mora.model.prediction import ClipGrounding, EncodedClip, Prediction
from mora.processing.image_ops import logits_to_frames
from mora.utils.logging import get_logger
from mora.visual_prompts import VISUAL_PROMPTS, choose_prompt, prepare_prompted_frames

logger = get_logger("inference")
PREDICT_MODES = ("generate", "template")
DECODE_CHUNK = 8  # frames encoded + decoded by the mask engine at a time in per-frame mode


def check_predict_options(model, mode: str, visual_prompt: str, propagation=None) -> str:
    """Validate the options of `predict`; returns the propagation mode to use."""
    if mode not in PREDICT_MODES:
        raise ValueError(f"mode must be one of {PREDICT_MODES}, got {mode!r}")
    if visual_prompt not in VISUAL_PROMPTS:
        raise ValueError(f"visual_prompt must be one of {VISUAL_PROMPTS}, got {visual_prompt!r}")
    propagation = propagation or model.config.propagation
    if propagation not in ("memory", "per_frame"):
        raise ValueError(f"propagation must be 'memory' or 'per_frame', got {propagation!r}")
    if model.processor is None:
        raise ValueError("model.processor is not set; load the model with from_pretrained or attach one")
    return propagation


@torch.inference_mode()
def predict(
    model,
    frames,
    question: str,
    *,
    gate: bool = True,
    mode: str = "generate",
    propagation=None,
    with_ungated: bool = False,
    visual_prompt: str = "none",
):
    """Grounded answer for one clip.

    Args:
        model: a `MoRAForVideoGrounding` with ``model.processor`` attached.
        frames: ``[T, H, W, 3]`` uint8 array or a list of T PIL images.
        question: the question about the video.
        gate: empty the masks of frames outside the predicted span.
        mode: ``"generate"`` or ``"template"``.
        propagation: ``"memory"`` or ``"per_frame"`` (default: ``model.config.propagation``).
        with_ungated: also return the masks of every frame before span gating (``ungated_masks``), decoded
            per frame in the same pass (the span-gating ablation without a second run).
        visual_prompt: a MotionSight prompt on the frames the language model sees (`mora.visual_prompts`;
            the mask engine keeps the original frames): ``"none"``; ``"blur"`` (motion trails, one pass);
            ``"spotlight"`` / ``"crop"`` (a first pass predicts the masks, their boxes are aggregated over
            time, the backbone's frames are darkened outside / cropped to them, and a second pass answers);
            ``"auto"`` picks per question (`choose_prompt`).

    Returns:
        `Prediction` with masks ``[T, H, W]`` bool, span, frame_scores ``[T]`` and text.
    """
    propagation = check_predict_options(model, mode, visual_prompt, propagation)
    prompt = choose_prompt(question) if visual_prompt == "auto" else visual_prompt
    if prompt == "none":
        clip = encode_clip(model, frames)
    else:
        clip = prompted_clip(model, frames, question, prompt, mode=mode, propagation=propagation)
    grounding = ground_clip(model, clip, question, mode=mode)
    return clip_masks(model, grounding, gate=gate, propagation=propagation, with_ungated=with_ungated)


@torch.inference_mode()
def encode_clip(model, frames) -> EncodedClip:
    """Prepare ``frames`` for the backbone and the mask engine and run `encode_video` once."""
    pixel_values, mask_pixel_values, geometry = model.processor.prepare_frames(frames)
    return _encode(model, frames, pixel_values, mask_pixel_values, geometry)


def _encode(model, frames, pixel_values, mask_pixel_values, geometry) -> EncodedClip:
    pixel_values = pixel_values.unsqueeze(0).to(model.device, model.dtype)  # [1, T, 3, I, I]
    features, motion, llm_idx = model.encode_video(pixel_values)
    return EncodedClip(frames, pixel_values, mask_pixel_values, geometry, features, motion, llm_idx)


def prompted_clip(
    model,
    frames,
    question: str,
    prompt: str,
    *,
    mode: str,
    propagation: str | None,
    base: EncodedClip | None = None,
) -> EncodedClip:
    """The clip with a MotionSight ``prompt`` on the backbone's frames (the mask engine keeps the originals).

    ``spotlight`` / ``crop`` run a first `predict` pass whose gated masks give the boxes. ``base``: the clip
    already prepared without a prompt (its mask-engine frames and geometry are reused).
    """
    video = np.stack([np.asarray(f.convert("RGB")) if hasattr(f, "convert") else f for f in frames])
    if base is None:
        _, mask_pixel_values, geometry = model.processor.prepare_frames(frames)
    else:
        mask_pixel_values, geometry = base.mask_pixel_values, base.geometry
    first = None
    if prompt in ("spotlight", "crop"):  # the first pass's answer, gated by its own span
        first = predict(model, video, question, gate=True, mode=mode, propagation=propagation).masks
    pixel_values = model.processor.prepare_frames(prepare_prompted_frames(video, prompt, first))[0]
    clip = _encode(model, frames, pixel_values, mask_pixel_values, geometry)
    clip.engine_cache = None if base is None else base.engine_cache  # the same mask-engine frames
    return clip


def prompt_length(model, question: str, num_frames: int) -> int:
    """Tokens of the prompt for ``question`` about a clip of ``num_frames`` frames (placeholders expanded)."""
    return len(model.processor.encode_sample(question, None, num_frames).ids)


@torch.inference_mode()
def ground_clip(
    model,
    clip: EncodedClip,
    question: str,
    *,
    mode: str = "generate",
    visual_prompt: str = "none",
    propagation: str | None = None,
) -> ClipGrounding:
    """Answer ``question`` about an encoded clip: text, ``[SEG]`` prompts and span scores (no masks yet).

    A visual prompt other than ``"none"`` re-encodes the backbone frames of this question (spotlight / crop
    after a first pass whose gated masks give the boxes); the mask engine keeps the original frames.
    """
    prompt = choose_prompt(question) if visual_prompt == "auto" else visual_prompt
    if prompt != "none":
        clip = prompted_clip(
            model, clip.frames, question, prompt, mode=mode, propagation=propagation, base=clip
        )
    processor = model.processor
    T = clip.num_frames
    answer = ANSWER_WITH_SPAN if mode == "template" else None
    encoded = processor.encode_sample(question, answer, T)
    input_ids = torch.tensor([encoded.ids], device=model.device)
    embeds, lm_kwargs = model.build_inputs_embeds(input_ids, clip.pixel_values, clip.features, clip.llm_idx)
    if mode == "template":
        mask = torch.ones_like(input_ids)
        hidden = model.language_model_hidden(embeds, input_ids, mask, len(clip.llm_idx), lm_kwargs)
        sequence, answer_start = input_ids, prompt_length(model, question, T)
    else:
        sequence, hidden = greedy_generate(model, input_ids, embeds, len(clip.llm_idx), lm_kwargs)
        answer_start = input_ids.shape[1]
    text = processor.decode(sequence[0, answer_start:].tolist())
    question_mask = torch.zeros_like(sequence)  # [1, L + G]: generated tokens are not the question
    question_mask[0, : len(encoded.question)] = torch.tensor(encoded.question, dtype=torch.long)
    return _ground(model, sequence, hidden, clip, text, question_mask)


def greedy_generate(
    model, input_ids: torch.Tensor, embeds: torch.Tensor, num_llm_frames: int, lm_kwargs=None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Greedy decoding (B = 1) with a KV cache (``lm_kwargs``: the prompt pass's extra inputs from
    ``model.build_inputs_embeds``, e.g. Qwen3-VL's DeepStack features; generated tokens are text).

    Returns:
        the full sequence ``[1, L + G]`` (prompt + generated ids) and the last hidden states of every
        position ``[1, L + G, D]`` (a generated token's own state is computed when it is fed back; a
        final eos is not fed back, so then the states stop one position short).
    """
    cfg = model.config
    adapter = model.adapter
    mask = torch.ones_like(input_ids)
    position_ids = adapter.position_ids(input_ids, mask, num_llm_frames)
    out = adapter.language_model(
        inputs_embeds=embeds,
        attention_mask=mask,
        position_ids=position_ids,
        use_cache=True,
        **(lm_kwargs or {}),
    )
    cache, states, tokens = out.past_key_values, [out.last_hidden_state], []
    for step in range(cfg.max_new_tokens):
        next_id = adapter.lm_head(states[-1][:, -1]).argmax(dim=-1)  # [1]
        tokens.append(int(next_id))
        if int(next_id) == cfg.eos_token_id:
            break
        mask = torch.cat([mask, mask.new_ones(1, 1)], dim=1)
        out = adapter.language_model(
            inputs_embeds=adapter.embed_tokens(next_id.view(1, 1)),
            attention_mask=mask,
            position_ids=adapter.next_position_ids(position_ids, step),
            past_key_values=cache,
            use_cache=True,
        )
        cache = out.past_key_values
        states.append(out.last_hidden_state)
    generated = torch.tensor([tokens], dtype=input_ids.dtype, device=input_ids.device)
    sequence = torch.cat([input_ids, generated], dim=1)
    hidden = torch.cat(states, dim=1)  # [1, L + G, D], or L + G - 1 when the final eos was not fed back
    return sequence, hidden


def _ground(
    model, sequence, hidden, clip: EncodedClip, text: str, question_mask: torch.Tensor
) -> ClipGrounding:
    """``[SEG]``/``[LOC]`` states of ``sequence`` -> prompts, span scores (and every frame's logits when the
    mask-pooled span head needs them).

    With the mask-pooled span head (``config.span_head="mask_pooled"``) the masks of every frame are decoded
    first and the span is scored from them; with the token head the span comes first.
    """
    cfg = model.config
    features, motion = clip.features, clip.motion
    T = clip.num_frames
    seg_ids, loc_ids = _single(sequence, cfg.seg_token_id), _single(sequence, cfg.loc_token_id)
    scores = np.full(T, np.nan, dtype=np.float32)
    located = loc_ids is not None and _state_available(hidden, loc_ids + cfg.loc_hidden_offset)
    segmented = seg_ids is not None and _state_available(hidden, seg_ids + cfg.seg_hidden_offset)
    if not located:
        logger.warning("no [LOC] token in the answer %r: the span is unknown and masks are not gated", text)
    if not segmented:
        logger.warning("no [SEG] token in the answer %r: returning empty masks", text)
    zero = hidden.new_zeros(1, hidden.shape[-1])
    seg_state = hidden[:, seg_ids + cfg.seg_hidden_offset] if segmented else zero  # [1, D]
    loc_state = hidden[:, loc_ids + cfg.loc_hidden_offset] if located else zero
    seg_state, loc_state = model.read_video(seg_state, loc_state, features, None, hidden, sequence)
    question_state = model.question_states(hidden, question_mask)  # [1, D] | None
    prompts = model.engine_prompts(seg_state, features, motion)[0]  # [T, P, C]
    pooled = isinstance(model.temporal_head, MaskPooledSpanHead)
    all_logits = (
        _decode_frames(
            model,
            _pix(model, clip),
            prompts,
            features,
            list(range(T)),
            seg_state,
            clip.engine_cache,
            question_state,
            _cell_motion(model, clip),
        )
        if pooled
        else None
    )
    span = None
    if located:
        span_masks = None if all_logits is None else all_logits[None]
        span_logits = model.span_logits_from(
            loc_state,
            features,
            motion,
            span_masks,
            question_state,
            None,
            _pix(model, clip)[None],
            _cell_motion(model, clip),
        )
        probs = span_logits.sigmoid()[0]  # [T]
        scores = probs.float().cpu().numpy()
        span = span_from_scores(scores, cfg.span_threshold)
    return ClipGrounding(
        text, segmented, located, seg_state, prompts, scores, span, all_logits, clip, question_state
    )


def _pix(model, clip: EncodedClip) -> torch.Tensor:
    return clip.mask_pixel_values.to(model.device)


def _cell_motion(model, clip: EncodedClip) -> torch.Tensor | None:
    """``[1, T, h, w, 4]`` the clip's `cell_motion`, computed on first use and kept on the clip."""
    if clip.cell_motion is None:
        clip.cell_motion = model.cell_motion(_pix(model, clip)[None], clip.features)
    return clip.cell_motion


@torch.inference_mode()
def clip_masks(
    model,
    grounding: ClipGrounding,
    *,
    gate: bool = True,
    propagation: str | None = None,
    with_ungated: bool = False,
) -> Prediction:
    """Masks of every clip frame for a grounded question (gated by its span when ``gate``)."""
    g, clip = grounding, grounding.clip
    propagation = propagation or model.config.propagation
    T = clip.num_frames
    H, W = clip.geometry.orig_size
    empty = np.zeros((T, H, W), dtype=bool)
    pix = _pix(model, clip)
    decode = functools.partial(
        _decode_frames,
        model,
        pix,
        g.prompts,
        clip.features,
        seg_state=g.seg_state,
        cache=clip.engine_cache,
        question_state=g.question_state,
        cell_motion=_cell_motion(model, clip),
    )
    all_logits = g.all_logits
    if all_logits is None and with_ungated and g.segmented:
        all_logits = decode(list(range(T)))
    all_masks = None if all_logits is None else _to_masks(all_logits, clip.geometry)  # before gating
    ungated = all_masks if with_ungated else None
    span, scores, text = g.span, g.scores, g.text
    if not g.segmented:
        return Prediction(empty, span, scores, text)
    if gate and g.located and span is None:  # [LOC] says no frame is inside the motion span
        return Prediction(empty, None, scores, text, ungated)
    frames = gated_frames(T, span if gate else None)
    if propagation == "memory" and model.config.mask_engine_kind == "sam2":
        key = key_frame(scores, frames)
        logits = model.mask_engine.propagate(
            pix, g.prompts[key], key_frames=[key], dense_embeds=key_dense_prompt(model, g, key)
        )
        masks = _to_masks(logits, clip.geometry)
    elif all_masks is not None:
        masks = all_masks.copy()
    else:
        masks = _to_masks(decode(frames), clip.geometry)
    if gate and span is not None:
        outside = np.ones(T, dtype=bool)
        outside[span[0] : span[1] + 1] = False
        masks[outside] = False
    return Prediction(masks, span, scores, text, ungated)


def gated_frames(num_frames: int, span: tuple[int, int] | None) -> list[int]:
    """The frames whose masks are needed: the span's when gating by a span, else all."""
    return list(range(num_frames)) if span is None else list(range(span[0], span[1] + 1))


def key_frame(scores: np.ndarray, frames: list[int]) -> int:
    """The SAM2 conditioning frame: the highest in-span probability among ``frames`` (the first when unknown)."""
    if np.isnan(scores).all():
        return int(frames[0])
    return int(frames[int(np.nanargmax(scores[frames]))])


def key_dense_prompt(model, grounding: ClipGrounding, key: int) -> torch.Tensor | None:
    """``[T, C, h, w]`` dense prompts with only the key frame's row set (None when the model has none)."""
    clip = grounding.clip
    pix = _pix(model, clip)
    _, key_dense = _window_prompts(model, pix, [key], clip.features, clip.engine_cache)
    if key_dense is None:
        return None
    dense = key_dense.new_zeros(clip.num_frames, *key_dense.shape[1:])
    dense[key] = key_dense[0]
    return dense


def _to_masks(logits: torch.Tensor, geometry) -> np.ndarray:
    """``[T, S, S]`` canvas logits -> ``[T, H, W]`` bool masks at the input resolution."""
    return (logits_to_frames(logits.float(), geometry) > 0).cpu().numpy()


def _decode_frames(
    model,
    pix,
    prompts,
    features,
    frames: list[int],
    seg_state=None,
    cache: dict | None = None,
    question_state=None,
    cell_motion=None,
) -> torch.Tensor:
    """``[T, S, S]`` logits of one clip ``pix [T, 3, S, S]``: ``frames`` decoded in chunks (bounded memory),
    the others -1 (``seg_state [1, D]``: the ``[SEG]`` state, ``question_state [1, D]`` and ``cell_motion
    [1, T, h, w, 4]``, for the pixel mask path; ``cache``: see `_window_prompts`)."""
    logits = torch.full((pix.shape[0], *pix.shape[-2:]), -1.0, device=model.device)  # [T, S, S]
    for start in range(0, len(frames), DECODE_CHUNK):
        chunk = frames[start : start + DECODE_CHUNK]
        feats, dense = _window_prompts(model, pix, chunk, features, cache)
        logits[chunk] = model.mask_engine.decode(feats, prompts[chunk], dense)
        pixel = model.pixel_logits(
            pix[None],
            features,
            seg_state,
            frames=chunk,
            question_states=question_state,
            cell_motion=cell_motion,
        )  # [1, n, S, S] | None
        if pixel is not None:
            logits[chunk] += pixel[0].to(logits.device)
    return logits


def _window_prompts(model, pix: torch.Tensor, frames: list[int], features=None, cache: dict | None = None):
    """Engine features and dense prompts (`dense_prompts`: motion and video grid) of the consecutive
    ``frames`` of a clip ``pix [T, 3, S, S]`` (``features``: the clip's `encode_video` output, batch 1).

    With a motion prompt, the frames are encoded with their motion partners (``model.motion_stride(T)``
    frames away on each side, where the clip has them), so their prompts equal those of the whole clip.
    ``cache`` (a dict, optional) keeps the engine features of each window for the next call on the same clip.
    Returns (features of ``frames``, ``[len(frames), C, h, w]`` or None when the model has no dense prompt).
    """
    stride = model.motion_stride(pix.shape[0])
    reach = stride if model.motion_dense_prompt is not None else 0
    lo, hi = max(0, frames[0] - reach), min(pix.shape[0], frames[-1] + reach + 1)
    window = pix[lo:hi]
    feats = None if cache is None else cache.get((lo, hi))
    if feats is None:
        feats = model.engine_features(window)
        if cache is not None:
            cache[(lo, hi)] = feats
    grid = None if features is None else features.grid[:, lo:hi]
    dense = model.dense_prompts(
        feats, window.unsqueeze(0), stride, video_grid=grid
    )  # [hi - lo, C, h, w] | None
    rows = [f - lo for f in frames]
    return feats.select(rows), (None if dense is None else dense[rows])


def _single(sequence: torch.Tensor, token_id: int) -> int | None:
    """Position of the first ``token_id`` in ``sequence [1, L]`` (None if absent)."""
    hits = torch.nonzero(sequence[0] == token_id)
    return int(hits[0]) if len(hits) else None


def _state_available(hidden: torch.Tensor, pos: int) -> bool:
    return 0 <= pos < hidden.shape[1]


def span_from_scores(scores: np.ndarray, threshold: float) -> tuple[int, int] | None:
    """The predicted span: inclusive (first, last) of the best run of consecutive frames whose in-span
    probability exceeds ``threshold`` (the run with the largest summed probability), None when no frame does.

    A span is one interval: frames above the threshold separated by frames below it are not bridged (on the
    synthetic benchmark the tiny default's J&F rose 0.678 -> 0.689 against first-to-last, train/README.md).

    Args:
        scores: ``[T]`` in-span probabilities (NaN counts as below the threshold).
    """
    inside = np.nan_to_num(np.asarray(scores, dtype=float), nan=0.0) > threshold
    best, best_mass, start = None, -1.0, None
    for t in range(len(inside) + 1):
        if t < len(inside) and inside[t]:
            start = t if start is None else start
        elif start is not None:
            mass = float(np.nansum(np.asarray(scores, dtype=float)[start:t]))
            if mass > best_mass:
                best, best_mass = (start, t - 1), mass
            start = None
    return best
