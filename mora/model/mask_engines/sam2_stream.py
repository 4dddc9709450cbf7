"""SAM2 memory propagation over a video that is streamed frame by frame (bounded memory).

`Sam2MaskEngine.propagate` holds a whole clip: every frame's features and every frame's tracking
output. `StreamingTracker` runs the same computation (conditioning on one key frame's mask, then
transformers' ``Sam2VideoModel`` tracking forward from the key frame to the end and backward from it to
the start) while the caller feeds the frames one at a time, in that order, with their `FrameFeatures`:
only the current frame's features are cached, and tracking outputs no later frame can read (beyond
``window`` frames in the direction of travel) are dropped.

What a frame reads, in ``Sam2VideoModel``: the conditioning frame, the memories of the
``num_maskmem - 1`` frames before it (in its direction of travel) and the object pointers of the
``max_object_pointers_in_encoder - 1`` frames before it. The backward pass starts next to the key frame,
so it also reads the forward pass's outputs of the ``window`` frames after the key frame; those are kept
until the backward pass is done. The result equals `Sam2MaskEngine.propagate` on the same frames.
"""

from __future__ import annotations

import torch
from transformers import Sam2VideoInferenceSession

from mora.model.mask_engines.base import FrameFeatures, eval_mode

_OBJECT_ID = 1


class _Session(Sam2VideoInferenceSession):
    """An inference session that knows the video length without holding its frames."""

    def __init__(self, total_frames: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self._total_frames = int(total_frames)

    @property
    def num_frames(self) -> int:
        return self._total_frames


class StreamingTracker:
    """Track one prompted object through ``num_frames`` frames fed in order (see the module docstring).

    Args:
        engine: a `Sam2MaskEngine`.
        num_frames: frames in the video (SAM2 limits object pointers by it, as in ``propagate``).
        key: the conditioning frame.
        key_features: `FrameFeatures` of the key frame (one frame).
        key_logits: ``[S, S]`` the prompt's logits decoded on the key frame; their binarised mask conditions
            the tracker (as in ``propagate``).
    """

    def __init__(
        self, engine, num_frames: int, key: int, key_features: FrameFeatures, key_logits: torch.Tensor
    ):
        self.engine = engine
        self.model = engine.model
        self.num_frames, self.key = int(num_frames), int(key)
        cfg = self.model.config
        self.window = max(int(cfg.num_maskmem), int(cfg.max_object_pointers_in_encoder))
        self.session = _Session(
            num_frames,
            video_height=engine.image_size,
            video_width=engine.image_size,
            inference_device=engine.device,
            inference_state_device=engine.device,
            video_storage_device=engine.device,
            dtype=engine.dtype,  # explicit: the string default fails on CPU
            max_vision_features_cache_size=1,
        )
        self.obj_idx = self.session.obj_id_to_idx(_OBJECT_ID)
        self._cache(self.key, key_features)
        self.session.add_mask_inputs(self.obj_idx, self.key, (key_logits > 0)[None, None])
        self.session.obj_with_new_inputs = [_OBJECT_ID]
        with torch.inference_mode(), eval_mode(self.model):
            self.model(self.session, frame_idx=self.key)

    def step(self, frame_idx: int, features: FrameFeatures, reverse: bool) -> torch.Tensor:
        """``[S, S]`` float32 logits of ``frame_idx`` (after the key frame when forward, before it when reverse)."""
        frame_idx = int(frame_idx)
        if (frame_idx <= self.key) if not reverse else (frame_idx >= self.key):
            raise ValueError(
                f"frame {frame_idx} is not {'before' if reverse else 'after'} key frame {self.key}"
            )
        self._cache(frame_idx, features)
        with torch.inference_mode(), eval_mode(self.model):
            output = self.model(self.session, frame_idx=frame_idx, reverse=reverse)
        self._prune(frame_idx, reverse)
        return self.engine._upsample(output.pred_masks)[0]

    def _cache(self, frame_idx: int, features: FrameFeatures) -> None:
        """The frame's features in the session cache (the only frame cached), as ``_new_session`` stores them."""
        maps = [*self.engine._project_high_res(features.maps[:-1]), features.maps[-1]]
        self.session.cache.cache_vision_features(
            frame_idx,
            {
                "vision_feats": [m.flatten(2).permute(2, 0, 1) for m in maps],  # [HW, 1, C_l]
                "vision_pos_embeds": [p.flatten(2).permute(2, 0, 1) for p in features.positions],
            },
        )

    def _prune(self, frame_idx: int, reverse: bool) -> None:
        """Drop what no later frame reads: the output ``window`` frames behind, unless the backward pass
        still needs it (the first ``window`` frames after the key), and the stored high-resolution masks."""
        outputs = self.session.output_dict_per_obj[self.obj_idx]["non_cond_frame_outputs"]
        tracked = self.session.frames_tracked_per_obj[self.obj_idx]
        current = outputs.get(frame_idx)
        if current is not None:
            current.pop("high_res_masks", None)
        old = frame_idx + self.window if reverse else frame_idx - self.window
        if reverse or old > self.key + self.window:
            outputs.pop(old, None)
            tracked.pop(old, None)

    def finish_forward(self) -> None:
        """Call once the forward pass is done: drops its outputs the backward pass does not read."""
        outputs = self.session.output_dict_per_obj[self.obj_idx]["non_cond_frame_outputs"]
        for frame_idx in [f for f in outputs if f > self.key + self.window]:
            del outputs[frame_idx]
