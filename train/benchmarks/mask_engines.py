"""Time mask-engine encode + decode (forward and backward) and propagate; prints one line per engine.

python benchmarks/bench_mask_engines.py                 # tiny configs on CPU
python benchmarks/bench_mask_engines.py --real --device cuda --dtype bfloat16
"""

from __future__ import annotations

import argparse
import time

import torch

from mora.model.mask_engines import (
    build_mask_engine,
    sam2_1_hiera_large_config,
    sam_vit_h_config,
    tiny_sam2_config,
    tiny_sam_config,
)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bench(name: str, config, frames: int, repeats: int, device: torch.device, dtype: torch.dtype) -> None:
    engine = build_mask_engine(config).to(device=device, dtype=dtype)
    engine.freeze_image_encoder()
    size = engine.image_size
    pixels = torch.randn(frames, 3, size, size, device=device)
    prompts = torch.randn(frames, 1, engine.prompt_dim, device=device, dtype=dtype, requires_grad=True)
    timings = {"encode+decode fwd/bwd": [], "propagate": []}
    for step in range(repeats + 1):  # the first round warms up
        _sync(device)
        start = time.perf_counter()
        with torch.no_grad():
            features = engine.encode(pixels)
        engine.decode(features, prompts).float().square().mean().backward()
        _sync(device)
        middle = time.perf_counter()
        engine.propagate(pixels, prompts[0].detach(), key_frames=[0])
        _sync(device)
        end = time.perf_counter()
        if step:
            timings["encode+decode fwd/bwd"].append(middle - start)
            timings["propagate"].append(end - middle)
    params = sum(p.numel() for p in engine.parameters()) / 1e6
    summary = ", ".join(f"{k} {1000 * sum(v) / len(v):.1f} ms" for k, v in timings.items())
    print(f"{name}: {params:.2f}M params, {frames} frames at {size}px, {device}/{dtype}: {summary}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--real", action="store_true", help="SAM2.1 Hiera-L and SAM ViT-H (random weights)")
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    args = parser.parse_args()
    device, dtype = torch.device(args.device), getattr(torch, args.dtype)
    configs = (
        [("sam2.1-hiera-large", sam2_1_hiera_large_config()), ("sam-vit-huge", sam_vit_h_config())]
        if args.real
        else [("tiny-sam2", tiny_sam2_config()), ("tiny-sam", tiny_sam_config())]
    )
    for name, config in configs:
        bench(name, config, args.frames, args.repeats, device, dtype)


if __name__ == "__main__":
    main()
