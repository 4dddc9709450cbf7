"""The per-process cache of decoded label PNGs: reuse, invalidation on rewrite, bounded size."""

import os

import numpy as np
from PIL import Image

from mora.evaluation import labels


def write_palette(path, array):
    img = Image.fromarray(array.astype(np.uint8), mode="P")
    img.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0] + [0] * (256 * 3 - 9))
    img.save(path)


def test_reuse_rewrite_and_bound(tmp_path, monkeypatch):
    labels.clear_cache()
    path = tmp_path / "00000.png"
    a = np.zeros((6, 9), np.uint8)
    a[1:3, 2:5] = 2
    write_palette(path, a)
    first = labels.read_labels(path)
    np.testing.assert_array_equal(first, a)  # palette indices, not colours
    assert labels.read_labels(path) is first  # decoded once
    assert not first.flags.writeable

    b = a.copy()
    b[4, 4] = 1
    write_palette(path, b)
    stat = os.stat(path)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))  # same second on coarse clocks
    np.testing.assert_array_equal(labels.read_labels(path), b)

    monkeypatch.setattr(labels, "CACHE_BYTES", 2 * a.nbytes)
    paths = []
    for i in range(4):
        paths.append(tmp_path / f"{i + 1:05d}.png")
        write_palette(paths[-1], a + i)
        labels.read_labels(paths[-1])
    assert len(labels._cache) == 2 and labels._cached_bytes == 2 * a.nbytes
    np.testing.assert_array_equal(labels.read_labels(paths[0]), a)  # evicted, decoded again
    labels.clear_cache()
