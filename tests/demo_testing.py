"""A tiny-checkpoint `DemoService` for the demo tests, with a span head that answers a fixed span."""

from __future__ import annotations

from pathlib import Path

import torch

from mora.cli import main
from mora.demo import DemoConfig, DemoService
from mora.hub import load_model

# key-frame logits of the span head: with 8 key frames over 30 frames at 10 fps the span is frames 7-17
KEY_LOGITS = [-5, -5, 5, 5, 5, -5, -5, -5]
SPAN_TEXT = "0.70 s - 1.70 s (frames 7-17)"


def tiny_checkpoint(folder: Path) -> Path:
    assert main(["init-tiny", "--out", str(folder)]) == 0
    return folder


def fixed_span_service(checkpoint: Path, work_dir: Path, monkeypatch, **config) -> DemoService:
    """A service answering in template mode (text with [SEG] and [LOC]) with the span of `KEY_LOGITS`."""
    model = load_model(checkpoint)
    logits = torch.tensor([KEY_LOGITS], dtype=torch.float32)
    monkeypatch.setattr(model, "span_logits_from", lambda *args, **kwargs: logits)
    config = {"mode": "template", "key_frames": len(KEY_LOGITS), **config}
    return DemoService(model, DemoConfig(model=str(checkpoint), **config), work_dir=work_dir)
