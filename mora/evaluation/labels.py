"""Label PNGs (palette or grayscale, pixel = object id), decoded once per process while reused.

Every question / expression of a video reads the same annotation PNGs for its own object ids; a small
cache keyed by path, modification time and size keeps the decoded labels of the last frames read, so a
video's annotations are decoded once instead of once per question. The cache is bounded in bytes.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from pathlib import Path

import numpy as np

from mora.data.masks import read_label_png

# decoded labels kept per process: a video's 20 GroundMoRe frames at 1080p fit several times over
CACHE_BYTES = 96 << 20

_cache: OrderedDict[tuple[str, int, int], np.ndarray] = OrderedDict()
_cached_bytes = 0


def read_labels(path: str | os.PathLike) -> np.ndarray:
    """Decoded label image ``[H, W]`` (read-only; palette PNGs give their indices, not colours),
    decoded by the training reader's `read_label_png`.

    Raises:
        OSError: the file is missing.
        DatasetFormatError: the file is not a palette or grayscale image.
    """
    global _cached_bytes
    path = str(Path(path))
    stat = os.stat(path)
    key = (path, stat.st_mtime_ns, stat.st_size)
    labels = _cache.get(key)
    if labels is not None:
        _cache.move_to_end(key)
        return labels
    labels = read_label_png(Path(path))
    labels.flags.writeable = False
    _cache[key] = labels
    _cached_bytes += labels.nbytes
    while _cached_bytes > CACHE_BYTES and len(_cache) > 1:
        _, old = _cache.popitem(last=False)
        _cached_bytes -= old.nbytes
    return labels


def clear_cache() -> None:
    global _cached_bytes
    _cache.clear()
    _cached_bytes = 0
