"""Binary mask stacks packed 64 pixels to a machine word.

Masks are packed with ``np.packbits``, one frame per word-aligned slot (see :class:`FrameSlots`), and the
compiled kernels (:mod:`mora.metrics.kernels`) work on the words. Working on bits instead of bytes
divides the memory traffic of every step by eight.
"""

from __future__ import annotations

import numpy as np

WORD_BITS = 64
WORD = np.dtype("<u8")


def as_stack(mask: np.ndarray, name: str) -> np.ndarray:
    """Return ``mask`` as a ``[T, H, W]`` array whose non-zero values are foreground.

    Args:
        mask: ``[H, W]`` or ``[T, H, W]`` array of any numeric or bool dtype.
        name: argument name used in error messages.
    """
    mask = np.asarray(mask)
    if mask.ndim == 2:
        mask = mask[None]
    if mask.ndim != 3:
        raise ValueError(f"{name} must be [H, W] or [T, H, W]; got shape {mask.shape}")
    if mask.dtype != np.bool_ and not np.issubdtype(mask.dtype, np.integer):
        mask = mask != 0  # floats: any non-zero value is foreground
    return mask


class FrameSlots:
    """Reusable buffer holding up to ``n_frames`` masks ``[H, W]`` bit-packed, one frame per slot.

    Pixel ``(y, x)`` of frame ``t`` is bit ``y * W + x`` of slot ``t`` (little-endian: bit ``i`` of word
    ``i // 64``), a slot is :attr:`slot_words` words long and zero past ``H * W`` bits, and ``W // 64 + 2``
    words follow the last slot: the kernels read past a frame's last row (and discard what they read).
    """

    def __init__(self, n_frames: int, height: int, width: int) -> None:
        self.shape = (height, width)
        self.slot_words = (height * width + WORD_BITS - 1) // WORD_BITS + 1
        self.extra = width // WORD_BITS + 2
        self.words = np.zeros(n_frames * self.slot_words + self.extra, WORD)

    def pack(self, mask: np.ndarray) -> np.ndarray:
        """Pack ``mask [n, H, W]`` (non-zero = foreground) into the first ``n`` slots; returns the words."""
        n, H, W = mask.shape
        if (H, W) != self.shape or n * self.slot_words + self.extra > self.words.size:
            raise ValueError(
                f"{n} frames of {H}x{W} do not fit these slots ({self.shape}, {self.words.size} words)"
            )
        packed = np.packbits(mask.reshape(n, H * W), axis=-1, bitorder="little")
        used = self.words[: n * self.slot_words].view(np.uint8).reshape(n, self.slot_words * 8)
        used[:, : packed.shape[1]] = packed
        self.words[n * self.slot_words : n * self.slot_words + self.extra] = 0  # tidy after a longer chunk
        return self.words
