"""`predict_video`: a video file or frame folder + questions -> masks of every frame, span, answer, overlay.

Memory stays bounded by the chunk size, not the video length:

1. the K key frames are decoded by seeking and encoded once (`encode_clip`); each question is answered on
   them (`ground_clip`): text, ``[SEG]`` prompts, in-span scores of the key frames (interpolated in time
   to every frame);
2. the mask engine runs over the frames in chunks, each chunk encoded once for all questions: per frame
   (`frame_masks`), or with SAM2 memory propagation from the key frame forward to the end, then backward
   to the start (`StreamingTracker`); each frame's mask is encoded (COCO RLE), its PNG written, and dropped;
3. the frames are streamed once more to compose the overlay video(s) from the RLE masks;
4. each question's folder is moved into place with its ``prediction.json`` last.

The wall time of each stage (`mora.inference.timing.STAGES`: decode, backbone, mask_engine, write, render) is
accumulated around the calls that do the work and returned as ``VideoResult.timings`` (and ``timings`` in
``prediction.json``).

With K >= the number of frames every frame is a key frame and the masks equal ``model.predict`` on the
frames. Errors leave no output behind (everything is written to a staging folder first).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from mora.data.video import linspace_indices
from mora.inference.frame_masks import KeyClipContext, decode_frames, nearest_rows
from mora.inference.options import (
    PredictOptions,
    ProgressFn,
    QuestionResult,
    VideoResult,
    check_questions,
)
from mora.inference.question import QuestionState
from mora.inference.timing import StageTimer
from mora.inference.video_source import VideoSource, select_frames
from mora.inference.writers import QuestionOutput
from mora.model.inference import _to_masks, check_predict_options, encode_clip, ground_clip
from mora.utils.logging import get_logger

logger = get_logger("inference")
OVERLAY_FALLBACK_FPS = 10.0  # a frame folder without a known rate


def question_folders(out: Path, count: int, subfolders: bool | None) -> list[Path]:
    """``out`` itself for a single question, else ``out/q001``, ``out/q002``, ..."""
    if subfolders is None:
        subfolders = count > 1
    return [out / f"q{i + 1:03d}" for i in range(count)] if subfolders else [out]


@torch.inference_mode()
def predict_video(
    model,
    video: str | os.PathLike,
    questions: str | list[str],
    out: str | os.PathLike,
    options: PredictOptions | None = None,
    *,
    progress: ProgressFn | None = None,
    model_id: str | None = None,
    subfolders: bool | None = None,
) -> VideoResult:
    """Answer ``questions`` about ``video`` and write each question's outputs (see `QuestionOutput`).

    Args:
        model: a `MoRAForVideoGrounding` with its processor (`mora.load_model`).
        video: an mp4 (any format PyAV decodes) or a folder of frames.
        questions: one question or a list (the video is decoded and encoded once for all of them).
        out: output folder; one question writes into it, several into ``q001``, ``q002``, ... inside it
            (``subfolders`` forces either layout).
        options: `PredictOptions`.
        progress: called as ``progress(stage, done, total)`` while frames are segmented and rendered.
        model_id: what ``prediction.json`` names as the model (default: ``model.name_or_path``).

    Raises:
        VideoInputError, QuestionError, ValueError: bad input (one-line messages); nothing is written.
    """
    timer = StageTimer()  # total: from here
    options = options or PredictOptions()
    propagation = check_predict_options(model, options.mode, options.visual_prompt, options.propagation)
    single = isinstance(questions, str)
    questions = [questions] if single else list(questions)
    source = VideoSource(video, options.folder_fps)
    info = source.info
    indices = select_frames(
        info, start=options.start, end=options.end, fps=options.fps, max_frames=options.max_frames
    )
    n = len(indices)
    key_positions = linspace_indices(n, options.num_key_frames(model, n))
    questions = check_questions(model, questions, len(key_positions), options.mode)
    folders = question_folders(Path(out), len(questions), subfolders)
    outputs = [QuestionOutput(folder, pngs=options.pngs) for folder in folders]
    try:
        with timer("decode"):
            key_frames = source.read([indices[p] for p in key_positions])
        with timer("backbone"):
            clip = encode_clip(model, key_frames)
        clip.engine_cache = {}  # the key frames' engine features, shared by the questions
        states = []
        for question, output in zip(questions, outputs):
            with timer("backbone"):
                grounding = ground_clip(
                    model,
                    clip,
                    question,
                    mode=options.mode,
                    visual_prompt=options.visual_prompt,
                    propagation=propagation,
                )
            with timer("mask_engine"):  # the key frames' masks (per frame) or the tracker's start (memory)
                state = QuestionState(
                    model,
                    grounding,
                    key_positions,
                    n,
                    gate=options.gate,
                    propagation=propagation,
                    output=output,
                )
            states.append(state)
        names = source.frame_names
        frame_names = [names[i] for i in indices]
        runner = _Runner(model, source, indices, frame_names, clip, states, options, progress, timer)
        runner.segment()
        fps = _output_fps(info.fps, indices)
        if options.overlay:
            runner.render(fps or OVERLAY_FALLBACK_FPS)
        result = VideoResult(info.path, fps, indices, [indices[p] for p in key_positions])
        for question, state in zip(questions, states):
            with timer("write"):
                record = _prediction_record(
                    model, model_id, question, state, info, indices, frame_names, result, options
                )
                record["timings"] = timer.summary()  # so far: this file's own writing is not in it
                folder = state.output.commit(record)
            result.questions.append(_question_result(question, state, folder, record))
        result.timings = timer.summary()
    except BaseException:
        for output in outputs:
            output.discard()
        raise
    return result


class _Runner:
    """The mask-engine sweeps and the overlay pass over the selected frames."""

    def __init__(self, model, source, indices, frame_names, clip, states, options, progress, timer):
        self.model, self.source, self.indices, self.names = model, source, indices, frame_names
        self.timer = timer
        self.clip, self.states, self.options = clip, states, options
        self.geometry = clip.geometry
        self.ctx = KeyClipContext(model, clip)
        self.key_positions = states[0].key_positions if states else []
        forward = set().union(*(s.forward_positions() for s in states))
        reverse = set().union(*(s.reverse_positions() for s in states))
        self.forward, self.reverse = sorted(forward), sorted(reverse)
        self.total = len(self.forward) + len(self.reverse)
        self.done = 0
        self.progress = progress

    def _report(self, stage: str, count: int, total: int) -> None:
        self.done += count
        if self.progress is not None:
            self.progress(stage, self.done, total)

    def _frames(self, positions: list[int]):
        """``(positions, engine frames [n, 3, S, S] on the device, their FrameFeatures)`` in chunks."""
        by_index = {self.indices[p]: p for p in positions}
        chunks = self.source.chunks([self.indices[p] for p in positions], self.options.chunk_size)
        for idx, frames in self.timer.iterate("decode", chunks):
            with self.timer("mask_engine"):
                pix = self.model.processor.prepare_mask_frames(frames)[0].to(self.model.device)
                feats = self.model.engine_features(pix)
            yield [by_index[i] for i in idx], pix, feats

    def segment(self) -> None:
        """Every question's mask of every position, in a forward sweep and (SAM2 memory) a backward sweep."""
        for state in self.states:
            decoded = state.forward_positions_set | state.reverse_positions_set
            for p in range(len(self.indices)):
                if p not in decoded and state.ready_mask(p):
                    self._add(state, p, *state.known_logits_or_mask(p))
        self.done = 0
        for positions, pix, feats in self._frames(self.forward):
            for state in self.states:
                wanted = [i for i, p in enumerate(positions) if p in state.forward_positions_set]
                if wanted:
                    with self.timer("mask_engine"):
                        self._forward(
                            state, [positions[i] for i in wanted], pix[wanted], feats.select(wanted)
                        )
            self._report("segment", len(positions), self.total)
        for state in self.states:
            if state.tracker is not None:
                with self.timer("mask_engine"):
                    state.tracker.finish_forward()
        size = self.options.chunk_size
        for end in range(len(self.reverse), 0, -size):
            chunk = self.reverse[max(0, end - size) : end]
            for positions, _, feats in self._frames(chunk):
                for i in reversed(range(len(positions))):
                    for state in self.states:
                        if positions[i] in state.reverse_positions_set:
                            with self.timer("mask_engine"):
                                logits = state.tracker.step(positions[i], feats.select([i]), reverse=True)
                                self._add(state, positions[i], "logits", logits)
                self._report("segment", len(positions), self.total)

    def _forward(self, state: QuestionState, positions: list[int], pix, feats) -> None:
        if state.kind == "per_frame":
            rows = nearest_rows(positions, self.key_positions)
            logits = decode_frames(self.ctx, [state.grounding], feats, pix, rows)[0]
            masks = _to_masks(logits, self.geometry)
            for p, mask in zip(positions, masks):
                self._add(state, p, "mask", mask)
        else:
            for i, p in enumerate(positions):
                logits = state.tracker.step(p, feats.select([i]), reverse=False)
                self._add(state, p, "logits", logits)

    def _add(self, state: QuestionState, position: int, kind: str, value) -> None:
        H, W = self.geometry.orig_size
        if kind == "logits":
            with self.timer("mask_engine"):
                value = _to_masks(value[None], self.geometry)[0]
        if kind == "empty" or not state.in_span(position) or value is None:
            value = np.zeros((H, W), bool)
        with self.timer("write"):
            state.output.add_mask(position, self.names[position], value)

    def render(self, fps: float) -> None:
        """Stream the frames once more and compose every question's overlay video."""
        H, W = self.geometry.orig_size
        with self.timer("render"):
            for state in self.states:
                state.output.open_overlay(W, H, fps, self.options.gif)
        n = len(self.indices)
        position = 0
        for _, frames in self.timer.iterate(
            "decode", self.source.chunks(self.indices, self.options.chunk_size)
        ):
            with self.timer("render"):
                for frame in frames:
                    for state in self.states:
                        state.output.add_overlay(position, frame, n, state.span)
                    position += 1
            if self.progress is not None:
                self.progress("render", position, n)
        with self.timer("render"):
            for state in self.states:
                state.output.close_overlay()


