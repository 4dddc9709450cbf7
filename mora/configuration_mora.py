"""`MoRAConfig`: the one configuration of a MoRA model, saved as ``config.json`` with every checkpoint.

It composes two transformers configs, validated on creation:

* ``vlm_config``: the backbone (``LlavaConfig`` for the LLaVA/LISA family, ``Qwen2_5_VLConfig`` for the
  Qwen2.5-VL family, ``Qwen3VLConfig`` for the Qwen3-VL family);
* ``mask_engine_config``: the mask engine (``Sam2Config`` family -> SAM2 engine, ``SamConfig`` -> SAM v1).

Everything MoRA adds on top lives in flat fields below: special-token ids (read from the tokenizer by the
processor, never hard-coded), motion tokens, the ``[SEG]`` projector and ``[LOC]`` temporal head, loss
weights and inference settings.
"""

from __future__ import annotations

from typing import Any, ClassVar

from transformers import AutoConfig, PretrainedConfig
from transformers.configuration_utils import SubConfigSpec

BACKBONE_FAMILIES = ("llava", "qwen2_5_vl", "qwen3_vl")
# backbone family -> the transformers model_type its vlm_config must have
_FAMILY_MODEL_TYPE = {"llava": "llava", "qwen2_5_vl": "qwen2_5_vl", "qwen3_vl": "qwen3_vl"}
MASK_ENGINE_MODEL_TYPES = ("sam2", "sam2_video", "sam")
PROPAGATION_MODES = ("memory", "per_frame")
VIDEO_POOLINGS = ("videochatgpt", "frame_grid")
RESIZE_MODES = ("squash", "longest_pad")
SPAN_HEADS = ("tokens", "mask_pooled")

# Version of the saved config layout. Bump it whenever a new field's default differs from how the model
# behaved before the field existed, and register the step that gives older dicts the old behaviour.
CONFIG_VERSION = 2


def _from_unversioned(values: dict[str, Any]) -> None:
    """Version 1 (no ``config_version``): fields added later whose default changes the architecture get
    the value that reproduces a checkpoint saved without them."""
    values.setdefault("use_motion_dense_prompt", False)


# version v -> the step that brings a dict of version v - 1 up to v
_MIGRATIONS = {2: _from_unversioned}


def migrate_config_dict(config_dict: dict[str, Any]) -> dict[str, Any]:
    """A copy of a saved `MoRAConfig` dict brought up to ``CONFIG_VERSION`` (dicts without a version are 1).

    Raises:
        ValueError: the dict was saved by a newer mora (its version is above ``CONFIG_VERSION``).
    """
    values = dict(config_dict)
    version = int(values.get("config_version", 1))
    if version > CONFIG_VERSION:
        raise ValueError(
            f"config_version {version} is newer than this mora understands ({CONFIG_VERSION}); upgrade mora"
        )
    for step in range(version + 1, CONFIG_VERSION + 1):
        _MIGRATIONS[step](values)
    values["config_version"] = CONFIG_VERSION
    return values


