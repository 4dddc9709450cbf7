"""Binary mask stacks packed 64 pixels to a machine word, and the word-level shifts the metrics need.

A packed stack ``words [T, H, n_words] uint64`` holds pixel ``x`` of row ``y`` of frame ``t`` in bit
``x % 64`` of ``words[t, y, x // 64]`` (little-endian bit order). ``n_words = W // 64 + 1``, so at least
one padding bit (always zero in a packed mask) follows the last column. Working on bits instead of
bytes divides the memory traffic of every morphological step by eight, which is where the speed of
:mod:`mora.metrics.boundary` comes from.
"""

from __future__ import annotations

import numpy as np

WORD_BITS = 64
_WORD = np.dtype("<u8")


def num_words(width: int) -> int:
    """Words per packed row for ``width`` pixels, keeping at least one padding bit."""
    return width // WORD_BITS + 1


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


def pack_masks(mask: np.ndarray) -> np.ndarray:
    """Pack ``mask [T, H, W]`` (non-zero = foreground) into ``words [T, H, n_words] uint64``."""
    T, H, W = mask.shape
    n_bytes = (W + 7) // 8
    out = np.zeros((T, H, num_words(W) * 8), dtype=np.uint8)
    out[..., :n_bytes] = np.packbits(mask, axis=-1, bitorder="little")
    return out.view(_WORD)


def popcount(words: np.ndarray) -> np.ndarray:
    """Number of set bits per frame: ``words [T, ...]`` -> ``int64 [T]``."""
    return np.bitwise_count(words).reshape(words.shape[0], -1).sum(axis=1, dtype=np.int64)


def or_shifted_right(acc: np.ndarray, src: np.ndarray, k: int, tmp: np.ndarray) -> None:
    """``acc |= src`` moved ``k`` pixels towards larger x (pixel x receives pixel x - k); in place.

    Bits moved past the last word or before x = 0 are dropped (they lie outside the frame).
    ``tmp`` is scratch space of the same shape as ``src``.
    """
    q, s = divmod(k, WORD_BITS)
    n = src.shape[-1]
    if q >= n:
        return
    a, o, t = src[..., : n - q], acc[..., q:], tmp[..., q:]
    if s == 0:
        np.bitwise_or(o, a, out=o)
        return
    np.left_shift(a, np.uint64(s), out=t)
    np.bitwise_or(o, t, out=o)
    np.right_shift(a[..., :-1], np.uint64(WORD_BITS - s), out=t[..., 1:])
    np.bitwise_or(o[..., 1:], t[..., 1:], out=o[..., 1:])


def or_shifted_left(acc: np.ndarray, src: np.ndarray, k: int, tmp: np.ndarray) -> None:
    """``acc |= src`` moved ``k`` pixels towards smaller x (pixel x receives pixel x + k); in place."""
    q, s = divmod(k, WORD_BITS)
    n = src.shape[-1]
    if q >= n:
        return
    a, o, t = src[..., q:], acc[..., : n - q], tmp[..., : n - q]
    if s == 0:
        np.bitwise_or(o, a, out=o)
        return
    np.right_shift(a, np.uint64(s), out=t)
    np.bitwise_or(o, t, out=o)
    np.left_shift(a[..., 1:], np.uint64(WORD_BITS - s), out=t[..., :-1])
    np.bitwise_or(o[..., :-1], t[..., :-1], out=o[..., :-1])
