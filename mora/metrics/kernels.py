"""Compiled per-frame kernels behind :mod:`mora.metrics` (numba, single-threaded, GIL released).

Layout. Every frame ``[H, W]`` is packed into its own *slot* of ``FW`` 64-bit words
(:class:`mora.metrics.bitpack.FrameSlots`): pixel ``(y, x)`` is bit ``y * W + x`` of the slot
(little-endian: bit ``i`` of word ``i // 64``), every bit past ``H * W`` is zero. Rows are not
word-aligned; all row arithmetic is done on bit positions, so every pass over a frame is one long loop
over its words, which LLVM vectorises. For every frame the kernel

1. counts ``|P & G|``, ``|P|``, ``|G|`` (J),
2. computes both boundary maps as DAVIS-2017 ``_seg2bmap`` does: a pixel is on the boundary when the
   2x2 window it opens towards east / south / south-east is not constant, the window cut at the image
   edge (the last column has no east neighbour, the last row no south neighbour). With ``h`` the
   difference of a pixel and its east neighbour and ``s`` the pixel ``W`` bits further (south), the
   boundary is ``h | h_south | (x ^ s)``; the last column is masked out of ``h``, the last row keeps ``h``,
3. counts, for every boundary pixel of one map, whether a boundary pixel of the other lies in the disk
   ``dx^2 + dy^2 <= r^2`` around it (both directions). The disk test runs on 64-bit *windows*: window
   ``(y, u)`` holds columns ``[u * step - halo, u * step + step + halo)`` of row ``y`` (``halo >= r``;
   columns outside the frame masked off), so a horizontal dilation by up to ``r`` never needs bits from
   another word. The windows whose centre (columns ``[u * step, (u + 1) * step)``) holds query pixels
   are listed; for all of them at once, one row distance ``d`` at a time, the source windows of rows
   ``y - d`` and ``y + d`` are gathered and OR-ed in a Horner scheme (widest disk row first, the
   accumulated rows dilated by each decrease of the half-width), then AND-ed with the query centre
   and popcounted. The boundary maps carry zero rows above and below the frame, so no gather needs a
   bounds check.

Per frame the kernel makes three passes over each slot (J, east and south differences) and works on
scratch arrays of about the frame's packed size (1.5 MB at 720p), which stay in the L2 cache.
"""

from __future__ import annotations

import numpy as np
from numba import njit

# columns of the per-frame counts array
INTER, N_PRED, N_GT, B_PRED, B_GT, M_PRED, M_GT = range(7)
N_COUNTS = 7

_M1 = np.uint64(0x5555555555555555)
_M2 = np.uint64(0x3333333333333333)
_M4 = np.uint64(0x0F0F0F0F0F0F0F0F)
_H01 = np.uint64(0x0101010101010101)
_ONE = np.uint64(1)


@njit(cache=True, nogil=True, inline="always")
def _popcount(x):
    # LLVM turns this into a single popcnt instruction
    x = x - ((x >> np.uint64(1)) & _M1)
    x = (x & _M2) + ((x >> np.uint64(2)) & _M2)
    x = (x + (x >> np.uint64(4))) & _M4
    return np.int64((x * _H01) >> np.uint64(56))


@njit(cache=True, nogil=True, inline="always")
def _bits_at(words, p):
    """The 64 bits starting at bit ``p >= 0`` of ``words`` (reads words ``p // 64`` and the next one)."""
    up = np.uint64(p)
    k = up >> np.uint64(6)  # unsigned: no negative-index check, so gathers vectorise
    b = up & np.uint64(63)
    # (x << 1) << (63 - b) is x << (64 - b), and 0 for b == 0 where a shift by 64 is undefined
    return (words[k] >> b) | ((words[k + _ONE] << _ONE) << (np.uint64(63) - b))


@njit(cache=True, nogil=True)
def frame_masks(H, W, n_words):
    """Bit masks of a slot ``[2, n_words]``: the last column; every bit from the last row on."""
    masks = np.zeros((2, n_words), np.uint64)
    for y in range(H):
        p = y * W + W - 1
        masks[0, p >> 6] |= _ONE << np.uint64(p & 63)
    for p in range((H - 1) * W, n_words * 64):
        masks[1, p >> 6] |= _ONE << np.uint64(p & 63)
    return masks


