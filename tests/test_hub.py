"""The Hub, offline: loading by Hub id and revision from a local folder laid out like the Hub cache
(``HF_HUB_OFFLINE=1``), and publishing through a mocked ``HfApi`` (which files, the model card, no token in
the logs). A fake upload that writes into the cache closes the loop: push, then load by id and revision.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pytest
import torch

import mora
import mora.hub as hub
from mora.cli import build_tiny_model, main
from mora.hub import CheckpointNotFoundError, PushError, push_folder
from mora.model.modeling_mora import MoRAForVideoGrounding
from tests.hub_testing import add_snapshot, commit_hash

SECRET = "hf_SECRETtoken0123456789"
SCORES = {
    "overall": {"J": 0.57, "F": 0.63, "JF": 0.60, "n": 999, "tIoU": 0.70},
    "Causal": {"J": 0.50, "F": 0.59, "JF": 0.5477, "n": 297, "tIoU": 0.79},
    "baseline_empty": {
        "overall": {"J": 0.5154, "F": 0.5154, "JF": 0.5154, "n": 999},
        "Causal": {"J": 0.3756, "F": 0.3756, "JF": 0.3756, "n": 297},
    },
}
EXPECTED_FILES = {
    "config.json",
    "model.safetensors",
    "mora_processor_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "README.md",
}


def _save(model, folder: Path) -> Path:
    model.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """Two tiny checkpoints with different weights (seed 0 and 1)."""
    root = tmp_path_factory.mktemp("hub")
    return (
        _save(build_tiny_model("llava", "sam", seed=0), root / "a"),
        _save(build_tiny_model("llava", "sam", seed=1), root / "b"),
    )


def _weight(model) -> torch.Tensor:
    return model.seg_projector[0].weight.detach()


# ------------------------------------------------------------------------------------------- loading
def test_load_by_hub_id_and_revision_offline(folders, hub_cache):
    a, b = folders
    add_snapshot(hub_cache, "owner/mora-tiny", a, revision="main")
    commit_b = add_snapshot(hub_cache, "owner/mora-tiny", b, revision="v2")
    want_a, want_b = _weight(mora.load_model(a)), _weight(mora.load_model(b))
    assert not torch.equal(want_a, want_b)

    assert torch.equal(_weight(mora.load_model("owner/mora-tiny")), want_a)
    assert torch.equal(_weight(mora.load_model("owner/mora-tiny", revision="v2")), want_b)
    assert torch.equal(_weight(mora.load_model("owner/mora-tiny", revision=commit_b)), want_b)
    # from_pretrained by Hub id attaches the processor of the same revision
    model = MoRAForVideoGrounding.from_pretrained("owner/mora-tiny", revision="v2")
    assert model.processor is not None and torch.equal(_weight(model), want_b)
    assert str(hub.resolve_checkpoint("owner/mora-tiny", revision="v2")).endswith(commit_b)


def test_unknown_revision_or_repository_is_a_clear_error(folders, hub_cache):
    add_snapshot(hub_cache, "owner/mora-tiny", folders[0])
    with pytest.raises(CheckpointNotFoundError, match="revision 'nope'"):
        mora.load_model("owner/mora-tiny", revision="nope")
    with pytest.raises(CheckpointNotFoundError, match="owner/missing"):
        mora.load_model("owner/missing")


def test_remote_code_is_refused(folders):
    with pytest.raises(ValueError, match="trust_remote_code"):
        MoRAForVideoGrounding.from_pretrained(folders[0], trust_remote_code=True)


# ------------------------------------------------------------------------------------------- pushing
class FakeHfApi:
    """Records the calls `push_folder` makes; ``upload_folder`` reads what a real upload would send and,
    when ``cache`` is set, stores it as a Hub-cache snapshot of the branch (the Hub's side of the upload)."""

    instances: list[FakeHfApi] = []
    cache: Path | None = None

    def __init__(self, token=None, **kwargs):
        self.token = token
        self.calls: list[tuple[str, dict]] = []
        self.uploaded: dict[str, bytes] = {}
        FakeHfApi.instances.append(self)

    def create_repo(self, repo_id, **kwargs):
        self.calls.append(("create_repo", {"repo_id": repo_id, **kwargs}))

    def create_branch(self, repo_id, **kwargs):
        self.calls.append(("create_branch", {"repo_id": repo_id, **kwargs}))

    def upload_folder(self, *, repo_id, folder_path, **kwargs):
        self.calls.append(("upload_folder", {"repo_id": repo_id, **kwargs}))
        folder = Path(folder_path)
        files = [p for p in folder.rglob("*") if p.is_file()]
        self.uploaded = {p.relative_to(folder).as_posix(): p.read_bytes() for p in files}
        revision = kwargs.get("revision") or "main"
        if FakeHfApi.cache is not None:
            add_snapshot(FakeHfApi.cache, repo_id, folder, revision=revision, commit=commit_hash(revision))
        return f"https://huggingface.co/{repo_id}/commit/{commit_hash(revision)}"


@pytest.fixture
def fake_api(monkeypatch):
    FakeHfApi.instances, FakeHfApi.cache = [], None
    monkeypatch.setattr(hub, "HfApi", FakeHfApi)
    return FakeHfApi


def _with_extras(folder: Path, tmp_path: Path) -> Path:
    """A copy of ``folder`` with files that must not be uploaded."""
    copy = tmp_path / "export"
    shutil.copytree(folder, copy)
    (copy / "optimizer.pt").write_bytes(b"pickle")
    (copy / "notes.txt").write_text("private notes")
    (copy / "README.md").write_text("an old card")
    return copy


def test_mora_push_uploads_checkpoint_files_and_a_card(
    folders, fake_api, tmp_path, monkeypatch, caplog, capsys
):
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("HF_TOKEN", SECRET)
    folder = _with_extras(folders[0], tmp_path)
    scores = tmp_path / "scores.json"
    scores.write_text(json.dumps(SCORES))
    argv = ["push", "--model", str(folder), "--repo-id", "me/mora-tiny", "--revision", "v1", "--private"]
    argv += ["--scores", str(scores), "--scores-name", "synthetic test split", "--base-model", "me/base"]
    assert main(argv) == 0

    api = fake_api.instances[-1]
    assert set(api.uploaded) == EXPECTED_FILES  # not optimizer.pt, notes.txt or the old README
    names = [name for name, _ in api.calls]
    assert names == ["create_repo", "create_branch", "upload_folder"]
    assert api.calls[0][1]["private"] is True and api.calls[1][1]["branch"] == "v1"
    assert api.calls[2][1]["revision"] == "v1"
    assert api.uploaded["model.safetensors"] == (folder / "model.safetensors").read_bytes()

    card = api.uploaded["README.md"].decode()
    meta = card.split("---")[1]
    for line in (
        "license: apache-2.0",
        "library_name: mora",
        "pipeline_tag: video-text-to-text",
        "- me/base",
    ):
        assert line in meta
    for section in (
        "## Architecture",
        "## Base weights",
        "## Training data",
        "## Evaluation",
        "## Usage",
        "## License",
    ):
        assert section in card
    assert "| **overall** | 60.00 | 57.00 | 63.00 | 999 | 51.54 | +8.46 | 70.00 |" in card
    assert "| Causal | 54.77 | 50.00 | 59.00 | 297 | 37.56 | +17.21 | 79.00 |" in card
    assert 'mora.load_model("me/mora-tiny", revision="v1")' in card
    assert "synthetic test split" in card

    out = capsys.readouterr()
    for text in (caplog.text, out.out, out.err, card):
        assert SECRET not in text


def test_push_to_hub_of_the_model_and_token_stays_out_of_logs(folders, fake_api, caplog, capsys):
    caplog.set_level(logging.DEBUG)
    model = mora.load_model(folders[0])
    model.push_to_hub("me/mora-tiny", token=SECRET, scores=SCORES, training_data="Synthetic motion videos.")
    api = fake_api.instances[-1]
    assert api.token == SECRET  # handed to the client, nowhere else
    assert set(api.uploaded) == EXPECTED_FILES
    assert [n for n, _ in api.calls] == ["create_repo", "upload_folder"]  # main: no branch to create
    card = api.uploaded["README.md"].decode()
    assert "Synthetic motion videos." in card and 'load_model("me/mora-tiny")' in card
    out = capsys.readouterr()
    assert SECRET not in caplog.text + out.out + out.err


def test_push_then_load_by_id_and_revision(folders, fake_api, hub_cache):
    fake_api.cache = hub_cache
    push_folder(folders[1], "me/mora-tiny", revision="exp")
    loaded = mora.load_model("me/mora-tiny", revision="exp")
    assert torch.equal(_weight(loaded), _weight(mora.load_model(folders[1])))
    assert (hub.resolve_checkpoint("me/mora-tiny", revision="exp") / "README.md").is_file()


def test_card_of_a_converted_folder_names_its_sources(folders, fake_api, tmp_path):
    folder = tmp_path / "converted"
    shutil.copytree(folders[0], folder)
    provenance = {
        "converter": "mora convert lisa",
        "preset": "lisa_7b_sam_vit_h",
        "checkpoint": "xinlai/LISA-7B-v1",
        "clip": "openai/clip-vit-large-patch14",
        "dtype": "bfloat16",
        "fresh_modules": {"temporal_head": "the [LOC] span head"},
    }
    (folder / "conversion.json").write_text(json.dumps(provenance))
    push_folder(folder, "me/mora-lisa", scores=SCORES)
    api = fake_api.instances[-1]
    assert "conversion.json" in api.uploaded
    card = api.uploaded["README.md"].decode()
    meta = card.split("---")[1]
    assert "- xinlai/LISA-7B-v1" in meta and "- openai/clip-vit-large-patch14" in meta
    assert "Converted by `mora convert lisa` from `xinlai/LISA-7B-v1`" in card
    assert "`temporal_head` has no source weights" in card


def test_push_errors_are_one_line(folders, fake_api, tmp_path, capsys):
    pickled = tmp_path / "pickled"
    shutil.copytree(folders[0], pickled)
    (pickled / "model.safetensors").unlink()
    (pickled / "pytorch_model.bin").write_bytes(b"x")
    bad_scores = tmp_path / "scores.json"
    bad_scores.write_text(json.dumps({"overall": {"JF": 0.5}}))
    cases = [
        (["--model", str(pickled), "--repo-id", "me/x"], "pytorch_model.bin"),
        (["--model", str(folders[0]), "--repo-id", "me/x", "--scores", str(bad_scores)], "baseline_empty"),
        (["--model", str(folders[0]), "--repo-id", "no-owner"], "owner/name"),
        (["--model", str(tmp_path / "nowhere"), "--repo-id", "me/x"], "not a folder"),
    ]
    for args, needle in cases:
        capsys.readouterr()
        assert main(["push", *args]) == 2
        err = capsys.readouterr().err
        assert needle in err and err.count("\n") == 1 and "Traceback" not in err
    assert all(not api.uploaded for api in fake_api.instances)
    with pytest.raises(PushError):
        push_folder(pickled, "me/x")