class MoRAConfig(PretrainedConfig):
    """Configuration of `MoRAForVideoGrounding`.

    Args:
        vlm_config: backbone config (dict or ``PretrainedConfig``); its ``model_type`` must match
            ``backbone_family``.
        mask_engine_config: ``Sam2Config``/``Sam2VideoConfig`` or ``SamConfig`` (dict or object).
        backbone_family: ``"llava"``, ``"qwen2_5_vl"`` or ``"qwen3_vl"``.
        seg_token_id, loc_token_id: ids of ``[SEG]``/``[LOC]`` in the tokenizer (set by the processor).
        video_token_id: placeholder id expanded to the visual tokens of the video.
        motion_token_id: placeholder id expanded to the motion tokens.
        num_frames: frames the language model sees (sampled uniformly from the frames given).
        use_motion_tokens: feed inter-frame difference tokens to the language model and temporal head.
        motion_grid: g; each frame difference is pooled to a g x g grid (g*g tokens per difference).
        video_pooling: how LLaVA-family frames become video tokens: ``"videochatgpt"`` (MoRA's: the patch
            grid averaged over time, h*w tokens, plus one spatial mean per frame, T tokens) or
            ``"frame_grid"`` (each frame's patch grid average-pooled to ``video_pool_grid`` squared tokens,
            T*p*p tokens: where things are in every frame, not only on average). The Qwen families keep their own
            spatio-temporal patches.
        video_pool_grid: p of ``"frame_grid"``.
        use_motion_dense_prompt: give the mask decoder a dense motion prompt per frame
            (`mora.model.motion_prompt.MotionDensePrompt`: differences of the engine's image embeddings and
            of the frames to the neighbouring frames, zero-initialised output). True for new configs; a
            config saved before it existed (version 1) loads with False.
        motion_dense_prompt_dim: width of the `MotionDensePrompt` conv stack.
        video_adapter_layers: space-time blocks of the `VideoAdapter` between vision tower and language model
            (attention among the cells of a frame, then among the frames of a cell); 0 = no adapter (the
            paper's model). Its zero-initialised residual output leaves pretrained features unchanged at init.
        video_adapter_dim, video_adapter_heads: width and heads of its blocks.
        video_adapter_differences: the adapter's input also holds each cell's differences to the previous
            and next frame.
        video_adapter_flow: the adapter's input also holds each cell's motion (dx, dy) from the previous frame
            and to the next, estimated from the backbone frames by brightness constancy (`normal_flow`): the
            direction an object moves, which differences of cell features leave implicit.
        video_flow_embedding: that motion estimate, linearly embedded, is also added to the adapter's output
            grid (a non-zero-initialised path beside the zero-initialised residual), so the direction of motion
            reaches the language model, the grounding reader and the pixel mask path from the first step.
        video_flow_direction: the adapter reads each cell's direction of motion (`motion_direction`) instead of
            its displacement, in its input and its embedding, so slow and fast movers carry the same direction.
        motion_reference_frames: the cells' motion estimates (`normal_flow` between neighbouring sampled frames,
            read by the video adapter, the pixel mask path and the span head) are rescaled to the time scale of
            this many frames spread over the clip (`motion_time_scale`: ``(T - 1) / (R - 1)``), so a model
            trained on clips of R frames reads the same speeds on GroundMoRe's 20 evaluation frames; None = per
            pair of sampled frames, whatever their spacing.
        grounding_reader_layers: decoder layers of the `GroundingReader`, in which the ``[SEG]`` and ``[LOC]``
            states attend to every frame's full grid tokens before the heads read them; 0 = off.
        grounding_reader_heads: its attention heads.
        use_video_dense_prompt: give the mask decoder the adapted vision grid of each frame as a dense prompt
            (`VideoDensePrompt`, zero-initialised output).
        pixel_mask_dim: width e of the `PixelMaskPath` (masks also from the dot product of a query read from the
            ``[SEG]`` state with per-pixel embeddings of each frame at the engine's input resolution, added to the
            engine's logits); 0 = off (the engine's decoder alone).
        pixel_mask_differences: the pixel MLP of the `PixelMaskPath` also reads each frame's differences to
            the previous and next frame of the clip (what moved, at full resolution).
        pixel_mask_stem: width of a small strided convolution stem (two stride-2 3x3 convolutions) over each
            frame and its differences to the neighbouring frames whose S/4 features, dotted with the query and
            upsampled, add a finer term than the vision grid to the `PixelMaskPath`'s logits (like SAM2's
            high-resolution features); 0 = off.
        pixel_mask_motion_match: side g of a g x g grid on which the `PixelMaskPath` matches the motion a
            question asks for against each cell's motion (`triple_flow` of the frame and its neighbours): a
            4-vector linear in the mean state of the question's own words (`question_states`, from the
            processor's ``question_mask``), dotted with each cell's (dx, dy) to the previous and next frame and
            upsampled; 0 = off. A direction word reaches the masks through it from the first step (session 9).
        pixel_mask_motion_direction: that motion match reads each cell's direction of motion (`motion_direction`)
            instead of its displacement.
        pixel_mask_grid_flow: the `PixelMaskPath`'s grid term also reads each grid cell's motion (dx, dy) to the
            previous and next frame (`normal_flow` of the clip's mask-engine frames), so the ``[SEG]`` query can
            select the object that moves the asked way in the same dot product that selects by appearance.
        pixel_mask_grid_direction: that grid term reads each cell's direction of motion (`motion_direction`) instead
            of its displacement, so a slow mover is selected by its direction as strongly as a fast one.
        span_head: ``"tokens"`` (`TemporalHead`: the ``[LOC]`` query against each frame's visual and motion
            tokens) or ``"mask_pooled"`` (`MaskPooledSpanHead`: each frame scored from the grid tokens under
            the predicted mask of the answer object and that mask's motion; masks are decoded on every frame
            before the span is known).
        span_question: the mask-pooled span head's query also reads the mean state of the question's own words
            (`question_states`): a Descriptive span is when the masked object moves the asked way.
        span_cells: the mask-pooled span head also scores every grid cell under the mask on its own and adds
            their mask-weighted log-sum-exp to each frame's logit (`MaskPooledSpanHead`): a mask that covers the
            answer and another object moving another way no longer mixes their motions.
        span_cell_flow: those cell scores also read each cell's motion estimate (`normal_flow` of the clip).
        span_motion_match: each cell under the mask is also scored by the match of its motion estimate with the
            motion the question asks for (a linear map of the question's words; needs ``span_question``), and
            the frame gets their mask-weighted log-sum-exp: a Descriptive span is when a part of the masked
            object moves the asked way.
        span_motion_direction: the motion match reads each cell's direction of motion (`motion_direction`:
            about unit length wherever the cell moves) instead of its displacement, so an object moving one pixel
            per frame matches the asked direction as strongly as one moving two.
        frame_prompts: experimental (no preset or recipe turns it on; tested in
            ``tests/test_model_forward.py``): add a per-frame prompt token (the ``[SEG]`` state's attention
            readout over the frame's visual + motion tokens) beside the ``[SEG]`` projection.
        seg_hidden_offset: 0 = the ``[SEG]`` token's own hidden state; -1 = the state before it (LISA).
        loc_hidden_offset: experimental (no preset or recipe sets it; tested in
            ``tests/test_model_forward.py``): the same for ``[LOC]``.
        temporal_head_dim: width of the query/key projections of the temporal head.
        backbone_image_size: side of the square frames fed to the vision tower.
        backbone_resize_mode: ``"squash"`` (resize to a square) or ``"longest_pad"``.
        backbone_image_mean, backbone_image_std: normalisation of backbone frames, 0..1 units.
        chat_template: ``"vicuna_v1"`` (USER: ... ASSISTANT: ...) or ``"chatml"`` (Qwen).
        ce_loss_weight, mask_bce_loss_weight, mask_dice_loss_weight, temporal_loss_weight: loss weights.
        mask_outside_span_weight: weight of a mask target on a frame outside the question's motion span
            against 1 inside (where masks are supervised there, `DatasetSpec.mask_outside_span`): GroundMoRe
            scores in-span frames only, the others teach the model to follow the answer when it stands still.
        propagation: ``"memory"`` (SAM2 key-frame decode + memory propagation) or ``"per_frame"``.
        span_threshold: in-span probability above which a frame counts as inside the motion span.
        max_new_tokens: generation budget of ``predict(mode="generate")``.
        lora: LoRA settings applied to the language model (dict of `LoraSettings`), or None. Stored so
            that a checkpoint saved with LoRA layers reloads into the same module structure.
        config_version: layout version of the saved config; `from_dict` migrates older dicts
            (`migrate_config_dict`), so old checkpoints keep their exact architecture.
    """

    model_type: ClassVar[str] = "mora"
    sub_configs_defaults: ClassVar[dict[str, SubConfigSpec]] = {
        "vlm_config": SubConfigSpec(config_class=AutoConfig, model_type="llava"),
        "mask_engine_config": SubConfigSpec(config_class=AutoConfig, model_type="sam2"),
    }

    vlm_config: dict | PretrainedConfig | None = None
    mask_engine_config: dict | PretrainedConfig | None = None
    backbone_family: str = "llava"
    seg_token_id: int | None = None
    loc_token_id: int | None = None
    video_token_id: int | None = None
    motion_token_id: int | None = None
    pad_token_id: int | None = None
    eos_token_id: int | None = None
    num_frames: int = 8
    use_motion_tokens: bool = True
    motion_grid: int = 4
    video_pooling: str = "videochatgpt"
    video_pool_grid: int = 4
    use_motion_dense_prompt: bool = True
    motion_dense_prompt_dim: int = 128
    video_adapter_layers: int = 0
    video_adapter_dim: int = 256
    video_adapter_heads: int = 4
    video_adapter_differences: bool = False
    video_adapter_flow: bool = False
    video_flow_embedding: bool = False
    video_flow_direction: bool = False
    motion_reference_frames: int | None = None
    grounding_reader_layers: int = 0
    grounding_reader_heads: int = 4
    use_video_dense_prompt: bool = False
    pixel_mask_dim: int = 0
    pixel_mask_differences: bool = False
    pixel_mask_stem: int = 0
    pixel_mask_motion_match: int = 0
    pixel_mask_motion_direction: bool = False
    pixel_mask_grid_flow: bool = False
    pixel_mask_grid_direction: bool = False
    span_head: str = "tokens"
    span_question: bool = False
    span_cells: bool = False
    span_cell_flow: bool = False
    span_motion_match: bool = False
    span_motion_direction: bool = False
    frame_prompts: bool = False
    seg_hidden_offset: int = 0
    loc_hidden_offset: int = 0
    temporal_head_dim: int = 128
    backbone_image_size: int = 224
    backbone_resize_mode: str = "squash"
    backbone_image_mean: tuple[float, float, float] | list[float] = (0.48145466, 0.4578275, 0.40821073)
    backbone_image_std: tuple[float, float, float] | list[float] = (0.26862954, 0.26130258, 0.27577711)
    chat_template: str = "vicuna_v1"
    ce_loss_weight: float = 1.0
    mask_bce_loss_weight: float = 2.0
    mask_dice_loss_weight: float = 0.5
    temporal_loss_weight: float = 1.0
    mask_outside_span_weight: float = 1.0
    propagation: str = "memory"
    span_threshold: float = 0.5
    max_new_tokens: int = 32
    lora: dict | None = None
    config_version: int = CONFIG_VERSION

    @classmethod
    def from_dict(cls, config_dict: dict[str, Any], **kwargs: Any):
        """As `PretrainedConfig.from_dict`, after migrating the dict to ``CONFIG_VERSION``."""
        return super().from_dict(migrate_config_dict(config_dict), **kwargs)

    def __post_init__(self, **kwargs: Any) -> None:
        super().__post_init__(**kwargs)
        self.backbone_image_mean = tuple(float(v) for v in self.backbone_image_mean)
        self.backbone_image_std = tuple(float(v) for v in self.backbone_image_std)
        self._validate()

    def _validate(self) -> None:
        if self.backbone_family not in BACKBONE_FAMILIES:
            raise ValueError(
                f"backbone_family must be one of {BACKBONE_FAMILIES}, got {self.backbone_family!r}"
            )
        expected = _FAMILY_MODEL_TYPE[self.backbone_family]
        if self.vlm_config.model_type != expected:
            raise ValueError(
                f"backbone_family {self.backbone_family!r} needs a vlm_config of model_type {expected!r}, "
                f"got {self.vlm_config.model_type!r}"
            )
        if self.mask_engine_config.model_type not in MASK_ENGINE_MODEL_TYPES:
            raise ValueError(
                f"mask_engine_config must be one of {MASK_ENGINE_MODEL_TYPES}, "
                f"got model_type {self.mask_engine_config.model_type!r}"
            )
        if self.num_frames < 1:
            raise ValueError(f"num_frames must be >= 1, got {self.num_frames}")
        if self.video_pooling not in VIDEO_POOLINGS:
            raise ValueError(f"video_pooling must be one of {VIDEO_POOLINGS}, got {self.video_pooling!r}")
        if self.video_pool_grid < 1:
            raise ValueError(f"video_pool_grid must be >= 1, got {self.video_pool_grid}")
        if self.video_pooling != "videochatgpt" and self.backbone_family != "llava":
            raise ValueError(f"video_pooling={self.video_pooling!r} applies to the llava family only")
        for name in (
            "video_adapter_layers",
            "grounding_reader_layers",
            "pixel_mask_dim",
            "pixel_mask_motion_match",
        ):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.video_adapter_layers and (
            self.video_adapter_dim % self.video_adapter_heads or self.video_adapter_dim % 4
        ):
            raise ValueError(
                f"video_adapter_dim {self.video_adapter_dim} must be divisible by 4 and by "
                f"video_adapter_heads {self.video_adapter_heads}"
            )
        if self.grounding_reader_layers and self.hidden_size % self.grounding_reader_heads:
            raise ValueError(
                f"grounding_reader_heads {self.grounding_reader_heads} must divide the hidden size {self.hidden_size}"
            )
        if self.span_head not in SPAN_HEADS:
            raise ValueError(f"span_head must be one of {SPAN_HEADS}, got {self.span_head!r}")
        if self.pixel_mask_grid_flow and not self.pixel_mask_dim:
            raise ValueError("pixel_mask_grid_flow needs the pixel mask path (pixel_mask_dim > 0)")
        if self.video_flow_direction and not (self.video_adapter_flow or self.video_flow_embedding):
            raise ValueError(
                "video_flow_direction reads the cells' motion in the video adapter: it needs video_adapter_flow "
                "or video_flow_embedding"
            )
        if self.pixel_mask_motion_direction and not self.pixel_mask_motion_match:
            raise ValueError(
                "pixel_mask_motion_direction normalises the pixel path's motion match: it needs "
                "pixel_mask_motion_match > 0"
            )
        if self.pixel_mask_grid_direction and not self.pixel_mask_grid_flow:
            raise ValueError(
                "pixel_mask_grid_direction reads the cells' motion: it needs pixel_mask_grid_flow=True"
            )
        if self.span_question and self.span_head != "mask_pooled":
            raise ValueError(f"span_question needs span_head='mask_pooled', got {self.span_head!r}")
        if self.span_cells and self.span_head != "mask_pooled":
            raise ValueError(f"span_cells needs span_head='mask_pooled', got {self.span_head!r}")
        if self.span_cell_flow and not self.span_cells:
            raise ValueError("span_cell_flow scores cells: it needs span_cells=True")
        if self.span_motion_match and not self.span_question:
            raise ValueError(
                "span_motion_match reads the asked motion from the question: it needs span_question=True"
            )
        if self.span_motion_direction and not self.span_motion_match:
            raise ValueError(
                "span_motion_direction normalises the span's motion match: it needs span_motion_match=True"
            )
        if self.motion_reference_frames is not None and self.motion_reference_frames < 2:
            raise ValueError(
                f"motion_reference_frames must be None or >= 2 (frames over a clip), got {self.motion_reference_frames}"
            )
        if self.motion_grid < 1:
            raise ValueError(f"motion_grid must be >= 1, got {self.motion_grid}")
        if self.motion_dense_prompt_dim < 1:
            raise ValueError(f"motion_dense_prompt_dim must be >= 1, got {self.motion_dense_prompt_dim}")
        if self.propagation not in PROPAGATION_MODES:
            raise ValueError(f"propagation must be one of {PROPAGATION_MODES}, got {self.propagation!r}")
        if self.backbone_resize_mode not in RESIZE_MODES:
            raise ValueError(
                f"backbone_resize_mode must be one of {RESIZE_MODES}, got {self.backbone_resize_mode!r}"
            )
        if self.chat_template not in ("vicuna_v1", "chatml"):
            raise ValueError(f"chat_template must be 'vicuna_v1' or 'chatml', got {self.chat_template!r}")
        if self.seg_hidden_offset not in (0, -1) or self.loc_hidden_offset not in (0, -1):
            raise ValueError(
                "seg_hidden_offset and loc_hidden_offset must be 0 or -1, got "
                f"{self.seg_hidden_offset} and {self.loc_hidden_offset}"
            )
        if not 0.0 < self.span_threshold < 1.0:
            raise ValueError(f"span_threshold must lie in (0, 1), got {self.span_threshold}")
        for name in (
            "ce_loss_weight",
            "mask_bce_loss_weight",
            "mask_dice_loss_weight",
            "temporal_loss_weight",
            "mask_outside_span_weight",
        ):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if len(self.backbone_image_mean) != 3 or len(self.backbone_image_std) != 3:
            raise ValueError("backbone_image_mean and backbone_image_std need 3 values each")

    @property
    def text_config(self) -> PretrainedConfig:
        """The language model's config inside the backbone."""
        return self.vlm_config.text_config

    @property
    def hidden_size(self) -> int:
        """D: the language model's hidden size."""
        return self.vlm_config.text_config.hidden_size

    @property
    def mask_engine_kind(self) -> str:
        """``"sam2"`` or ``"sam"``."""
        return "sam" if self.mask_engine_config.model_type == "sam" else "sam2"

    def set_token_ids(self, *, seg: int, loc: int, video: int, motion: int, pad: int, eos: int) -> None:
        """Store a tokenizer's special-token ids here and in the backbone config (its video token)."""
        self.seg_token_id, self.loc_token_id = seg, loc
        self.video_token_id, self.motion_token_id = video, motion
        self.pad_token_id, self.eos_token_id = pad, eos
        if self.vlm_config.model_type == "llava":
            self.vlm_config.image_token_index = video
        else:
            self.vlm_config.video_token_id = video

    def require_token_ids(self) -> None:
        """Raise when the special-token ids have not been set from a tokenizer."""
        missing = [
            name
            for name in ("seg_token_id", "loc_token_id", "video_token_id", "motion_token_id")
            if getattr(self, name) is None
        ]
        if missing:
            raise ValueError(
                f"MoRAConfig is missing token ids {missing}; build the processor first and copy its ids "
                "with MoRAProcessor.apply_token_ids(config)"
            )


AutoConfig.register("mora", MoRAConfig)
