"""The zero-shot recipe from a converted LISA checkpoint, end to end on tiny weights: ``mora convert lisa`` ->
``train/train.py`` with ``train/configs/mora_zs_lisa7b.yaml`` (its model, LoRA recipe and optimisation; the
data swapped for a small synthetic set, a few CPU steps) -> export -> ``eval/evaluate_groundmore.py``.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

import mora
from mora.convert.lisa import convert_lisa
from tests.test_convert_lisa import TinyLisa, write_lisa_folder
from tests.test_train_entry import _env, synthetic  # noqa: F401  (fixture)

pytest.importorskip("sentencepiece", reason="LLaMA's tokenizer.model needs sentencepiece (mora[convert])")
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def converted(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("lisa_recipe")
    source = TinyLisa()
    src = write_lisa_folder(root / "LISA-tiny", source.state_dict(with_clip=True), "safetensors")
    return convert_lisa(src, root / "mora_lisa_tiny_sam")


def test_zero_shot_recipe_trains_from_the_converted_checkpoint(converted, synthetic, tmp_path):  # noqa: F811
    out = tmp_path / "run"
    config = tmp_path / "zs.yaml"
    config.write_text(
        "\n".join(
            [
                f"base: {REPO / 'train/configs/mora_zs_lisa7b.yaml'}",
                "model:",
                f"  pretrained: {converted}",
                "  gradient_checkpointing: false",
                "data:",
                "  datasets:",
                f"    - spec: {{format: groundmore, root: {synthetic}, meta: train.json, use_span: false}}",
                "  num_frames: 4",
                "  mixture_length: null",
                "train:",
                "  max_steps: 2",
                "  grad_accum_steps: 1",
                "  precision: fp32",
                "  deepspeed: train/ds/zero2_cpu.json",
                f"  output_dir: {out}",
                "checkpoint: {every_steps: 2}",
                "log: {progress_bar: false, every_steps: 1}",
            ]
        )
    )
    cmd = [sys.executable, str(REPO / "train/train.py"), "--config", str(config)]
    proc = subprocess.run(cmd, cwd=REPO, env=_env(), capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    final = json.loads((out / "final_state.json").read_text())
    assert final["step"] == 2
    losses = final["final_losses"]
    assert set(losses) >= {"loss", "loss_ce", "loss_mask_bce", "loss_mask_dice"}
    assert all(math.isfinite(v) for v in losses.values())
    model = mora.load_model(out / "export")  # LoRA merged, processor + LISA's tokenizer kept
    assert model.config.seg_token_id == model.processor.tokenizer.convert_tokens_to_ids("[SEG]")
    assert model.config.lora is None or model.config.lora == {}


def test_evaluator_runs_on_the_converted_checkpoint(converted, synthetic, tmp_path):  # noqa: F811
    out = tmp_path / "eval"
    cmd = [
        sys.executable,
        str(REPO / "eval/evaluate_groundmore.py"),
        "--model",
        str(converted),
        "--data-root",
        str(synthetic),
        "--meta",
        str(synthetic / "test.json"),
        "--out",
        str(out),
        "--predict-mode",
        "template",
    ]
    proc = subprocess.run(cmd, cwd=REPO, env=_env(), capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    scores = json.loads((out / "scores.json").read_text())
    assert "baseline_empty" in scores and scores["overall"]["n"] > 0
