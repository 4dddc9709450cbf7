"""Model benchmark: training-step time and peak memory of the tiny and small presets, and parameter
counts + per-frame FLOP estimates of the real presets (meta device, no weights).

    python train/benchmarks/model_step.py [--steps 5] [--frames 8] [--batch 2] [--device cpu]

Each measured preset runs in its own subprocess so the peak resident memory is its own. FLOPs are
analytic estimates: 2 x (weights of the layers a token passes) x tokens, plus the 4 n^2 d attention
term of global-attention layers (windowed attention is counted as its linear layers only).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)


def _batch(processor, frames: int, batch: int):
    from mora.constants import ANSWER_WITH_SPAN

    rng = np.random.default_rng(0)
    videos = [rng.integers(0, 255, (frames, 96, 128, 3), dtype=np.uint8) for _ in range(batch)]
    masks = [rng.random((frames, 96, 128)) > 0.7 for _ in range(batch)]
    return processor(
        videos,
        ["Which object moves left before the red ball stops?"] * batch,
        answers=[ANSWER_WITH_SPAN] * batch,
        masks=masks,
        spans=[(1, frames - 2)] * batch,
    )


def measure(preset: str, recipe: str, steps: int, frames: int, batch: int, device: str) -> dict:
    """Forward+backward(+AdamW) step time and peak memory of one preset in this process."""
    from mora import presets
    from mora.model.modeling_mora import MoRAForVideoGrounding
    from mora.model.trainable import TrainableSettings, configure_trainable
    from mora.processing.processing_mora import MoRAProcessor
    from mora.processing.tokenizer import build_tiny_tokenizer

    config = presets.tiny(num_frames=frames) if preset == "tiny" else presets.small()
    config.num_frames = frames
    model = MoRAForVideoGrounding(config).to(device)
    processor = MoRAProcessor.from_config(config, build_tiny_tokenizer())
    settings = TrainableSettings.everything() if recipe == "everything" else TrainableSettings()
    counts = configure_trainable(model, settings)
    inputs = {k: v.to(device) for k, v in _batch(processor, frames, batch).items()}
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    times = []
    for step in range(steps + 1):  # step 0 is warm-up
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        start = time.perf_counter()
        loss = model(**inputs).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        if step:
            times.append(time.perf_counter() - start)
    peak = (
        torch.cuda.max_memory_allocated() / 2**20
        if device.startswith("cuda")
        else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    )
    return {
        "preset": preset,
        "recipe": recipe,
        "params_total": sum(p.numel() for p in model.parameters()),
        "params_trainable": counts["total"],
        "seq_len": int(inputs["input_ids"].shape[1]),
        "step_s_mean": float(np.mean(times)),
        "step_s_min": float(np.min(times)),
        "peak_mem_mib": round(peak, 1),
    }


def _linear_weights(module: torch.nn.Module) -> int:
    """Weights of the Linear/Conv layers in ``module`` (what each token is multiplied by)."""
    layers = (torch.nn.Linear, torch.nn.Conv1d, torch.nn.Conv2d)
    return sum(m.weight.numel() for m in module.modules() if isinstance(m, layers))


def _vit_flops(module, tokens: int, layers: int, width: int) -> float:
    return 2 * _linear_weights(module) * tokens + 4 * layers * tokens**2 * width


def real_preset_figures(name: str) -> dict:
    """Parameter counts by component and FLOPs estimates of a real preset, built on the meta device."""
    from mora import presets
    from mora.model.modeling_mora import MoRAForVideoGrounding
    from mora.processing.visual_layout import VisualLayout

    config = getattr(presets, name)()
    with torch.device("meta"):
        model = MoRAForVideoGrounding(config)
    count = lambda mods: sum(p.numel() for m in mods for p in m.parameters())  # noqa: E731
    lm_modules = [model.adapter.language_model, model.adapter.lm_head]
    layout = VisualLayout.from_config(config)
    vision_cfg = config.vlm_config.vision_config
    side = layout.patches_per_side
    vision = model.adapter.vision_modules()
    if config.backbone_family == "llava":
        vision_flops = _vit_flops(
            torch.nn.ModuleList(vision), side * side, len(vision) - 2, vision_cfg.hidden_size
        )
    else:  # Qwen2.5-VL: windowed blocks + a few full-attention blocks; Qwen3-VL: full attention throughout
        full_blocks = getattr(vision_cfg, "fullatt_block_indexes", None)
        full = len(full_blocks) if full_blocks is not None else vision_cfg.depth
        vision_flops = _vit_flops(torch.nn.ModuleList(vision), side * side, full, vision_cfg.hidden_size)
    vision_flops += 2 * _linear_weights(torch.nn.ModuleList(model.adapter.projector_modules())) * side * side
    engine_flops = _engine_flops(model.mask_engine, config)
    seq = layout.num_video_tokens(config.num_frames) + layout.num_motion_tokens(config.num_frames) + 80
    text = config.vlm_config.text_config
    lm_flops = 2 * _linear_weights(torch.nn.ModuleList(lm_modules)) * seq
    lm_flops += 4 * text.num_hidden_layers * seq**2 * text.hidden_size
    return {
        "preset": name,
        "params_total": count([model]),
        "params_language_model": count(lm_modules),
        "params_vision_and_projector": count([model.vlm]) - count(lm_modules),
        "params_mask_engine": count([model.mask_engine]),
        "params_mora_heads": count([model.seg_projector, model.temporal_head, model.motion_tokenizer]),
        "lm_frames": config.num_frames,
        "lm_seq_len_estimate": seq,
        "gflops_per_frame_vision": round(vision_flops / 1e9, 1),
        "gflops_per_frame_mask_encoder": round(engine_flops / 1e9, 1),
        "gflops_per_frame_language_model": round(lm_flops / config.num_frames / 1e9, 1),
    }


def _engine_flops(engine, config) -> float:
    """Image-encoder FLOPs per frame (the decoder is negligible)."""
    S = engine.image_size
    encoder = engine.image_encoder_modules()[0]
    vc = config.mask_engine_config.vision_config
    if config.mask_engine_kind == "sam":
        tokens = (S // vc.patch_size) ** 2
        return _vit_flops(encoder, tokens, len(vc.global_attn_indexes), vc.hidden_size)
    stages = vc.backbone_config.blocks_per_stage
    blocks = list(encoder.backbone.blocks)
    total, start = 0.0, 0
    for stage, n in enumerate(stages):
        tokens = (S // 4 // 2**stage) ** 2
        total += 2 * sum(_linear_weights(b) for b in blocks[start : start + n]) * tokens
        start += n
    return total + 2 * _linear_weights(encoder.neck) * (S // 4) ** 2


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--one", nargs=2, metavar=("PRESET", "RECIPE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(*args.one, args.steps, args.frames, args.batch, args.device)))
        return
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, device {args.device}")
    print(
        f"{'preset':8} {'recipe':10} {'params':>10} {'trainable':>10} {'seq':>5} {'step s':>8} {'peak MiB':>9}"
    )
    for preset, recipe in (("tiny", "everything"), ("tiny", "lora"), ("small", "lora")):
        cmd = [sys.executable, __file__, "--one", preset, recipe, "--steps", str(args.steps)]
        cmd += ["--frames", str(args.frames), "--batch", str(args.batch), "--device", args.device]
        r = json.loads(
            subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1]
        )
        print(
            f"{r['preset']:8} {r['recipe']:10} {r['params_total']:>10,} {r['params_trainable']:>10,} "
            f"{r['seq_len']:>5} {r['step_s_mean']:>8.3f} {r['peak_mem_mib']:>9.0f}"
        )
    for name in ("lisa_7b_sam_vit_h", "qwen2_5_vl_7b_sam2_1_large", "qwen3_vl_8b_sam2_1_large"):
        print(json.dumps(real_preset_figures(name), indent=1))


if __name__ == "__main__":
    main()
