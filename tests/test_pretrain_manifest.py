import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "pretrain_weights"))
import download  # noqa: E402


def test_manifest_entries_have_repo_ids():
    manifest = download.load_manifest()
    assert {
        "lisa-7b-v1",
        "sam-vit-huge",
        "sam2.1-hiera-large",
        "qwen2.5-vl-7b-instruct",
        "qwen3-vl-8b-instruct",
    } <= set(manifest)
    assert all("/" in e["repo_id"] for e in manifest.values())


def test_unknown_name_is_a_user_error():
    proc = subprocess.run(
        [sys.executable, str(ROOT / "pretrain_weights" / "download.py"), "no-such-weights"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert "unknown weight name" in proc.stderr and "Traceback" not in proc.stderr


def test_bad_manifest_raises(tmp_path):
    bad = tmp_path / "m.yaml"
    bad.write_text("weights:\n  x: {revision: main}\n")
    with pytest.raises(ValueError, match="no repo_id"):
        download.load_manifest(bad)
