import json

import pytest

from mora.utils.io import UnsafePathError, atomic_path, safe_join, write_json_atomic


def test_safe_join_rejects_escapes(tmp_path):
    (tmp_path / "a").mkdir()
    assert safe_join(tmp_path, "a/b.png") == (tmp_path / "a" / "b.png").resolve()
    with pytest.raises(UnsafePathError, match="escapes"):
        safe_join(tmp_path, "../outside.png")
    with pytest.raises(UnsafePathError, match="absolute"):
        safe_join(tmp_path, "/etc/passwd")
    (tmp_path / "link").symlink_to("/")
    with pytest.raises(UnsafePathError, match="escapes"):
        safe_join(tmp_path, "link/etc")


def test_atomic_file_is_invisible_until_complete(tmp_path):
    final = tmp_path / "out.json"
    with pytest.raises(RuntimeError):
        with atomic_path(final) as tmp:
            tmp.write_text("partial")
            raise RuntimeError("crash mid-write")
    assert not final.exists()
    assert list(tmp_path.iterdir()) == []  # no temp debris either
    write_json_atomic(final, {"a": 1})
    assert json.loads(final.read_text()) == {"a": 1}


def test_atomic_folder_replaces_old_one(tmp_path):
    final = tmp_path / "ckpt"
    with atomic_path(final) as tmp:
        tmp.mkdir()
        (tmp / "w.txt").write_text("v1")
    with atomic_path(final) as tmp:
        tmp.mkdir()
        (tmp / "w.txt").write_text("v2")
    assert (final / "w.txt").read_text() == "v2"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]