def _output_fps(source_fps: float | None, indices: list[int]) -> float | None:
    """Frame rate of the output frames (their mean spacing in the video)."""
    if source_fps is None:
        return None
    if len(indices) < 2:
        return source_fps
    return source_fps * (len(indices) - 1) / (indices[-1] - indices[0])


def _seconds(index: int, fps: float | None) -> float | None:
    return None if fps is None else round(index / fps, 6)


def _prediction_record(model, model_id, question, state, info, indices, names, result, options) -> dict:
    g = state.grounding
    span = None if state.span is None else [indices[state.span[0]], indices[state.span[1]]]
    seconds = None if span is None or info.fps is None else [_seconds(i, info.fps) for i in span]
    key_scores = [None if np.isnan(s) else float(s) for s in g.scores]
    return {
        "model": model_id or str(getattr(model, "name_or_path", "") or ""),
        "question": question,
        "text": g.text,
        "span": span,
        "span_seconds": seconds,
        "frames": names,
        "frame_indices": list(indices),
        "times": None if info.fps is None else [_seconds(i, info.fps) for i in indices],
        "frame_scores": [None if np.isnan(s) else float(s) for s in state.scores],
        "key_frames": result.key_frames,
        "key_frame_scores": key_scores,
        "masks": [state.output.rles[p] for p in range(len(indices))],
        "video": {
            "path": str(info.path),
            "fps": info.fps,
            "num_frames": info.num_frames,
            "height": info.height,
            "width": info.width,
        },
        "fps": result.fps,
        "mode": options.mode,
        "gate": options.gate,
        "visual_prompt": options.visual_prompt,
        "window": {
            "start": options.start,
            "end": options.end,
            "fps": options.fps,
            "max_frames": options.max_frames,
        },
    }


def _question_result(question: str, state: QuestionState, folder: Path, record: dict) -> QuestionResult:
    def present(name: str) -> Path | None:
        return folder / name if (folder / name).exists() else None

    span = record["span"]
    return QuestionResult(
        question=question,
        text=record["text"],
        folder=folder,
        prediction_json=folder / "prediction.json",
        overlay=present("overlay.mp4"),
        gif=present("overlay.gif"),
        span_frames=None if span is None else (span[0], span[1]),
        span_seconds=None if record["span_seconds"] is None else tuple(record["span_seconds"]),
        frame_scores=state.scores,
    )
