"""Lazily decoded per-frame target masks.

A ``MaskTrack`` answers, for every frame index of a video, whether the frame carries an annotation
and what the target (the union of the sample's objects) looks like there. Nothing is decoded until a
frame is asked for: COCO RLE through pycocotools, palette PNGs through PIL in 'P' mode.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils

from mora.data.decoded_cache import decoded_cache, read_cached
from mora.data.errors import DatasetFormatError

RLE = dict[str, Any]  # {"size": [H, W], "counts": str | bytes}


def encode_rle(mask: np.ndarray) -> RLE:
    """COCO RLE of one ``[H, W]`` bool mask, with ``counts`` as a JSON-ready str."""
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(rle["size"][0]), int(rle["size"][1])], "counts": rle["counts"].decode("ascii")}


def decode_rle(rle: RLE) -> np.ndarray:
    """``[H, W]`` bool mask from a compressed (str/bytes counts) or uncompressed (list counts) RLE."""
    counts = rle["counts"]
    if isinstance(counts, list):
        rle = mask_utils.frPyObjects(rle, *rle["size"])
    elif isinstance(counts, str):
        rle = {"size": list(rle["size"]), "counts": counts.encode("ascii")}
    return mask_utils.decode(rle).astype(bool)


def rle_area(rle: RLE) -> int:
    counts = rle["counts"]
    if isinstance(counts, list):
        return int(sum(counts[1::2]))
    if isinstance(counts, str):
        rle = {"size": list(rle["size"]), "counts": counts.encode("ascii")}
    return int(mask_utils.area(rle))


_SHARED_LABELS: ContextVar[dict[Path, np.ndarray] | None] = ContextVar("shared_labels", default=None)


@contextmanager
def shared_label_reads() -> Iterator[None]:
    """Within the block every label PNG is decoded once: the questions of one video read the same label
    maps, one object id each (`make_video_group`). The cache ends with the block."""
    token = _SHARED_LABELS.set({})
    try:
        yield
    finally:
        _SHARED_LABELS.reset(token)


def read_label_png(path: Path) -> np.ndarray:
    """``[H, W]`` integer labels of an indexed (palette) or grayscale PNG; value = object id.

    Read-only when returned from a `shared_label_reads` block's cache or the decoded-file cache
    (`mora.data.decoded_cache`, which then serves every read)."""
    if decoded_cache() is not None:
        return read_cached(path, _read_label_png)
    cache = _SHARED_LABELS.get()
    if cache is None:
        return _read_label_png(path)
    if path not in cache:
        labels = _read_label_png(path)
        labels.flags.writeable = False
        cache[path] = labels
    return cache[path]


def _read_label_png(path: Path) -> np.ndarray:
    try:
        with Image.open(path) as image:
            if image.mode not in ("P", "L", "I", "I;16", "1"):
                raise DatasetFormatError(
                    path, f"mask PNG has mode {image.mode!r}; expected a palette ('P') PNG"
                )
            return np.asarray(image)
    except (OSError, SyntaxError) as exc:
        raise DatasetFormatError(path, f"unreadable mask image ({exc})") from exc


class MaskTrack(ABC):
    """Target masks of one sample, one entry per frame of the video."""

    num_frames: int

    @abstractmethod
    def is_annotated(self, index: int) -> bool:
        """Whether frame ``index`` carries ground truth (an empty target still counts)."""

    @abstractmethod
    def _decode(self, index: int) -> np.ndarray | None:
        """``[H, W]`` bool target of an annotated frame."""

    @property
    @abstractmethod
    def size(self) -> tuple[int, int] | None:
        """(H, W) of the masks when known without decoding."""

    def __len__(self) -> int:
        return self.num_frames

    def _check(self, index: int) -> int:
        if not -self.num_frames <= index < self.num_frames:
            raise IndexError(f"frame index {index} out of range for a track of {self.num_frames} frames")
        return index % self.num_frames

    def __getitem__(self, index: int) -> np.ndarray:
        """``[H, W]`` bool target at frame ``index``; all False where the frame is not annotated."""
        index = self._check(index)
        mask = self._decode(index) if self.is_annotated(index) else None
        if mask is None:
            if self.size is None:
                raise ValueError("mask size unknown for an unannotated frame; give the track a size")
            return np.zeros(self.size, dtype=bool)
        return mask

    def annotated_indices(self) -> list[int]:
        return [i for i in range(self.num_frames) if self.is_annotated(i)]

    def present(self, index: int) -> bool:
        """Whether the target is visible (non-empty) at frame ``index``."""
        index = self._check(index)
        return self.is_annotated(index) and bool(self[index].any())


class EmptyMaskTrack(MaskTrack):
    """No target anywhere: annotated-empty (no-target expressions) or not annotated at all (no GT)."""

    def __init__(self, num_frames: int, size: tuple[int, int] | None, *, annotated: bool) -> None:
        self.num_frames = num_frames
        self._size = size
        self._annotated = annotated

    @property
    def size(self) -> tuple[int, int] | None:
        return self._size

    def is_annotated(self, index: int) -> bool:
        return self._annotated

    def _decode(self, index: int) -> np.ndarray | None:
        return None

    def present(self, index: int) -> bool:
        return False


class RLEMaskTrack(MaskTrack):
    """Union over objects of per-frame RLE lists (MeViS/ReVOS ``mask_dict`` entries; None = absent)."""

    def __init__(
        self,
        per_object: Sequence[Sequence[RLE | None]],
        *,
        num_frames: int,
        size: tuple[int, int] | None = None,
        source: str | None = None,
    ) -> None:
        self.num_frames = num_frames
        self._objects = [list(rles) for rles in per_object]
        self._source = source
        for rles in self._objects:
            if len(rles) < num_frames:
                raise DatasetFormatError(source, f"mask list has {len(rles)} entries for {num_frames} frames")
        self._size = size
        if self._size is None:
            for rles in self._objects:
                first = next((r for r in rles if r is not None), None)
                if first is not None:
                    self._size = (int(first["size"][0]), int(first["size"][1]))
                    break

    @property
    def size(self) -> tuple[int, int] | None:
        return self._size

    def is_annotated(self, index: int) -> bool:
        return True

    def _decode(self, index: int) -> np.ndarray | None:
        rles = [rles[index] for rles in self._objects if rles[index] is not None]
        if not rles:
            return None
        union = decode_rle(rles[0])
        for rle in rles[1:]:
            union |= decode_rle(rle)
        return union

    def present(self, index: int) -> bool:
        index = self._check(index)
        return any(r[index] is not None and rle_area(r[index]) > 0 for r in self._objects)


class FrameRLEMaskTrack(MaskTrack):
    """Target union stored per frame (``samples.jsonl``): frames absent from the mapping are not annotated."""

    def __init__(self, rles: Mapping[int, RLE], *, num_frames: int, size: tuple[int, int] | None) -> None:
        self.num_frames = num_frames
        self._rles = dict(rles)
        first = next(iter(self._rles.values()), None)
        self._size = size or (None if first is None else (int(first["size"][0]), int(first["size"][1])))

    @property
    def size(self) -> tuple[int, int] | None:
        return self._size

    @property
    def rles(self) -> dict[int, RLE]:
        return dict(self._rles)

    def is_annotated(self, index: int) -> bool:
        return index in self._rles

    def _decode(self, index: int) -> np.ndarray | None:
        return decode_rle(self._rles[index])

    def present(self, index: int) -> bool:
        index = self._check(index)
        return index in self._rles and rle_area(self._rles[index]) > 0


class PaletteMaskTrack(MaskTrack):
    """Palette PNG per frame (value = object id); ``None`` where the frame has no mask file."""

    def __init__(
        self, files: Sequence[Path | None], obj_ids: Sequence[int], *, size: tuple[int, int] | None = None
    ) -> None:
        self.num_frames = len(files)
        self._files = list(files)
        self._obj_ids = np.asarray(sorted(set(obj_ids)), dtype=np.int64)
        self._size = size

    @property
    def size(self) -> tuple[int, int] | None:
        if self._size is None:
            first = next((f for f in self._files if f is not None), None)
            if first is not None:
                with Image.open(first) as image:
                    self._size = (image.height, image.width)
        return self._size

    @property
    def files(self) -> list[Path | None]:
        return list(self._files)

    def is_annotated(self, index: int) -> bool:
        return self._files[index] is not None

    def _decode(self, index: int) -> np.ndarray | None:
        labels = read_label_png(self._files[index])
        if self._size is not None and labels.shape != self._size:
            raise DatasetFormatError(self._files[index], f"mask is {labels.shape}, expected {self._size}")
        if len(self._obj_ids) == 1:  # the common case, several times faster than isin
            return labels == self._obj_ids[0]
        return np.isin(labels, self._obj_ids)
