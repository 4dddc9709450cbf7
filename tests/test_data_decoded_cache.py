import os

import numpy as np
import pytest
from PIL import Image

from mora.data.decoded_cache import DecodedCache, configure_decoded_cache, decoded_cache
from mora.data.errors import DatasetFormatError
from mora.data.masks import read_label_png
from mora.data.video import read_frame_files, read_image


@pytest.fixture
def cache_on():
    configure_decoded_cache(1)
    yield decoded_cache()
    configure_decoded_cache(0)


def _jpeg(path, value):
    Image.fromarray(np.full((16, 16, 3), value, np.uint8)).save(path)
    return path


def _labels(path, value):
    image = Image.fromarray(np.full((8, 8), value, np.uint8), mode="P")
    image.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0] + [0] * (256 * 3 - 9))
    image.save(path)
    return path


def test_reads_equal_the_uncached_ones_and_decode_each_file_once(tmp_path, cache_on):
    frames = [_jpeg(tmp_path / f"{i}.jpg", 40 * i) for i in range(3)]
    label = _labels(tmp_path / "0.png", 2)
    configure_decoded_cache(0)
    plain = read_frame_files(frames), read_label_png(label)
    cache = configure_decoded_cache(1)
    for _ in range(3):
        np.testing.assert_array_equal(read_frame_files(frames), plain[0])
        np.testing.assert_array_equal(read_label_png(label), plain[1])
    assert (cache.misses, cache.hits, len(cache)) == (4, 8, 4)
    assert not read_image(frames[0]).flags.writeable  # shared: callers copy before writing
    assert read_frame_files(frames).flags.writeable  # stacked: a fresh array


def test_a_rewritten_file_is_decoded_again(tmp_path, cache_on):
    path = _jpeg(tmp_path / "a.jpg", 10)
    first = read_image(path)
    _jpeg(path, 200)
    stat = os.stat(path)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # a later modification time
    assert abs(int(read_image(path).mean()) - 200) < 3 and abs(int(first.mean()) - 10) < 3


def test_least_recently_used_files_leave_when_the_budget_is_full(tmp_path):
    cache = DecodedCache(max_bytes=2 * 16 * 16 * 3)  # room for two decoded frames
    paths = [_jpeg(tmp_path / f"{i}.jpg", i) for i in range(3)]

    def decode(path):
        return np.asarray(Image.open(path).convert("RGB"))

    cache.get(paths[0], decode)
    cache.get(paths[1], decode)
    cache.get(paths[0], decode)  # 0 is now the most recent
    cache.get(paths[2], decode)  # evicts 1
    assert len(cache) == 2 and cache.bytes == 2 * 16 * 16 * 3
    hits = cache.hits
    cache.get(paths[0], decode)
    assert cache.hits == hits + 1
    cache.get(paths[1], decode)
    assert cache.hits == hits + 1 and cache.misses == 4
    with pytest.raises(ValueError, match="positive budget"):
        DecodedCache(0)
    with pytest.raises(ValueError, match=">= 0 MiB"):
        configure_decoded_cache(-1)


def test_missing_and_broken_files_keep_their_errors(tmp_path, cache_on):
    with pytest.raises(DatasetFormatError, match="missing.jpg"):
        read_image(tmp_path / "missing.jpg")
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png")
    with pytest.raises(DatasetFormatError, match="broken.png"):
        read_label_png(broken)
    assert len(cache_on) == 0
