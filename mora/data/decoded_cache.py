"""A bounded in-memory cache of decoded image files (frames and label maps), for training on small datasets.

Training revisits every video many times: the tiny default draws each of its 600 synthetic videos about 12
times, and decoding its JPEG frames and label PNGs took about 60 % of the data loader's time (about 0.1 s per
step on 2 cores). With the cache on (``data.decoded_cache_mb``), each file is decoded once while the cache
holds it; least recently used files leave when the budget is full. Off by default: real datasets do not fit
in memory and are read once per epoch.

Entries are keyed by the file's absolute path, size and modification time, so a file rewritten on disk is
decoded again. Cached arrays are returned read-only (callers copy before writing). The cache is per
process: `configure_decoded_cache` runs in the training process and again in each data-loader worker.
"""

from __future__ import annotations

import logging
import os
import threading
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)


class DecodedCache:
    """LRU of decoded arrays within ``max_bytes`` (sum of ``ndarray.nbytes``)."""

    def __init__(self, max_bytes: int) -> None:
        if max_bytes <= 0:
            raise ValueError(f"DecodedCache needs a positive budget, got {max_bytes} bytes")
        self.max_bytes = max_bytes
        self.bytes = 0
        self.hits = 0
        self.misses = 0
        self._entries: OrderedDict[tuple, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, path: Path, decode: Callable[[Path], np.ndarray]) -> np.ndarray:
        """The decoded array of ``path`` (read-only), from the cache or from ``decode(path)``."""
        try:
            stat = os.stat(path)
        except OSError:
            return decode(path)  # the decoder reports a missing or unreadable file in its own words
        key = (os.path.abspath(path), stat.st_size, stat.st_mtime_ns)
        with self._lock:
            array = self._entries.get(key)
            if array is not None:
                self._entries.move_to_end(key)
                self.hits += 1
                return array
        array = decode(path)
        array.flags.writeable = False
        with self._lock:
            self.misses += 1
            if array.nbytes <= self.max_bytes and key not in self._entries:
                self._entries[key] = array
                self.bytes += array.nbytes
                while self.bytes > self.max_bytes:
                    _, dropped = self._entries.popitem(last=False)
                    self.bytes -= dropped.nbytes
        return array


_CACHE: DecodedCache | None = None


def configure_decoded_cache(max_mb: int) -> DecodedCache | None:
    """Turn the process-wide cache on with a budget of ``max_mb`` MiB (0: off, dropping what it holds)."""
    global _CACHE
    if max_mb < 0:
        raise ValueError(f"the decoded-file cache budget must be >= 0 MiB, got {max_mb}")
    _CACHE = DecodedCache(max_mb * 2**20) if max_mb else None
    if _CACHE is not None:
        logger.info("decoded-file cache on: up to %d MiB of decoded frames and label maps", max_mb)
    return _CACHE


def decoded_cache() -> DecodedCache | None:
    """The process-wide cache, None when off."""
    return _CACHE


def read_cached(path: Path, decode: Callable[[Path], np.ndarray]) -> np.ndarray:
    """``decode(path)``, through the process-wide cache when it is on (then read-only)."""
    return decode(path) if _CACHE is None else _CACHE.get(path, decode)
