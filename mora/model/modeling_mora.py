"""`MoRAForVideoGrounding`: a video VLM whose ``[SEG]`` state prompts a mask engine and whose ``[LOC]``
state scores every frame for the motion span.

Forward, top to bottom:
  1. per-frame visual features of every frame (backbone adapter) and motion tokens of consecutive frames;
  2. the language model's input: token embeddings with ``<video>`` / ``<motion>`` placeholders replaced by
     the video tokens of the ``config.num_frames`` sampled frames and their motion tokens;
  3. the language model -> logits and last hidden states;
  4. ``[SEG]`` state -> seg projector -> prompt -> mask engine, decoded on every frame (with
     ``config.use_motion_dense_prompt``, each frame also gets a dense motion prompt built from the engine's
     image embeddings and frames of its neighbours, `MotionDensePrompt`);
  5. ``[LOC]`` state -> temporal head over every frame's visual + motion tokens -> span logits;
  6. losses (mora.model.losses) and `graph_completion_loss` so every trainable parameter is in the graph.
"""

from __future__ import annotations

import contextlib
import os
from typing import Any

import torch
from transformers import AutoModel, PreTrainedModel

from mora.configuration_mora import MoRAConfig
from mora.constants import IGNORE_INDEX
from mora.model import losses as L
from mora.model.backbones import VisualFeatures, build_adapter, build_vlm
from mora.model.grounding_reader import GroundingReader
from mora.model.heads import (
    FramePromptReader,
    MaskPooledSpanHead,
    SegProjector,
    TemporalHead,
    temporal_frame_tokens,
)
from mora.model.inference import predict
from mora.model.mask_engines import build_mask_engine
from mora.model.mask_engines.base import FrameFeatures
from mora.model.motion_prompt import MotionDensePrompt
from mora.model.motion_tokens import MotionTokenizer
from mora.model.outputs import MoRAOutput
from mora.model.pixel_mask_path import PixelMaskPath
from mora.model.trainable import LoraSettings, inject_lora
from mora.model.video_adapter import VideoAdapter, motion_time_scale, normal_flow
from mora.model.video_dense_prompt import VideoDensePrompt
from mora.processing.processing_mora import MoRAProcessor
from mora.processing.visual_layout import sample_frame_indices
from mora.utils.logging import get_logger

logger = get_logger("model")


class MoRAPreTrainedModel(PreTrainedModel):
    config_class = MoRAConfig
    config: MoRAConfig
    base_model_prefix = "mora"
    supports_gradient_checkpointing = True
    _supports_sdpa = True
    _no_split_modules: list[str] = []

    def _init_weights(self, module: torch.nn.Module) -> None:
        # Every submodule initialises itself in its constructor (transformers sub-models, SAM engines,
        # torch layers of the heads); weights are loaded afterwards.
        return


