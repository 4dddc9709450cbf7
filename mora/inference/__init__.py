"""Streaming video inference: `predict_video` answers questions about a video file or frame folder and writes
masks of every frame (COCO RLE in ``prediction.json``, PNGs), the span and an overlay video, in bounded memory.
"""

from mora.inference.options import (
    DEFAULT_KEY_FRAMES,
    PredictOptions,
    QuestionError,
    QuestionResult,
    VideoResult,
)
from mora.inference.pipeline import predict_video
from mora.inference.video_source import VideoInputError, VideoSource, select_frames
from mora.inference.writers import decode_rle, encode_rle

__all__ = [
    "DEFAULT_KEY_FRAMES",
    "PredictOptions",
    "QuestionError",
    "QuestionResult",
    "VideoInputError",
    "VideoResult",
    "VideoSource",
    "decode_rle",
    "encode_rle",
    "predict_video",
    "select_frames",
]