@njit(cache=True, nogil=True)
def _boundary_map(x, H, W, FW, masks, diff, out, any_rows):
    """``_seg2bmap`` of slot ``x`` (``FW + W // 64 + 2`` readable words) into ``out [FW]``; returns its pixel count.

    Args:
        masks: :func:`frame_masks`.
        diff: scratch ``[FW + W // 64 + 2]`` whose words from ``FW`` on are zero.
        any_rows: ``[H]`` set to ``False`` for rows that certainly hold no boundary pixel.
    """
    # (loops index views with the loop counter only: an index like ``i + q`` makes numba check for
    # negative indices, which stops LLVM from vectorising the loop)
    last_col, from_last_row = masks[0], masks[1]
    # pixel vs east neighbour; the last column has none (bits past the frame are zero and stay so)
    here, east, col = x[: FW - 1], x[1:FW], last_col[: FW - 1]
    for i in range(FW - 1):
        w = here[i]
        diff[i] = (w ^ ((w >> _ONE) | (east[i] << np.uint64(63)))) & ~col[i]
    diff[FW - 1] = 0
    # south neighbours: the bits W further on, i.e. words q and q + 1 further shifted by sh
    q = W >> 6
    sh = np.uint64(W & 63)
    back = np.uint64(63) - sh  # (v << 1) << back is v << (64 - sh), and 0 for sh == 0
    s0, s1, d0, d1 = x[q : q + FW], x[q + 1 : q + 1 + FW], diff[q : q + FW], diff[q + 1 : q + 1 + FW]
    for i in range(FW):
        south = (s0[i] >> sh) | ((s1[i] << _ONE) << back)
        diff_south = (d0[i] >> sh) | ((d1[i] << _ONE) << back)
        out[i] = diff[i] | diff_south | (x[i] ^ south)
    # the last row has no south neighbour: it keeps its horizontal differences only (and what lies past
    # the frame, where the south neighbour is another frame's data, gets the zero differences there)
    first = ((H - 1) * W) >> 6
    for i in range(first, FW):
        out[i] = (out[i] & ~from_last_row[i]) | (diff[i] & from_last_row[i])
    # pixel count, and the rows the non-zero words touch
    n = 0
    for y in range(H):
        any_rows[y] = False
    y = 0
    row_end = W  # first bit of row y + 1
    for i in range(FW):
        w = out[i]
        if w == 0:
            continue
        n += _popcount(w)
        lo = i * 64
        while row_end <= lo:
            y += 1
            row_end += W
        any_rows[y] = True
        yy, end = y, row_end
        while end <= lo + 63 and yy + 1 < H:
            yy += 1
            end += W
            any_rows[yy] = True
    return n


@njit(cache=True, nogil=True)
def _spread_all(acc, n, k):
    """Dilate the bits of every ``acc[:n]`` by ``k`` to both sides (bits pushed out of a word drop)."""
    done = 0
    while done < k:
        s = min(done + 1, k - done)
        us = np.uint64(s)
        for i in range(n):
            v = acc[i]
            acc[i] = v | (v << us) | (v >> us)
        done += s


