"""The converters' shared loading rules: file kinds, Meta's wrapper, shard indexes, dtypes, strict renaming."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file

from mora.convert.checkpoint_io import (
    ConversionError,
    Rule,
    cast_floating,
    load_state_dict,
    remap_state_dict,
    resolve_dtype,
)


def _state() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    return {"a.weight": torch.randn(3, 2), "b.bias": torch.randn(4), "c.count": torch.tensor([5])}


def _assert_same(loaded, expected):
    assert loaded.keys() == expected.keys()
    for key, value in expected.items():
        assert torch.equal(loaded[key], value), key


@pytest.mark.parametrize("suffix", [".pth", ".pt", ".bin"])
def test_torch_files_plain_and_wrapped(tmp_path, suffix):
    state = _state()
    torch.save(state, tmp_path / f"plain{suffix}")
    torch.save({"model": state}, tmp_path / f"meta{suffix}")
    _assert_same(load_state_dict(tmp_path / f"plain{suffix}"), state)
    _assert_same(load_state_dict(tmp_path / f"meta{suffix}"), state)


def test_safetensors_index_and_folder(tmp_path):
    state = _state()
    save_file({"a.weight": state["a.weight"]}, tmp_path / "model-00001-of-00002.safetensors")
    torch.save({k: state[k] for k in ("b.bias", "c.count")}, tmp_path / "model-00002-of-00002.bin")
    weight_map = {"a.weight": "model-00001-of-00002.safetensors"}
    weight_map.update({k: "model-00002-of-00002.bin" for k in ("b.bias", "c.count")})
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    _assert_same(load_state_dict(tmp_path / "model.safetensors.index.json"), state)
    _assert_same(load_state_dict(tmp_path), state)  # a folder: its index is found


def test_unreadable_inputs_name_the_file(tmp_path):
    with pytest.raises(ConversionError, match="does not exist"):
        load_state_dict(tmp_path / "absent.pth")
    (tmp_path / "broken.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(ConversionError, match="broken.pth: cannot read"):
        load_state_dict(tmp_path / "broken.pth")
    torch.save({"model": _state()}, tmp_path / "full.pt")
    (tmp_path / "cut.pt").write_bytes((tmp_path / "full.pt").read_bytes()[:100])
    with pytest.raises(ConversionError, match="cut.pt"):
        load_state_dict(tmp_path / "cut.pt")
    (tmp_path / "x.index.json").write_text(json.dumps({"weight_map": {"a": "shard.safetensors"}}))
    with pytest.raises(ConversionError, match="shard shard.safetensors is missing"):
        load_state_dict(tmp_path / "x.index.json")
    (tmp_path / "weights.npz").write_bytes(b"")
    with pytest.raises(ConversionError, match="unsupported checkpoint type"):
        load_state_dict(tmp_path / "weights.npz")
    torch.save({"a": torch.ones(1), "step": 3}, tmp_path / "extra.pt")
    with pytest.raises(ConversionError, match="not named tensors: step"):
        load_state_dict(tmp_path / "extra.pt")


def test_dtype_kept_or_cast():
    state = {"w": torch.ones(2, dtype=torch.float16), "n": torch.tensor([1])}
    assert resolve_dtype(state, "keep") == torch.float16
    assert resolve_dtype(state, "bf16") == torch.bfloat16
    cast = cast_floating(state, torch.float32)
    assert cast["w"].dtype == torch.float32 and cast["n"].dtype == torch.int64
    with pytest.raises(ConversionError, match="mixes floating dtypes"):
        resolve_dtype({**state, "v": torch.ones(1)}, "keep")


def test_remap_names_unknown_missing_clashing_and_misshapen_keys():
    rules = [Rule(r"old\.(\w+)", r"new.\1"), Rule(r"twice", lambda m: ("new.a", "copy.a"))]
    expected = {"new.a": torch.Size([2]), "new.b": torch.Size([3]), "copy.a": torch.Size([2])}
    good = {"old.a": torch.zeros(2), "old.b": torch.zeros(3), "buffer": torch.zeros(1)}
    out = remap_state_dict(
        {"old.b": torch.zeros(3), "twice": torch.ones(2)}, rules, expected, ignore=["buffer"]
    )
    assert out["new.a"].data_ptr() != out["copy.a"].data_ptr()  # a tensor used twice is stored twice
    with pytest.raises(ConversionError) as err:
        remap_state_dict(
            {"old.a": torch.zeros(5), "stray": torch.zeros(1), "buffer": torch.zeros(1)},
            rules,
            expected,
            ignore=["buffer"],
        )
    message = str(err.value)
    assert "unknown keys (no rule, not ignored): stray" in message
    assert "missing keys (converted names): copy.a, new.b" in message
    assert "old.a [5] vs new.a [2]" in message
    with pytest.raises(ConversionError, match="keys mapped twice: old.a and twice -> new.a"):
        remap_state_dict(good | {"twice": torch.zeros(2)}, rules, expected, ignore=["buffer"])