class MoRAForVideoGrounding(MoRAPreTrainedModel):
    """MoRA: video question -> text, per-frame masks (``[SEG]``) and motion span (``[LOC]``).

    Submodules (state-dict prefixes): ``vlm`` (transformers VLM), ``mask_engine``, ``seg_projector``,
    ``temporal_head`` (`TemporalHead` or `MaskPooledSpanHead`, ``config.span_head``), ``motion_tokenizer``
    (None when motion tokens are off), ``frame_prompt_reader`` (None without frame prompts),
    ``motion_dense_prompt`` (None when ``use_motion_dense_prompt`` is off), ``video_adapter``,
    ``grounding_reader``, ``video_dense_prompt`` and ``pixel_mask_path`` (None when their switches are off).

    Videos and questions: ``pixel_values`` holds V videos and ``input_ids`` B questions; ``video_index [B]``
    says which video each question is about (default: question b, video b). Every video is encoded once
    (vision tower, video adapter, mask-engine image encoder) for all of its questions.
    """

    def __init__(self, config: MoRAConfig, *, vlm: PreTrainedModel | None = None, mask_engine=None) -> None:
        """``vlm`` / ``mask_engine``: already built (e.g. loaded with base weights, `mora.assemble`) for the
        configs in ``config``; built with random weights when None."""
        super().__init__(config)
        self.vlm = vlm if vlm is not None else build_vlm(config.vlm_config)
        options = {}
        if config.backbone_family == "llava":
            options = {"video_pooling": config.video_pooling, "video_pool_grid": config.video_pool_grid}
        self.adapter = build_adapter(config.backbone_family, self.vlm, config.backbone_image_size, **options)
        self.mask_engine = (
            mask_engine if mask_engine is not None else build_mask_engine(config.mask_engine_config)
        )
        hidden = config.hidden_size
        self.seg_projector = SegProjector(hidden, self.mask_engine.prompt_dim)
        self.temporal_head = (
            TemporalHead(hidden, config.temporal_head_dim)
            if config.span_head == "tokens"
            else MaskPooledSpanHead(
                hidden,
                config.temporal_head_dim,
                config.span_question,
                config.span_cells,
                config.span_cell_flow,
                config.span_motion_match,
                config.span_motion_direction,
            )
        )
        self.frame_prompt_reader = (
            FramePromptReader(hidden, config.temporal_head_dim, self.mask_engine.prompt_dim)
            if config.frame_prompts
            else None
        )
        self.motion_tokenizer = (
            MotionTokenizer(self.adapter.motion_input_dim, hidden, config.motion_grid)
            if config.use_motion_tokens
            else None
        )
        # built last so that the other modules' random init does not depend on the switches
        engine = self.mask_engine
        self.motion_dense_prompt = (
            MotionDensePrompt(
                engine.prompt_dim, engine.embedding_size, engine.image_size, config.motion_dense_prompt_dim
            )
            if config.use_motion_dense_prompt
            else None
        )
        grid_dim = self.adapter.motion_input_dim
        self.video_adapter = (
            VideoAdapter(
                grid_dim,
                config.video_adapter_dim,
                config.video_adapter_layers,
                config.video_adapter_heads,
                config.video_adapter_differences,
                config.video_adapter_flow,
                config.video_flow_embedding,
                config.motion_reference_frames,
                config.video_flow_direction,
            )
            if config.video_adapter_layers
            else None
        )
        self.grounding_reader = (
            GroundingReader(hidden, config.grounding_reader_layers, config.grounding_reader_heads)
            if config.grounding_reader_layers
            else None
        )
        self.video_dense_prompt = (
            VideoDensePrompt(grid_dim, engine.prompt_dim, engine.embedding_size)
            if config.use_video_dense_prompt
            else None
        )
        self.pixel_mask_path = (
            PixelMaskPath(
                hidden,
                grid_dim,
                config.pixel_mask_dim,
                config.pixel_mask_differences,
                config.pixel_mask_stem,
                config.pixel_mask_motion_match,
                config.pixel_mask_grid_flow,
                config.pixel_mask_grid_direction,
                config.pixel_mask_motion_direction,
            )
            if config.pixel_mask_dim
            else None
        )
        self.processor = None  # attached by from_pretrained when a processor is saved beside the weights
        if config.lora:
            inject_lora(self, LoraSettings(**config.lora))
        self.post_init()

    # ------------------------------------------------------------------ embeddings
    def get_input_embeddings(self) -> torch.nn.Module:
        return self.vlm.get_input_embeddings()

    def get_output_embeddings(self) -> torch.nn.Module:
        return self.vlm.get_output_embeddings()

    def resize_token_embeddings(self, new_num_tokens: int, **kwargs: Any) -> torch.nn.Module:
        """Grow (or shrink) the vocabulary of the language model, e.g. to ``len(processor.tokenizer)``
        after MoRA's special tokens were added to a pretrained tokenizer."""
        embeddings = self.vlm.resize_token_embeddings(new_num_tokens, **kwargs)
        self.config.vlm_config.text_config.vocab_size = embeddings.weight.shape[0]
        return embeddings

    # ------------------------------------------------------------------ inputs
    def motion_stride(self, num_frames: int) -> int:
        """Frame distance s of the motion pairs the heads see on a clip of ``num_frames`` frames.

        The language model sees ``config.num_frames`` frames spread over the clip, and training clips
        usually have that many frames; on a longer clip (e.g. GroundMoRe's 20 evaluation frames) the heads
        compare frames ``round(T / config.num_frames)`` apart, so that motion tokens and dense motion prompts
        describe the same time scale at training and evaluation.
        """
        return max(1, int(num_frames / self.config.num_frames + 0.5))

    def encode_video(
        self, pixel_values: torch.Tensor
    ) -> tuple[VisualFeatures, torch.Tensor | None, list[int]]:
        """Per-frame features and motion tokens of every frame, and the frames the LM sees.

        Args:
            pixel_values: ``[V, T, 3, I, I]`` backbone frames of V videos.

        Returns:
            features (``grid [V, T, h', w', d]``, ``tokens [V, T, n, D]``; mixed across space and time by the
            video adapter when it is on), motion tokens ``[V, T-s, g*g, D]`` of the frame pairs ``(t, t+s)``,
            s = `motion_stride` (None when off), and the sampled frame indices (``T_llm`` of them).
        """
        if pixel_values.ndim != 5:
            raise ValueError(f"pixel_values must be [V, T, 3, I, I], got {tuple(pixel_values.shape)}")
        features = self.adapter.frame_features(pixel_values)
        if self.video_adapter is not None:
            grid = self.video_adapter(features.grid, pixel_values)
            features = VisualFeatures(grid=grid, tokens=self.adapter.tokens_from_grid(grid))
        T = pixel_values.shape[1]
        motion = None
        if self.motion_tokenizer is not None:
            motion = self.motion_tokenizer(features.grid, self.motion_stride(T))
        llm_idx = sample_frame_indices(T, self.config.num_frames)
        return features, motion, llm_idx

    def build_inputs_embeds(
        self,
        input_ids: torch.Tensor,
        pixel_values: torch.Tensor,
        features: VisualFeatures,
        llm_idx: list[int],
        video_index: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, dict[str, Any]]:
        """``[B, L, D]`` token embeddings with the video and motion placeholders filled in, and the keyword
        arguments the language model reads beside them on the prompt pass (`language_model_hidden`,
        `greedy_generate`): Qwen3-VL's DeepStack features of the video positions; empty for other families.

        ``pixel_values`` / ``features`` hold V videos; ``video_index [B]`` picks each question's (default:
        question b reads video b).
        """
        cfg = self.config
        cfg.require_token_ids()
        index = self._video_index(video_index, input_ids.shape[0], pixel_values.shape[0])
        llm_features = VisualFeatures(grid=features.grid[:, llm_idx], tokens=features.tokens[:, llm_idx])
        video, layer_features = self.adapter.video_inputs(pixel_values[:, llm_idx], llm_features)
        video = video[index]  # [B, N_v, D]
        vocab = self.get_input_embeddings().weight.shape[0]
        if int(input_ids.max()) >= vocab:
            raise ValueError(
                f"input_ids reach id {int(input_ids.max())} but the language model has {vocab} embeddings; "
                "call model.resize_token_embeddings(len(processor.tokenizer))"
            )
        embeds = self.adapter.embed_tokens(input_ids)  # [B, L, D]
        embeds = _scatter_placeholders(embeds, input_ids, cfg.video_token_id, video, "video")
        if self.motion_tokenizer is not None:
            motion = self.motion_tokenizer(llm_features.grid)[index]  # [B, T_llm-1, g*g, D]
            embeds = _scatter_placeholders(
                embeds, input_ids, cfg.motion_token_id, motion.flatten(1, 2), "motion"
            )
        elif bool((input_ids == cfg.motion_token_id).any()):
            raise ValueError(
                "input_ids contain <motion> placeholders but the config has use_motion_tokens=False"
            )
        lm_kwargs = self.adapter.language_model_kwargs(
            input_ids == cfg.video_token_id, [f[index.to(f.device)] for f in layer_features]
        )
        return embeds, lm_kwargs

    @staticmethod
    def _video_index(video_index: torch.Tensor | None, num_questions: int, num_videos: int) -> torch.Tensor:
        """``[B]`` long: the video of each question (validated against V)."""
        if video_index is None:
            if num_questions != num_videos:
                raise ValueError(
                    f"{num_questions} questions and {num_videos} videos: pass video_index to say which "
                    "video each question is about"
                )
            return torch.arange(num_questions)
        video_index = torch.as_tensor(video_index, dtype=torch.long).flatten().cpu()
        if video_index.numel() != num_questions:
            raise ValueError(f"video_index has {video_index.numel()} entries for {num_questions} questions")
        if num_questions and not (0 <= int(video_index.min()) and int(video_index.max()) < num_videos):
            raise ValueError(f"video_index {video_index.tolist()} is outside the {num_videos} videos given")
        return video_index

    def language_model_hidden(
        self,
        inputs_embeds: torch.Tensor,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        num_llm_frames: int,
        lm_kwargs: dict[str, Any] | None = None,
    ) -> torch.Tensor:
        """``[B, L, D]`` last hidden states of the language model (``lm_kwargs``: from `build_inputs_embeds`)."""
        position_ids = self.adapter.position_ids(input_ids, attention_mask, num_llm_frames)
        out = self.adapter.language_model(
            inputs_embeds=inputs_embeds,
            attention_mask=attention_mask,
            position_ids=position_ids,
            use_cache=False,
            **(lm_kwargs or {}),
        )
        return out.last_hidden_state

    # ------------------------------------------------------------------ heads
    def token_states(
        self, hidden: torch.Tensor, input_ids: torch.Tensor, token_id: int, offset: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Hidden states at one special token per sample.

        Returns:
            states ``[B, D]`` (zeros for samples without the token) and ``has [B]`` bool; raises
            ValueError when a sample has more than one such token.
        """
        is_token = input_ids == token_id  # [B, L]
        counts = is_token.sum(dim=1)
        if bool((counts > 1).any()):
            row = int(torch.nonzero(counts > 1)[0])
            raise ValueError(
                f"sample {row} has {int(counts[row])} tokens of id {token_id}; expected at most 1"
            )
        has = counts == 1
        pos = is_token.float().argmax(dim=1) + offset  # [B]
        pos = pos.clamp(min=0)
        states = hidden[torch.arange(hidden.shape[0], device=hidden.device), pos]  # [B, D]
        return states * has.unsqueeze(-1).to(states.dtype), has

    def read_video(
        self,
        seg_states: torch.Tensor,
        loc_states: torch.Tensor,
        features: VisualFeatures,
        video_index: torch.Tensor | None = None,
        hidden: torch.Tensor | None = None,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``[SEG]`` and ``[LOC]`` states ``[B, D]`` after the `GroundingReader` read their video's grid
        tokens (``features`` of V videos; unchanged when the reader is off).

        ``hidden [B, L, D]`` with ``input_ids`` (and ``attention_mask``) ``[B, L]``: the language model's states;
        the reader also attends to those of the text (not the video / motion placeholders, not padding).
        """
        if self.grounding_reader is None:
            return seg_states, loc_states
        index = self._video_index(video_index, seg_states.shape[0], features.tokens.shape[0])
        queries = torch.stack([seg_states, loc_states], dim=1)  # [B, 2, D]
        text_mask = None
        if hidden is not None:
            ids = input_ids[:, : hidden.shape[1]].to(hidden.device)
            text_mask = (ids != self.config.video_token_id) & (ids != self.config.motion_token_id)
            if attention_mask is not None:
                text_mask &= attention_mask[:, : hidden.shape[1]].to(hidden.device, torch.bool)
        read = self.grounding_reader(queries, features.tokens, index.to(queries.device), hidden, text_mask)
        return read[:, 0].to(seg_states.dtype), read[:, 1].to(loc_states.dtype)

    def engine_features(self, mask_pixel_values: torch.Tensor):
        """Mask-engine features of ``[BT, 3, S, S]`` frames (no autograd when its encoder is frozen)."""
        frozen = not any(
            p.requires_grad for m in self.mask_engine.image_encoder_modules() for p in m.parameters()
        )
        with torch.no_grad() if frozen else contextlib.nullcontext():
            return self.mask_engine.encode(mask_pixel_values)

    def engine_prompts(
        self, seg_states: torch.Tensor, features: VisualFeatures, motion: torch.Tensor | None
    ) -> torch.Tensor:
        """Mask-engine prompts of every frame from ``[SEG]`` states ``[B, D]`` (features of the same B).

        Returns:
            ``[B, T, P, C]``: the projected ``[SEG]`` state (P = 1), plus the frame's readout token when
            ``config.frame_prompts`` (P = 2).
        """
        B, T = features.tokens.shape[:2]
        seg = self.seg_projector(seg_states)  # [B, C]
        prompts = seg[:, None, None, :].expand(B, T, 1, seg.shape[-1])  # [B, T, 1, C]
        if self.frame_prompt_reader is None:
            return prompts
        frame_tokens = temporal_frame_tokens(features.tokens, motion)  # [B, T, n', D]
        readout = self.frame_prompt_reader(seg_states, frame_tokens).to(seg.dtype)  # [B, T, C]
        return torch.cat([prompts, readout.unsqueeze(2)], dim=2)  # [B, T, 2, C]

    def decode_masks(
        self,
        mask_pixel_values: torch.Tensor,
        prompts: torch.Tensor,
        features: VisualFeatures | None = None,
        video_index: torch.Tensor | None = None,
        seg_states: torch.Tensor | None = None,
        question_states: torch.Tensor | None = None,
        cell_motion: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Decode every frame of every question with its prompts.

        Args:
            mask_pixel_values: ``[V, T, 3, S, S]`` (each video's frames are encoded once).
            prompts: ``[B, T, P, C]`` (from `engine_prompts`).
            features: the videos' `encode_video` features (for the video dense prompt).
            video_index: ``[B]`` the video of each question (default: question b, video b).
            seg_states: ``[B, D]`` the ``[SEG]`` states the prompts came from (the `PixelMaskPath` query;
                required when the path is on).
            question_states: ``[B, D]`` `question_states` of each question (required when the path matches
                the question against motion, ``config.pixel_mask_motion_match``).
            cell_motion: ``[V, T, h, w, 4]`` `cell_motion` of the clips (computed here when None).

        Returns:
            mask logits ``[B, T, S, S]`` float32.
        """
        V, T = mask_pixel_values.shape[:2]
        B = prompts.shape[0]
        index = self._video_index(video_index, B, V)
        feats = self.engine_features(mask_pixel_values.flatten(0, 1))
        dense = self.dense_prompts(
            feats, mask_pixel_values, video_grid=None if features is None else features.grid
        )
        rows = (index[:, None] * T + torch.arange(T)).flatten()  # [B*T] frames of each question
        if not torch.equal(rows, torch.arange(V * T)):
            feats = feats.select(rows)
            dense = None if dense is None else dense[rows.to(dense.device)]
        pixel = self.pixel_logits(
            mask_pixel_values,
            features,
            seg_states,
            index,
            question_states=question_states,
            cell_motion=cell_motion,
        )
        logits = self.mask_engine.decode(feats, prompts.flatten(0, 1), dense)  # [B*T, S, S]
        logits = logits.view(B, T, *logits.shape[-2:])
        return logits if pixel is None else logits + pixel.to(logits.device)

    def pixel_logits(
        self,
        mask_pixel_values: torch.Tensor,
        features: VisualFeatures | None,
        seg_states: torch.Tensor | None,
        video_index: torch.Tensor | None = None,
        frames: list[int] | None = None,
        question_states: torch.Tensor | None = None,
        cell_motion: torch.Tensor | None = None,
    ) -> torch.Tensor | None:
        """``[B, T', S, S]`` logits of the `PixelMaskPath` (None when it is off).

        Args:
            mask_pixel_values: ``[V, T, 3, S, S]`` whole clips.
            features: the videos' `encode_video` features of the same T frames (the grid input).
            seg_states: ``[B, D]`` the ``[SEG]`` state of each question (after the grounding reader).
            video_index: ``[B]`` the video of each question (default: question b, video b).
            frames: decode these T' frames of the clips only (default: all T), e.g. a window at inference.
            question_states: ``[B, D]`` `question_states` (for the path's motion match, when it has one).
            cell_motion: ``[V, T, h, w, 4]`` `cell_motion` of the whole clips (computed here when None and the
                path reads it).
        """
        if self.pixel_mask_path is None:
            return None
        if seg_states is None:
            raise ValueError("the pixel mask path needs the [SEG] states (seg_states [B, D])")
        inputs = self.pixel_mask_path.inputs(
            mask_pixel_values.to(seg_states.device), frames
        )  # [V, T', c, S, S]
        grid = None if features is None else features.grid
        if frames is not None and grid is not None:
            grid = grid[:, frames]
        index = None if video_index is None else torch.as_tensor(video_index)
        motion = None
        if self.pixel_mask_path.grid_flow is not None and grid is not None:
            # the whole clips' motion, so a window of frames reads the same as the clip
            if cell_motion is None:
                cell_motion = self.cell_motion(mask_pixel_values, features)
            motion = cell_motion.to(seg_states.device)
            motion = motion if frames is None else motion[:, frames]  # [V, T', h, w, 4]
        return self.pixel_mask_path(
            inputs,
            seg_states,
            grid,
            index,
            question_states,
            motion,
            motion_scale=self.motion_time_scale(mask_pixel_values.shape[1]),
        )

    @property
    def _span_reads_motion(self) -> bool:
        head = self.temporal_head
        return isinstance(head, MaskPooledSpanHead) and (
            head.cell_flow is not None or head.motion_match is not None
        )

    @property
    def reads_cell_motion(self) -> bool:
        """Whether a head reads `cell_motion` (the pixel path's grid term or the span head's cells)."""
        path = self.pixel_mask_path
        return (path is not None and path.grid_flow is not None) or self._span_reads_motion

    def cell_motion(self, mask_pixel_values: torch.Tensor, features: VisualFeatures) -> torch.Tensor | None:
        """``[V, T, h, w, 4]`` each vision-grid cell's (dx, dy) from the previous and to the next frame of the
        clips ``mask_pixel_values [V, T, 3, S, S]`` (`normal_flow` / 4 on the grid of ``features``, on the time
        scale of ``config.motion_reference_frames``), or None when no head reads it. Computed once per step and
        shared by the pixel path and the span head."""
        if not self.reads_cell_motion:
            return None
        grid = tuple(features.grid.shape[2:4])
        scale = self.motion_time_scale(mask_pixel_values.shape[1]) / 4
        return normal_flow(mask_pixel_values.to(self.device), grid) * scale

    def motion_time_scale(self, num_frames: int) -> float:
        """`motion_time_scale` of a clip of ``num_frames`` sampled frames under ``config.motion_reference_frames``."""
        return motion_time_scale(num_frames, self.config.motion_reference_frames)

    @property
    def reads_question(self) -> bool:
        """Whether a head reads `question_states` (the motion match of the pixel mask path, or the span head's
        question query)."""
        path = self.pixel_mask_path
        head = self.temporal_head
        return (path is not None and path.motion_match is not None) or getattr(
            head, "question_query", None
        ) is not None

    def question_states(
        self, hidden: torch.Tensor, question_mask: torch.Tensor | None
    ) -> torch.Tensor | None:
        """``[B, D]`` the mean of the language model's states ``hidden [B, L, D]`` over the question's own tokens
        (``question_mask [B, L]``, from `MoRAProcessor`), or None when no part of the model reads it.

        The pixel mask path's motion match reads the question from these states rather than from ``[SEG]``:
        in a model trained from scratch, the ``[SEG]`` states of four questions that differ in one direction
        word stay within 1 % of each other for hundreds of steps, while this mean carries the word from the start.
        """
        if not self.reads_question:
            return None
        if question_mask is None:
            raise ValueError(
                "this model reads the question's own words (pixel_mask_motion_match / span_question): "
                "pass question_mask [B, L] (MoRAProcessor gives it)"
            )
        weights = (
            question_mask[:, : hidden.shape[1]].to(hidden.device, hidden.dtype).unsqueeze(-1)
        )  # [B, L, 1]
        return (hidden * weights).sum(1) / weights.sum(1).clamp_min(1.0)

    def dense_prompts(
        self,
        features: FrameFeatures,
        mask_pixel_values: torch.Tensor,
        stride: int | None = None,
        video_grid: torch.Tensor | None = None,
    ) -> torch.Tensor | None:
        """Dense prompts of the mask decoder: motion (`MotionDensePrompt`) + video grid (`VideoDensePrompt`).

        Args:
            features: `encode` output of the ``V*T`` frames of ``mask_pixel_values`` (clip-major order).
            mask_pixel_values: ``[V, T, 3, S, S]`` consecutive frames of each clip; frames without a partner
                s frames before / after get zero motion differences on that side.
            stride: s (default: `motion_stride` of T; pass the whole clip's when these frames are a window).
            video_grid: ``[V, T, h', w', d]`` the adapted vision grid of the same frames (needed by the video
                dense prompt).

        Returns:
            dense prompts ``[V*T, C, h, w]``, or None when no part applies.
        """
        V, T = mask_pixel_values.shape[:2]
        dense = None
        if self.motion_dense_prompt is not None:
            embeds = features.maps[-1]
            embeds = embeds.reshape(V, T, *embeds.shape[1:])  # [V, T, C, h, w]
            stride = self.motion_stride(T) if stride is None else stride
            dense = self.motion_dense_prompt(embeds, mask_pixel_values.to(embeds.device), stride).flatten(
                0, 1
            )
        if self.video_dense_prompt is not None:
            if video_grid is None or tuple(video_grid.shape[:2]) != (V, T):
                got = None if video_grid is None else tuple(video_grid.shape)
                raise ValueError(
                    f"the video dense prompt needs the video grid of the {V}x{T} frames, got {got}"
                )
            extra = self.video_dense_prompt(video_grid).to(features.maps[-1].dtype)
            dense = extra if dense is None else dense + extra
        return dense

    def span_logits_from(
        self,
        loc_states: torch.Tensor,
        features: VisualFeatures,
        motion: torch.Tensor | None,
        mask_logits: torch.Tensor | None = None,
        question_states: torch.Tensor | None = None,
        video_index: torch.Tensor | None = None,
        mask_pixel_values: torch.Tensor | None = None,
        cell_motion: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``[B, T]`` span logits from ``[LOC]`` states ``[B, D]``.

        ``features``, ``motion`` and ``mask_pixel_values [V, T, 3, S, S]`` (the clips, for the cells' motion when
        the head reads it, ``config.span_cell_flow``) are those of the videos ``video_index [B]`` (default: of
        the same B).
        ``mask_logits [B, T, S, S]`` (the answer's predicted masks) are required by the mask-pooled head, and
        ``question_states [B, D]`` when it reads the question (``config.span_question``); ``cell_motion`` the
        clips' `cell_motion` when already computed (else it comes from ``mask_pixel_values``).
        """
        if isinstance(self.temporal_head, MaskPooledSpanHead):
            if mask_logits is None:
                raise ValueError("span_head='mask_pooled' needs the predicted mask logits of every frame")
            if not self._span_reads_motion:
                cell_motion = None
            elif cell_motion is None:
                if mask_pixel_values is None:
                    raise ValueError(
                        "this span head reads the clips' motion: pass mask_pixel_values [V, T, 3, S, S]"
                    )
                cell_motion = self.cell_motion(mask_pixel_values, features)  # [V, T, h, w, 4]
            cell_motion = None if cell_motion is None else cell_motion.to(loc_states.device)
            return self.temporal_head(
                loc_states, features.tokens, mask_logits.sigmoid(), question_states, video_index, cell_motion
            )
        if video_index is not None:
            index = torch.as_tensor(video_index, dtype=torch.long)
            features = _select(features, index)
            motion = None if motion is None else motion[index.to(motion.device)]
        frame_tokens = temporal_frame_tokens(features.tokens, motion)  # [B, T, n', D]
        return self.temporal_head(loc_states, frame_tokens)

    # ------------------------------------------------------------------ forward
    def forward(
        self,
        input_ids: torch.LongTensor,
        attention_mask: torch.LongTensor,
        pixel_values: torch.FloatTensor,
        mask_pixel_values: torch.FloatTensor,
        labels: torch.LongTensor | None = None,
        gt_masks: torch.FloatTensor | None = None,
        mask_valid: torch.BoolTensor | None = None,
        span_labels: torch.FloatTensor | None = None,
        span_valid: torch.BoolTensor | None = None,
        video_index: torch.LongTensor | None = None,
        full_logits: bool | None = None,
        mm_token_type_ids: torch.IntTensor | None = None,
        question_mask: torch.LongTensor | None = None,
        **unused: Any,
    ) -> MoRAOutput:
        """One pass over a batch from `MoRAProcessor` (shapes in docs/interfaces.md).

        Args:
            input_ids, attention_mask: ``[B, L]`` after placeholder expansion (B questions).
            pixel_values: ``[V, T, 3, I, I]`` backbone frames; mask_pixel_values ``[V, T, 3, S, S]`` (V videos).
            labels: ``[B, L]`` (IGNORE_INDEX outside the answer); gt_masks ``[B, T, S, S]``;
            mask_valid: ``[B, T]`` frames with a mask target; span_labels ``[B, T]``; span_valid ``[B]``.
            video_index: ``[B]`` the video of each question (default: question b is about video b).
            full_logits: compute ``logits`` at every position (default: only without ``labels``; with labels
                the language-model loss needs the positions that predict an answer token only, and
                ``logits`` is None).
            mm_token_type_ids: ``[B, L]`` Qwen families: the modality of every token (2 = video) as the
                processor gives it; checked against the ``<video>`` placeholders of ``input_ids`` (positions are
                computed from those).
            question_mask: ``[B, L]`` 1 on the tokens of the question's own words (`MoRAProcessor` gives it; read
                when the pixel mask path matches the question against motion, `question_states`).
        """
        if unused:
            raise TypeError(f"unexpected forward arguments: {sorted(unused)}")
        cfg = self.config
        if mm_token_type_ids is not None:
            _check_token_types(mm_token_type_ids, input_ids, cfg.video_token_id)
        pixel_values = pixel_values.to(self.device)
        index = self._video_index(video_index, input_ids.shape[0], pixel_values.shape[0])
        features, motion, llm_idx = self.encode_video(pixel_values)
        input_ids = input_ids.to(self.device)
        attention_mask = attention_mask.to(self.device)
        embeds, lm_kwargs = self.build_inputs_embeds(input_ids, pixel_values, features, llm_idx, index)
        hidden = self.language_model_hidden(embeds, input_ids, attention_mask, len(llm_idx), lm_kwargs)
        if full_logits is None:
            full_logits = labels is None
        logits = self.adapter.lm_head(hidden) if full_logits else None  # [B, L, V]

        seg_states, has_seg = self.token_states(hidden, input_ids, cfg.seg_token_id, cfg.seg_hidden_offset)
        if gt_masks is not None and not bool(has_seg.all()):
            counts = (input_ids == cfg.seg_token_id).sum(dim=1).tolist()
            raise ValueError(
                f"every sample needs exactly 1 [SEG] for its mask target; [SEG] counts: {counts}"
            )
        loc_states, has_loc = self.token_states(hidden, input_ids, cfg.loc_token_id, cfg.loc_hidden_offset)
        seg_states, loc_states = self.read_video(
            seg_states, loc_states, features, index, hidden, input_ids, attention_mask
        )
        question_features = _select(features, index)
        question_motion = None if motion is None else motion[index.to(motion.device)]
        pooled_span = isinstance(self.temporal_head, MaskPooledSpanHead)
        question_states = self.question_states(hidden, question_mask)  # [B, D] | None
        cell_motion = self.cell_motion(mask_pixel_values, features)  # [V, T, h, w, 4] | None
        mask_logits = prompts = None
        if bool(has_seg.all()) or (pooled_span and bool(has_loc.any())):
            prompts = self.engine_prompts(seg_states, question_features, question_motion)  # [B, T, P, C]
            mask_logits = self.decode_masks(
                mask_pixel_values.to(self.device),
                prompts,
                features,
                index,
                seg_states,
                question_states,
                cell_motion,
            )
        span_logits = None
        if bool(has_loc.any()):
            span = self.span_logits_from(
                loc_states,
                features,
                motion,
                mask_logits,
                question_states,
                index,
                mask_pixel_values,
                cell_motion,
            )
            span_logits = span * has_loc.unsqueeze(-1)

        out = MoRAOutput(
            logits=logits,
            mask_logits=mask_logits if bool(has_seg.all()) else None,
            span_logits=span_logits,
            seg_prompts=prompts if bool(has_seg.all()) else None,
        )
        if labels is None and gt_masks is None and span_labels is None:
            return out
        ce = None
        if labels is not None:
            ce = (
                L.language_model_loss(logits, labels)
                if logits is not None
                else self._answer_loss(hidden, labels)
            )
        parts = L.compute_losses(cfg, out, ce, gt_masks, mask_valid, span_labels, span_valid, has_loc)
        anchor = self.graph_completion_loss(hidden, features, motion, mask_pixel_values, out)
        out.loss = parts.total + anchor
        out.loss_ce, out.loss_mask_bce, out.loss_mask_dice, out.loss_temporal = (
            parts.ce,
            parts.mask_bce,
            parts.mask_dice,
            parts.temporal,
        )
        return out

    def _answer_loss(self, hidden: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Next-token cross-entropy from ``hidden [B, L, D]`` where ``labels [B, L]`` has a target (the answer):
        the language-model head runs on those positions only."""
        targets = labels[:, 1:].to(hidden.device)  # [B, L-1]
        keep = targets != IGNORE_INDEX
        if not bool(keep.any()):
            return self.adapter.lm_head(hidden[:1, :1]).float().sum() * 0.0
        logits = self.adapter.lm_head(hidden[:, :-1][keep])  # [answer positions, vocab]
        return torch.nn.functional.cross_entropy(logits.float(), targets[keep])

    def graph_completion_loss(
        self,
        hidden: torch.Tensor,
        features: VisualFeatures,
        motion: torch.Tensor | None,
        mask_pixel_values: torch.Tensor,
        out: MoRAOutput,
    ) -> torch.Tensor:
        """A zero-valued loss that puts every head in the autograd graph (ZeRO needs all parameters).

        Heads whose output this batch did not produce (no ``[SEG]`` -> no masks; no ``[LOC]`` -> no span
        logits) run once on a stand-in hidden state of the first question (about video 0 here); produced
        outputs are included too, so that unused outputs (no valid mask frame) still reach the loss. Every
        term is multiplied by 0: gradients are zeros, not None.
        """
        terms = [hidden.sum() if out.logits is None else out.logits.sum()]
        if out.mask_logits is not None and out.span_logits is not None:
            terms += [out.mask_logits.sum(), out.span_logits.sum()]
            return sum(t.float() for t in terms) * 0.0
        stand_in = hidden[:1, -1]  # [1, D]
        seg, loc = self.read_video(stand_in, stand_in, features, torch.zeros(1, dtype=torch.long))
        single = _select(features, torch.zeros(1, dtype=torch.long))
        single_motion = None if motion is None else motion[:1]
        prompts = self.engine_prompts(seg, single, single_motion)  # [1, T, P, C]
        masks = self.decode_masks(
            mask_pixel_values[:1].to(self.device),
            prompts,
            _select(features, [0]),
            seg_states=seg,
            question_states=stand_in,
        )
        span = self.span_logits_from(loc, single, single_motion, masks, stand_in, None, mask_pixel_values[:1])
        terms += [masks.sum(), span.sum()]
        if out.mask_logits is not None:
            terms.append(out.mask_logits.sum())
        if out.span_logits is not None:
            terms.append(out.span_logits.sum())
        return sum(t.float() for t in terms) * 0.0

    # ------------------------------------------------------------------ inference, save/load
    def predict(
        self,
        frames,
        question: str,
        *,
        gate: bool = True,
        mode: str = "generate",
        propagation=None,
        with_ungated: bool = False,
        visual_prompt: str = "none",
    ):
        """Grounded answer for one video; see `mora.model.inference.predict`."""
        return predict(
            self,
            frames,
            question,
            gate=gate,
            mode=mode,
            propagation=propagation,
            with_ungated=with_ungated,
            visual_prompt=visual_prompt,
        )

    def save_pretrained(self, save_directory: str | os.PathLike, **kwargs: Any) -> None:
        """Weights (safetensors) + config, and the attached processor (tokenizer + json) beside them."""
        super().save_pretrained(save_directory, **kwargs)
        if self.processor is not None:
            self.processor.save_pretrained(save_directory)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *args: Any, **kwargs: Any):
        """Load weights and attach the processor saved in the same folder as ``model.processor``.

        ``pretrained_model_name_or_path``: a folder, or a Hub id resolved to a local snapshot first (with
        ``revision``; offline from the cache under ``HF_HUB_OFFLINE=1``), so that the processor comes from
        the same revision as the weights. Code from a checkpoint is never run (``trust_remote_code`` is
        refused).
        """
        if kwargs.pop("trust_remote_code", False):
            raise ValueError(
                "MoRA checkpoints are loaded as data only: trust_remote_code=True is not supported"
            )
        if not os.path.isdir(pretrained_model_name_or_path):
            from mora.hub import resolve_checkpoint

            download = {k: kwargs.pop(k) for k in ("cache_dir", "token", "local_files_only") if k in kwargs}
            pretrained_model_name_or_path = resolve_checkpoint(
                pretrained_model_name_or_path, revision=kwargs.pop("revision", None), **download
            )
        kwargs.setdefault("use_safetensors", True)
        want_info = kwargs.pop("output_loading_info", False)
        model, info = super().from_pretrained(
            pretrained_model_name_or_path, *args, output_loading_info=True, **kwargs
        )
        for name in (
            "motion_dense_prompt",
            "video_adapter",
            "grounding_reader",
            "video_dense_prompt",
            "pixel_mask_path",
        ):
            module = getattr(model, name)
            if module is not None and any(key.startswith(f"{name}.") for key in info.get("missing_keys", ())):
                # switched on for a checkpoint saved without it: fresh init (zero output), not empty memory
                with torch.no_grad():
                    module.reset_parameters()

        if MoRAProcessor.is_saved_in(pretrained_model_name_or_path):
            model.processor = MoRAProcessor.from_pretrained(pretrained_model_name_or_path)
        return (model, info) if want_info else model

    def push_to_hub(
        self,
        repo_id: str,
        *,
        commit_message: str | None = None,
        private: bool | None = None,
        token: bool | str | None = None,
        revision: str | None = None,
        create_pr: bool = False,
        max_shard_size: int | str | None = "50GB",
        scores: str | os.PathLike | dict | None = None,
        **card: Any,
    ):
        """Save this model with its processor and upload it with a generated model card (`mora.hub.push_folder`:
        safetensors, config, processor and tokenizer files, README.md with the ``scores`` table).

        ``card``: further model-card fields of `push_folder` (``base_models``, ``training_data``,
        ``datasets``, ``license``, ``scores_name``). Returns the upload's ``CommitInfo`` (the commit URL).
        """
        import tempfile

        from mora.hub import push_folder

        with tempfile.TemporaryDirectory(prefix="mora-save-") as tmp:
            self.save_pretrained(tmp, max_shard_size=max_shard_size)
            return push_folder(
                tmp,
                repo_id,
                revision=revision,
                private=private,
                scores=scores,
                commit_message=commit_message,
                create_pr=create_pr,
                token=token,
                **card,
            )


def _select(features: VisualFeatures, index) -> VisualFeatures:
    """The features of videos ``index`` (e.g. the video of each question), along the first dim."""
    index = torch.as_tensor(index, dtype=torch.long, device=features.tokens.device)
    return VisualFeatures(grid=features.grid[index], tokens=features.tokens[index])


def _check_token_types(mm_token_type_ids: torch.Tensor, input_ids: torch.Tensor, video_token_id: int) -> None:
    """Raise unless the non-text tokens of ``mm_token_type_ids`` are exactly the ``<video>`` placeholders."""
    typed = torch.as_tensor(mm_token_type_ids).to(input_ids.device) != 0
    video = input_ids == video_token_id
    if typed.shape != video.shape or not torch.equal(typed, video):
        raise ValueError(
            f"mm_token_type_ids mark {typed.sum(-1).tolist()} visual tokens per sample but input_ids hold "
            f"{video.sum(-1).tolist()} <video> placeholders"
        )


def _scatter_placeholders(
    embeds: torch.Tensor, input_ids: torch.Tensor, token_id: int, values: torch.Tensor, name: str
) -> torch.Tensor:
    """Replace each sample's ``token_id`` positions of ``embeds [B, L, D]`` by ``values [B, N, D]``."""
    mask = input_ids == token_id  # [B, L]
    counts = mask.sum(dim=1)
    expected = values.shape[1]
    if bool((counts != expected).any()):
        row = int(torch.nonzero(counts != expected)[0])
        raise ValueError(
            f"sample {row} has {int(counts[row])} <{name}> placeholder tokens but the model computed "
            f"{expected} {name} features"
        )
    return embeds.masked_scatter(mask.unsqueeze(-1), values.to(embeds.dtype))


AutoModel.register(MoRAConfig, MoRAForVideoGrounding)
