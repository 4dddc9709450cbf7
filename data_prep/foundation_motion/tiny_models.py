"""Tiny random stand-ins for every model of the pipeline, written in the real formats.

``build_tiny_models(folder)`` writes ``detector/`` (Owlv2ForObjectDetection + image processor +
tokenizer), ``tracker/`` (Sam2VideoModel, the project's tiny SAM2 config) and ``llm/`` (a 2-layer
Llama causal LM + tokenizer), each with ``save_pretrained``, so the pipeline loads them through the
same ``from_pretrained`` calls as the Hub ids. Built offline from configs; weights are random (their
outputs are meaningless: tests check formats and shapes with them, and stage logic with the
rule-based proposals and the colour tracker).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch


def build_tiny_models(folder: str | os.PathLike, seed: int = 0) -> Path:
    """Write the three tiny models under ``folder`` (skipped when already there); returns the folder."""
    from transformers import (
        LlamaConfig,
        LlamaForCausalLM,
        Owlv2Config,
        Owlv2ForObjectDetection,
        Sam2VideoModel,
    )
    from transformers.models.owlv2.image_processing_pil_owlv2 import Owlv2ImageProcessorPil

    from mora.model.mask_engines.configs import tiny_sam2_config
    from mora.processing.tokenizer import build_tiny_tokenizer

    folder = Path(folder)
    torch.manual_seed(seed)
    tokenizer = build_tiny_tokenizer()
    if not (folder / "detector" / "config.json").is_file():
        config = Owlv2Config(
            text_config={
                "vocab_size": len(tokenizer),
                "hidden_size": 32,
                "intermediate_size": 64,
                "num_hidden_layers": 2,
                "num_attention_heads": 2,
                "max_position_embeddings": 16,
                "pad_token_id": tokenizer.pad_token_id,
                "bos_token_id": tokenizer.bos_token_id,
                "eos_token_id": tokenizer.eos_token_id,
            },
            vision_config={
                "hidden_size": 32,
                "intermediate_size": 64,
                "num_hidden_layers": 2,
                "num_attention_heads": 2,
                "image_size": 64,
                "patch_size": 16,
            },
            projection_dim=32,
        )
        Owlv2ForObjectDetection(config).save_pretrained(folder / "detector")
        Owlv2ImageProcessorPil(size={"height": 64, "width": 64}).save_pretrained(folder / "detector")
        tokenizer.save_pretrained(folder / "detector")
    if not (folder / "tracker" / "config.json").is_file():
        Sam2VideoModel(tiny_sam2_config(64)).save_pretrained(folder / "tracker")
    if not (folder / "llm" / "config.json").is_file():
        config = LlamaConfig(
            vocab_size=len(tokenizer),
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            num_key_value_heads=2,
            max_position_embeddings=16384,
            pad_token_id=tokenizer.pad_token_id,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
        )
        LlamaForCausalLM(config).save_pretrained(folder / "llm")
        tokenizer.save_pretrained(folder / "llm")
    return folder