@njit(cache=True, nogil=True)
def _matched(query, query_rows, source, H, W, base, r, halo, step, n_windows, spreads, windows, starts, bits):
    """Pixels of boundary map ``query`` with a pixel of ``source`` in the disk of radius ``r``.

    Args:
        query, source: boundary maps with the frame at bit ``base`` and at least ``r`` rows plus one
            window of zero bits on either side.
        query_rows: ``[H]`` rows of ``query`` that may hold boundary pixels.
        spreads: ``spreads[d]`` (``d = 1 .. r``) is the dilation applied to the accumulated rows before
            the rows at distance ``d`` are added (rows at distance ``r`` have half-width 0, so nothing
            follows them).
        windows: ``uint64 [2, n_windows]``: per window column, its centre bits and all its bits that
            lie inside the frame.
        starts, bits: scratch, ``int64 [H * n_windows]`` and ``uint64 [3, H * n_windows]``.
    """
    centre, inside = windows[0], windows[1]
    cen, valid, acc = bits[0], bits[1], bits[2]
    # list the windows whose centre holds query pixels
    n = 0
    for y in range(H):
        if not query_rows[y]:
            continue
        row = base + y * W - halo
        for u in range(n_windows):
            p = row + u * step
            c = _bits_at(query, p) & centre[u]
            if c != 0:
                starts[n] = p
                cen[n] = c
                valid[n] = inside[u]
                n += 1
    # the disk around them, one row distance at a time (gathers LLVM vectorises)
    for i in range(n):
        acc[i] = _bits_at(source, starts[i]) & valid[i]
    for d in range(1, r + 1):
        _spread_all(acc, n, spreads[d])
        off = d * W
        for i in range(n):
            p = starts[i]
            acc[i] |= (_bits_at(source, p + off) | _bits_at(source, p - off)) & valid[i]
    matched = 0
    for i in range(n):
        matched += _popcount(acc[i] & cen[i])
    return matched


@njit(cache=True, nogil=True)
def frame_counts(pred, gt, T, H, W, FW, r, halo, step, n_windows, spreads, windows, need_f, counts, bmaps):
    """Counts of ``T`` frame slots of two masks into ``counts [T, N_COUNTS]`` int64 (see module doc).

    Args:
        pred, gt: ``uint64 [T * FW + W // 64 + 2]``: frame ``t`` in words ``t * FW .. (t + 1) * FW``;
            the words after the last slot keep the south-neighbour reads of the last frame's last row
            in bounds (their content is never used, like the next frame's words for the other frames).
        FW: words per slot, at least one more than the frame's pixels need.
        r, halo, step, n_windows: disk radius and window geometry; ``n_windows == 0`` skips step 3 and
            stores the boundary maps in ``bmaps [2, T, FW]`` (predictions, ground truths) instead.
        spreads: ``int64 [r + 1]`` Horner dilations (see :func:`_matched`).
        windows: ``uint64 [2, n_windows]`` per window column, its centre bits and all its bits that lie
            inside the frame.
        need_f: ``False`` stops after the J counts (boundary columns are left at 0).
    """
    extra = W // 64 + 2
    masks = frame_masks(H, W, FW)
    diff = np.zeros(FW + extra, np.uint64)
    # boundary maps with zero rows above and below the frame, so the disk never leaves the buffer
    pad = (r * W) // 64 + 4
    base = pad * 64
    p_map = np.zeros(pad + FW + pad, np.uint64)
    g_map = np.zeros(pad + FW + pad, np.uint64)
    p_any = np.empty(H, np.bool_)
    g_any = np.empty(H, np.bool_)
    starts = np.empty(max(1, H * n_windows), np.int64)
    bits = np.empty((3, max(1, H * n_windows)), np.uint64)
    for t in range(T):
        out = counts[t]
        o = t * FW
        inter = 0
        n_pred = 0
        n_gt = 0
        p_slot = pred[o : o + FW + extra]
        g_slot = gt[o : o + FW + extra]
        for i in range(FW):
            x = p_slot[i]
            z = g_slot[i]
            inter += _popcount(x & z)
            n_pred += _popcount(x)
            n_gt += _popcount(z)
        out[INTER] = inter
        out[N_PRED] = n_pred
        out[N_GT] = n_gt
        for c in range(B_PRED, N_COUNTS):
            out[c] = 0
        if not need_f:
            continue
        out[B_PRED] = _boundary_map(p_slot, H, W, FW, masks, diff, p_map[pad : pad + FW], p_any)
        out[B_GT] = _boundary_map(g_slot, H, W, FW, masks, diff, g_map[pad : pad + FW], g_any)
        if n_windows > 0:
            geometry = (H, W, base, r, halo, step, n_windows, spreads, windows, starts, bits)
            out[M_PRED] = _matched(p_map, p_any, g_map, *geometry)
            out[M_GT] = _matched(g_map, g_any, p_map, *geometry)
        else:
            bmaps[0, t] = p_map[pad : pad + FW]
            bmaps[1, t] = g_map[pad : pad + FW]
