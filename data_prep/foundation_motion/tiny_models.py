"""Tiny random stand-ins for every model of the pipeline, written in the real formats.

``build_tiny_models(folder)`` writes ``detector/`` (Owlv2ForObjectDetection + image processor +
tokenizer), ``grounding_dino/`` (GroundingDinoForObjectDetection + image processor + BERT tokenizer), ``tracker/`` (Sam2VideoModel, the project's tiny SAM2 config) and ``llm/`` (a 2-layer
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
    if not (folder / "grounding_dino" / "config.json").is_file():
        _tiny_grounding_dino(folder / "grounding_dino")
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


def _tiny_grounding_dino(folder: Path) -> None:
    """GroundingDINO with a 4-stage Swin of width 16, a 1-layer BERT and a word-level BERT vocabulary."""
    from transformers import (
        BertConfig,
        BertTokenizer,
        GroundingDinoConfig,
        GroundingDinoForObjectDetection,
        SwinConfig,
    )
    from transformers.models.grounding_dino.image_processing_pil_grounding_dino import (
        GroundingDinoImageProcessorPil,
    )

    from data_prep.foundation_motion.detect import COLOUR_NAMES

    letters = "abcdefghijklmnopqrstuvwxyz"
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "."]
    words += [*COLOUR_NAMES, "square", "circle", "triangle", "diamond", "cross", "object", "ball", "person"]
    words += [*letters, *(f"##{c}" for c in letters)]
    tokenizer = BertTokenizer(vocab={w: i for i, w in enumerate(dict.fromkeys(words))})
    config = GroundingDinoConfig(
        backbone_config=SwinConfig(
            embed_dim=16,
            depths=[1, 1, 1, 1],
            num_heads=[1, 1, 1, 1],
            window_size=4,
            image_size=64,
            out_indices=[2, 3, 4],
        ),
        text_config=BertConfig(
            vocab_size=len(tokenizer),
            hidden_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=64,
        ),
        d_model=32,
        encoder_layers=1,
        decoder_layers=2,  # one decoder layer breaks the box-head weight tying
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=64,
        decoder_ffn_dim=64,
        num_queries=20,
        num_feature_levels=3,
        encoder_n_points=2,
        decoder_n_points=2,
        max_text_len=32,
    )
    GroundingDinoForObjectDetection(config).save_pretrained(folder)
    GroundingDinoImageProcessorPil(size={"shortest_edge": 64, "longest_edge": 64}).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
