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
from mora.model import losses as L
from mora.model.backbones import VisualFeatures, build_adapter, build_vlm
from mora.model.heads import (
    FramePromptReader,
    MotionTokenizer,
    SegProjector,
    TemporalHead,
    temporal_frame_tokens,
)
from mora.model.mask_engines import build_mask_engine
from mora.model.mask_engines.base import FrameFeatures
from mora.model.motion_prompt import MotionDensePrompt
from mora.model.outputs import MoRAOutput
from mora.model.seg_correlation import SegCorrelationPrompt
from mora.model.visual_layout import sample_frame_indices
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
    ``temporal_head``, ``motion_tokenizer`` (None when motion tokens are off), ``frame_prompt_reader``
    (None without frame prompts), ``motion_dense_prompt`` (None when ``use_motion_dense_prompt`` is off),
    ``seg_correlation`` (None when ``use_seg_correlation`` is off).
    """

    def __init__(self, config: MoRAConfig) -> None:
        super().__init__(config)
        self.vlm = build_vlm(config.vlm_config)
        options = {}
        if config.backbone_family == "llava":
            options = {
                "video_pooling": getattr(config, "video_pooling", "videochatgpt"),
                "video_pool_grid": getattr(config, "video_pool_grid", 4),
            }
        self.adapter = build_adapter(config.backbone_family, self.vlm, config.backbone_image_size, **options)
        self.mask_engine = build_mask_engine(config.mask_engine_config)
        hidden = config.hidden_size
        self.seg_projector = SegProjector(hidden, self.mask_engine.prompt_dim)
        self.temporal_head = TemporalHead(hidden, config.temporal_head_dim)
        self.frame_prompt_reader = (
            FramePromptReader(hidden, config.temporal_head_dim, self.mask_engine.prompt_dim)
            if config.frame_prompts
            else None
        )
        self.motion_tokenizer = (
            MotionTokenizer(
                self.adapter.motion_input_dim,
                hidden,
                config.motion_grid,
                getattr(config, "motion_pixel_fold", 0),
            )
            if config.use_motion_tokens
            else None
        )
        # built last so that the other modules' random init does not depend on the switch
        engine = self.mask_engine
        self.motion_dense_prompt = (
            MotionDensePrompt(
                engine.prompt_dim, engine.embedding_size, engine.image_size, config.motion_dense_prompt_dim
            )
            if getattr(config, "use_motion_dense_prompt", False)
            else None
        )
        self.seg_correlation = (
            SegCorrelationPrompt(
                hidden,
                engine.prompt_dim,
                config.motion_dense_prompt_dim if self.motion_dense_prompt is not None else 0,
                config.seg_correlation_dim,
            )
            if getattr(config, "use_seg_correlation", False)
            else None
        )
        self.processor = None  # attached by from_pretrained when a processor is saved beside the weights
        if config.lora:
            from mora.model.trainable import LoraSettings, inject_lora

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
            pixel_values: ``[B, T, 3, h, w]`` backbone frames.

        Returns:
            features (``grid [B, T, h', w', d]``, ``tokens [B, T, n, D]``), motion tokens
            ``[B, T-s, g*g, D]`` of the frame pairs ``(t, t+s)``, s = `motion_stride` (None when off), and
            the sampled frame indices (``T_llm`` of them).
        """
        if pixel_values.ndim != 5:
            raise ValueError(f"pixel_values must be [B, T, 3, h, w], got {tuple(pixel_values.shape)}")
        features = self.adapter.frame_features(pixel_values)
        T = pixel_values.shape[1]
        motion = None
        if self.motion_tokenizer is not None:
            motion = self.motion_tokenizer(features.grid, pixel_values, self.motion_stride(T))
        llm_idx = sample_frame_indices(T, self.config.num_frames)
        return features, motion, llm_idx

    def build_inputs_embeds(
        self,
        input_ids: torch.Tensor,
        pixel_values: torch.Tensor,
        features: VisualFeatures,
        llm_idx: list[int],
    ) -> torch.Tensor:
        """``[B, L, D]`` token embeddings with the video and motion placeholders filled in."""
        cfg = self.config
        cfg.require_token_ids()
        llm_features = VisualFeatures(grid=features.grid[:, llm_idx], tokens=features.tokens[:, llm_idx])
        video = self.adapter.video_tokens(pixel_values[:, llm_idx], llm_features)  # [B, N_v, D]
        vocab = self.get_input_embeddings().weight.shape[0]
        if int(input_ids.max()) >= vocab:
            raise ValueError(
                f"input_ids reach id {int(input_ids.max())} but the language model has {vocab} embeddings; "
                "call model.resize_token_embeddings(len(processor.tokenizer))"
            )
        embeds = self.adapter.embed_tokens(input_ids)  # [B, L, D]
        embeds = _scatter_placeholders(embeds, input_ids, cfg.video_token_id, video, "video")
        if self.motion_tokenizer is not None:
            motion = self.motion_tokenizer(llm_features.grid, pixel_values[:, llm_idx])
            motion = motion.flatten(1, 2)  # [B, (T_llm-1)*g*g, D]
            embeds = _scatter_placeholders(embeds, input_ids, cfg.motion_token_id, motion, "motion")
        elif bool((input_ids == cfg.motion_token_id).any()):
            raise ValueError(
                "input_ids contain <motion> placeholders but the config has use_motion_tokens=False"
            )
        return embeds

    def language_model_hidden(
        self,
        inputs_embeds: torch.Tensor,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        num_llm_frames: int,
    ) -> torch.Tensor:
        """``[B, L, D]`` last hidden states of the language model."""
        position_ids = self.adapter.position_ids(input_ids, attention_mask, num_llm_frames)
        out = self.adapter.language_model(
            inputs_embeds=inputs_embeds,
            attention_mask=attention_mask,
            position_ids=position_ids,
            use_cache=False,
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

    def engine_features(self, mask_pixel_values: torch.Tensor):
        """Mask-engine features of ``[N, 3, S, S]`` frames (no autograd when its encoder is frozen)."""
        frozen = not any(
            p.requires_grad for m in self.mask_engine.image_encoder_modules() for p in m.parameters()
        )
        with torch.no_grad() if frozen else contextlib.nullcontext():
            return self.mask_engine.encode(mask_pixel_values)

    def frame_prompts(
        self, seg_states: torch.Tensor, features: VisualFeatures, motion: torch.Tensor | None
    ) -> torch.Tensor:
        """Mask-engine prompts of every frame from ``[SEG]`` states ``[B, D]``.

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
        self, mask_pixel_values: torch.Tensor, prompts: torch.Tensor, seg_states: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Decode every frame with its prompts.

        Args:
            mask_pixel_values: ``[B, T, 3, S, S]``; prompts ``[B, T, P, C]`` (from `frame_prompts`).
            seg_states: ``[B, D]`` ``[SEG]`` states for the correlation prompt (ignored when it is off).

        Returns:
            mask logits ``[B, T, S, S]`` float32 and the ``[SEG]`` correlation logits ``[B, T, h, w]`` (None
            when the correlation prompt is off or no ``seg_states`` were given).
        """
        B, T = mask_pixel_values.shape[:2]
        feats = self.engine_features(mask_pixel_values.flatten(0, 1))
        dense, correlation = self.dense_prompts(feats, mask_pixel_values, seg_states)  # [B*T, C, h, w] | None
        logits = self.mask_engine.decode(feats, prompts.flatten(0, 1), dense)  # [B*T, S, S]
        return logits.view(B, T, *logits.shape[-2:]), correlation

    def dense_prompts(
        self,
        features: FrameFeatures,
        mask_pixel_values: torch.Tensor,
        seg_states: torch.Tensor | None = None,
        stride: int | None = None,
    ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """Dense prompts of the mask decoder: motion (`MotionDensePrompt`) + ``[SEG]`` correlation.

        Args:
            features: `encode` output of the ``B*T`` frames of ``mask_pixel_values`` (clip-major order).
            mask_pixel_values: ``[B, T, 3, S, S]`` consecutive frames of each clip; frames without a partner
                s frames before / after get zero motion differences on that side.
            seg_states: ``[B, D]`` ``[SEG]`` states (None: no correlation prompt).
            stride: s (default: `motion_stride` of T; pass the whole clip's when these frames are a window).

        Returns:
            dense prompts ``[B*T, C, h, w]`` (None when neither part applies) and correlation logits
            ``[B, T, h, w]`` (None without the correlation part).
        """
        B, T = mask_pixel_values.shape[:2]
        embeds = features.maps[-1]
        embeds = embeds.reshape(B, T, *embeds.shape[1:])  # [B, T, C, h, w]
        dense = motion_hidden = correlation = None
        if self.motion_dense_prompt is not None:
            stride = self.motion_stride(T) if stride is None else stride
            dense, motion_hidden = self.motion_dense_prompt(
                embeds, mask_pixel_values.to(embeds.device), stride, return_hidden=True
            )
        if self.seg_correlation is not None and seg_states is not None:
            extra, correlation = self.seg_correlation(seg_states, embeds, motion_hidden)
            dense = extra if dense is None else dense + extra
        return (None if dense is None else dense.flatten(0, 1)), correlation

    def motion_dense_embeds(
        self, features: FrameFeatures, mask_pixel_values: torch.Tensor, stride: int | None = None
    ) -> torch.Tensor | None:
        """The motion part of `dense_prompts`: ``[B*T, C, h, w]`` (None when the switch is off)."""
        if self.motion_dense_prompt is None:
            return None
        return self.dense_prompts(features, mask_pixel_values, None, stride)[0]

    def span_logits_from(
        self, loc_states: torch.Tensor, features: VisualFeatures, motion: torch.Tensor | None
    ) -> torch.Tensor:
        """``[B, T]`` span logits from ``[LOC]`` states ``[B, D]`` over every frame's tokens."""
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
        **unused: Any,
    ) -> MoRAOutput:
        """One pass over a batch from `MoRAProcessor` (shapes in docs/interfaces.md).

        Args:
            input_ids, attention_mask: ``[B, L]`` after placeholder expansion.
            pixel_values: ``[B, T, 3, h, w]`` backbone frames; mask_pixel_values ``[B, T, 3, S, S]``.
            labels: ``[B, L]`` (IGNORE_INDEX outside the answer); gt_masks ``[B, T, S, S]``;
            mask_valid: ``[B, T]`` frames with a mask target; span_labels ``[B, T]``; span_valid ``[B]``.
        """
        if unused:
            raise TypeError(f"unexpected forward arguments: {sorted(unused)}")
        cfg = self.config
        features, motion, llm_idx = self.encode_video(pixel_values.to(self.device))
        input_ids = input_ids.to(self.device)
        attention_mask = attention_mask.to(self.device)
        embeds = self.build_inputs_embeds(input_ids, pixel_values.to(self.device), features, llm_idx)
        hidden = self.language_model_hidden(embeds, input_ids, attention_mask, len(llm_idx))
        logits = self.adapter.lm_head(hidden)  # [B, L, V]

        seg_states, has_seg = self.token_states(hidden, input_ids, cfg.seg_token_id, cfg.seg_hidden_offset)
        if gt_masks is not None and not bool(has_seg.all()):
            counts = (input_ids == cfg.seg_token_id).sum(dim=1).tolist()
            raise ValueError(
                f"every sample needs exactly 1 [SEG] for its mask target; [SEG] counts: {counts}"
            )
        mask_logits = prompts = correlation = None
        if bool(has_seg.all()):
            prompts = self.frame_prompts(seg_states, features, motion)  # [B, T, P, C]
            mask_logits, correlation = self.decode_masks(
                mask_pixel_values.to(self.device), prompts, seg_states
            )
        loc_states, has_loc = self.token_states(hidden, input_ids, cfg.loc_token_id, cfg.loc_hidden_offset)
        span_logits = None
        if bool(has_loc.any()):
            span_logits = self.span_logits_from(loc_states, features, motion) * has_loc.unsqueeze(-1)

        out = MoRAOutput(
            logits=logits,
            mask_logits=mask_logits,
            span_logits=span_logits,
            seg_prompts=prompts,
            correlation_logits=correlation,
        )
        if labels is None and gt_masks is None and span_labels is None:
            return out
        parts = L.compute_losses(cfg, out, labels, gt_masks, mask_valid, span_labels, span_valid, has_loc)
        anchor = self.graph_completion_loss(hidden, features, motion, mask_pixel_values, out)
        out.loss = parts.total + anchor
        out.loss_ce, out.loss_mask_bce, out.loss_mask_dice, out.loss_temporal = (
            parts.ce,
            parts.mask_bce,
            parts.mask_dice,
            parts.temporal,
        )
        out.loss_correlation = parts.correlation
        return out

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
        logits) run once on a stand-in hidden state; produced outputs are included too, so that unused
        outputs (no valid mask frame) still reach the loss. Every term is multiplied by 0: gradients are
        zeros, not None.
        """
        stand_in = hidden[:1, -1]  # [1, D]
        terms = [out.logits.sum()]
        if out.mask_logits is None:
            single = VisualFeatures(grid=features.grid[:1], tokens=features.tokens[:1])
            prompts = self.frame_prompts(stand_in, single, None if motion is None else motion[:1])[:, :1]
            masks, correlation = self.decode_masks(
                mask_pixel_values[:1, :1].to(self.device), prompts, stand_in
            )
            terms.append(masks.sum())
            if correlation is not None:
                terms.append(correlation.sum())
        else:
            terms.append(out.mask_logits.sum())
            if out.correlation_logits is not None:
                terms.append(out.correlation_logits.sum())
        if out.span_logits is None:
            single = VisualFeatures(grid=features.grid[:1], tokens=features.tokens[:1])
            terms.append(
                self.span_logits_from(stand_in, single, None if motion is None else motion[:1]).sum()
            )
        else:
            terms.append(out.span_logits.sum())
        return sum(t.float() for t in terms) * 0.0

    # ------------------------------------------------------------------ inference, save/load
    def predict(self, frames, question: str, *, gate: bool = True, mode: str = "generate", propagation=None):
        """Grounded answer for one video; see `mora.model.inference.predict`."""
        from mora.model.inference import predict

        return predict(self, frames, question, gate=gate, mode=mode, propagation=propagation)

    def save_pretrained(self, save_directory: str | os.PathLike, **kwargs: Any) -> None:
        """Weights (safetensors) + config, and the attached processor (tokenizer + json) beside them."""
        super().save_pretrained(save_directory, **kwargs)
        if self.processor is not None:
            self.processor.save_pretrained(save_directory)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *args: Any, **kwargs: Any):
        """Load weights and attach the processor saved in the same folder as ``model.processor``."""
        kwargs.setdefault("use_safetensors", True)
        want_info = kwargs.pop("output_loading_info", False)
        model, info = super().from_pretrained(
            pretrained_model_name_or_path, *args, output_loading_info=True, **kwargs
        )
        for name in ("motion_dense_prompt", "seg_correlation"):
            module = getattr(model, name)
            if module is not None and any(key.startswith(f"{name}.") for key in info.get("missing_keys", ())):
                # switched on for a checkpoint saved without it: fresh init (zero output), not empty memory
                with torch.no_grad():
                    module.reset_parameters()
        from mora.processing.processing_mora import MoRAProcessor

        if MoRAProcessor.is_saved_in(pretrained_model_name_or_path):
            model.processor = MoRAProcessor.from_pretrained(pretrained_model_name_or_path)
        return (model, info) if want_info else model


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
