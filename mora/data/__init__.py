"""Datasets: one sample schema, readers for the on-disk formats, frame sampling, batching.

Public objects are imported lazily (``import mora.data`` does not pull in torch or PyAV).
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "VideoSample": "mora.data.schema",
    "TrainingExample": "mora.data.schema",
    "MaskTrack": "mora.data.masks",
    "DatasetFormatError": "mora.data.errors",
    "read_video": "mora.data.video",
    "list_frame_files": "mora.data.video",
    "SamplingConfig": "mora.data.sampling",
    "make_example": "mora.data.sampling",
    "DatasetSpec": "mora.data.dataset",
    "build_dataset": "mora.data.dataset",
    "load_samples": "mora.data.dataset",
    "MixtureDataset": "mora.data.dataset",
    "VideoGroundingDataset": "mora.data.dataset",
    "MoRACollator": "mora.data.collator",
    "read_groundmore": "mora.data.readers.groundmore",
    "read_refytvos": "mora.data.readers.refytvos",
    "read_mevis": "mora.data.readers.mevis",
    "read_revos": "mora.data.readers.mevis",
    "read_samples_jsonl": "mora.data.readers.jsonl",
    "write_samples_jsonl": "mora.data.readers.jsonl",
}

__all__ = list(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'mora.data' has no attribute {name!r}")
