"""A reference learner on the tiny default's own batches: the yardstick for "does mora's default learn".

A standalone learning probe of this design ("design A", written before mora's default and re-implemented
here) reached J&F 0.87 on the synthetic set in about 1,200 steps. This script trains a compact re-implementation of that design on exactly the batches
`bash run.sh` trains on (`train/configs/tiny.yaml`: same dataset, collator, video groups, loss weights and
schedule shape) and prints the mask Dice and span BCE every 25 steps, to compare with the trainer's log of
the default at the same step. It swaps in mora's own parts one at a time (`--stem clip` uses a CLIP tower
of the tiny preset's size; `--mora-adapter` mora's `VideoAdapter`) so that a gap can be bisected:

    python train/benchmarks/reference_learner.py --steps 250 --schedule-steps 900 --stem clip --mora-adapter

Measured on 2 cores (mask Dice at step 200 / 250): CLIP stem + mora's adapter, 900-step schedule, 0.455 /
0.424, where the tiny default (the same batches and schedule in a plain loop) has 0.546 / 0.541; CNN + frame
differences (`--differences`), 300-step schedule, 0.43 at 200 and 0.33 at 300 (train/README.md has the rest).
It is a diagnostic, not a model of the package.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from mora.constants import IGNORE_INDEX  # noqa: E402
from mora.model import losses as L  # noqa: E402
from mora.model.video_adapter import SpaceTimeBlock, VideoAdapter, sinusoid  # noqa: E402
from mora.training.components import build_mora_components  # noqa: E402
from mora.training.config_io import load_run_config  # noqa: E402

WIDTH = 96  # token width (design A)
PIXEL = 32  # pixel-embedding width


def frame_differences(frames: torch.Tensor) -> torch.Tensor:
    """``[V, T, 3, S, S]`` -> ``[V, T, 6, S, S]``: differences to the previous and next frame (zero at the ends)."""
    prev, nxt = torch.zeros_like(frames), torch.zeros_like(frames)
    prev[:, 1:] = frames[:, 1:] - frames[:, :-1]
    nxt[:, :-1] = frames[:, 1:] - frames[:, :-1]
    return torch.cat([prev, nxt], dim=2)


class ReferenceLearner(nn.Module):
    """Video tokens (CNN or CLIP stem, space-time blocks) -> decoder over [SEG], [LOC] and the question's
    words -> masks as a dot product with per-pixel embeddings, span from features under the mask."""

    def __init__(self, vocab: int, video_token_id: int, stem: str, differences: bool, mora_adapter: bool):
        super().__init__()
        self.video_token_id, self.stem, self.differences = video_token_id, stem, differences
        channels = 9 if differences else 3
        if stem == "cnn":
            self.cnn = nn.Sequential(
                nn.Conv2d(channels, 32, 3, 2, 1),
                nn.GELU(),
                nn.Conv2d(32, 64, 3, 2, 1),
                nn.GELU(),
                nn.Conv2d(64, WIDTH, 3, 1, 1),
            )  # [N, WIDTH, S/4, S/4]
        else:
            from transformers import CLIPVisionConfig, CLIPVisionModel

            vision = CLIPVisionConfig(
                hidden_size=64,
                intermediate_size=128,
                num_hidden_layers=2,
                num_attention_heads=2,
                image_size=64,
                patch_size=8,
            )
            self.clip = CLIPVisionModel(vision)
            self.clip_in = nn.Linear(64, WIDTH)
            self.adapter = VideoAdapter(64, WIDTH, 2, 4) if mora_adapter else None
        self.blocks = (
            None
            if stem == "clip" and mora_adapter
            else nn.ModuleList(SpaceTimeBlock(WIDTH, 4) for _ in range(2))
        )
        self.cell = nn.Parameter(torch.zeros(64, WIDTH))
        self.words = nn.Embedding(vocab, WIDTH)
        self.word_pos = nn.Parameter(torch.randn(256, WIDTH) * 0.02)
        self.queries = nn.Parameter(torch.randn(2, WIDTH) * 0.02)
        layer = nn.TransformerDecoderLayer(WIDTH, 4, 2 * WIDTH, 0.0, batch_first=True, norm_first=True)
        self.decoder = nn.TransformerDecoder(layer, 3)
        self.pixels = nn.Sequential(
            nn.Conv2d(channels, PIXEL, 3, 1, 1), nn.GELU(), nn.Conv2d(PIXEL, PIXEL, 1)
        )
        self.grid_to_pixels = nn.Linear(WIDTH, PIXEL)
        self.seg_query = nn.Linear(WIDTH, PIXEL)
        self.span = nn.Sequential(nn.Linear(2 * WIDTH, WIDTH), nn.GELU(), nn.Linear(WIDTH, 1))

    def video_tokens(self, batch) -> tuple[torch.Tensor, torch.Tensor]:
        """Input frames ``[V, T, c, S, S]`` and tokens ``[V, T, 64, WIDTH]`` of every frame."""
        frames = batch["mask_pixel_values"]
        V, T = frames.shape[:2]
        inputs = torch.cat([frames, frame_differences(frames)], 2) if self.differences else frames
        if self.stem == "cnn":
            grid = F.adaptive_avg_pool2d(self.cnn(inputs.flatten(0, 1)), 8).flatten(2).transpose(1, 2)
        else:
            states = self.clip(pixel_values=batch["pixel_values"].flatten(0, 1), output_hidden_states=True)
            grid = states.hidden_states[-1][:, 1:]  # [V*T, 64, 64]
            if self.adapter is not None:
                grid = self.adapter(grid.reshape(V, T, 8, 8, 64)).reshape(V * T, 64, 64)
            grid = self.clip_in(grid)
        times = torch.arange(T, dtype=torch.float32) / max(1, T - 1)
        tokens = grid.view(V, T, 64, WIDTH) + self.cell + sinusoid(times, WIDTH)[None, :, None]
        for block in self.blocks or ():
            tokens = block(tokens)
        return inputs, tokens

    def forward(self, batch) -> tuple[torch.Tensor, torch.Tensor]:
        """Mask logits ``[B, T, S, S]`` and span logits ``[B, T]``."""
        inputs, tokens = self.video_tokens(batch)
        V, T = tokens.shape[:2]
        ids, labels = batch["input_ids"], batch["labels"]
        keep = batch["attention_mask"].bool() & (ids != self.video_token_id) & (labels == IGNORE_INDEX)
        order = torch.argsort((~keep).to(torch.int8), dim=1, stable=True)[:, : int(keep.sum(1).max())]
        words = self.words(torch.gather(ids, 1, order)) + self.word_pos[: order.shape[1]]
        B = ids.shape[0]
        sequence = torch.cat([self.queries.expand(B, 2, WIDTH), words], 1)
        pad = torch.cat([torch.zeros(B, 2, dtype=torch.bool), ~torch.gather(keep, 1, order)], 1)
        index = batch.get("video_index", torch.arange(B))
        out = self.decoder(sequence, tokens[index].flatten(1, 2), tgt_key_padding_mask=pad)
        S = inputs.shape[-1]
        grid = self.grid_to_pixels(tokens.flatten(0, 1)).transpose(1, 2).reshape(V * T, PIXEL, 8, 8)
        embeds = self.pixels(inputs.flatten(0, 1)) + F.interpolate(grid, size=S, mode="bilinear")
        embeds = embeds.view(V, T, PIXEL, S, S)[index]
        mask_logits = torch.einsum("be,btehw->bthw", self.seg_query(out[:, 0]), embeds)
        weights = F.adaptive_avg_pool2d(mask_logits.sigmoid().detach(), 8).flatten(2)  # [B, T, 64]
        pooled = (weights[..., None] * tokens[index]).sum(2) / weights.sum(2, keepdim=True).clamp(min=1e-4)
        span = self.span(torch.cat([pooled, out[:, 1, None].expand(-1, T, -1)], -1)).squeeze(-1)
        return mask_logits, span


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", default="train/configs/tiny.yaml")
    parser.add_argument("--steps", type=int, default=250, help="steps to run")
    parser.add_argument("--schedule-steps", type=int, default=None, help="cosine length (default: --steps)")
    parser.add_argument("--stem", choices=("cnn", "clip"), default="cnn")
    parser.add_argument("--differences", action="store_true", help="frame differences beside RGB")
    parser.add_argument("--mora-adapter", action="store_true", help="mora's VideoAdapter on the CLIP grid")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.mora_adapter and args.stem != "clip":
        parser.error("--mora-adapter needs --stem clip")
    torch.manual_seed(args.seed)
    run = load_run_config(args.config)
    components = build_mora_components(run, args.seed)
    dataset, collate, config = components.dataset, components.collate_fn, components.model.config
    vocab = components.model.get_input_embeddings().weight.shape[0]
    model = ReferenceLearner(vocab, config.video_token_id, args.stem, args.differences, args.mora_adapter)
    total = args.schedule_steps or args.steps
    optim = torch.optim.AdamW(model.parameters(), lr=run.optim.lr, betas=run.optim.betas, weight_decay=0.0)
    warmup = run.optim.warmup_steps

    def factor(step: int) -> float:
        cosine = 0.5 * (1 + math.cos(math.pi * min(step, total) / total))
        return min(1.0, (step + 1) / warmup) * (
            run.optim.min_lr_ratio + (1 - run.optim.min_lr_ratio) * cosine
        )

    schedule = torch.optim.lr_scheduler.LambdaLR(optim, factor)
    draw = torch.Generator().manual_seed(args.seed)
    # the default's global batch (its micro-batch in each of its processes), in one process here
    global_batch = run.train.micro_batch_size * run.train.cpu_processes * run.train.grad_accum_steps
    w_bce, w_dice = config.mask_bce_loss_weight, config.mask_dice_loss_weight
    start, history = time.time(), []
    for step in range(args.steps):
        items = torch.randint(len(dataset), (global_batch,), generator=draw).tolist()
        batch = collate([dataset[i] for i in items])
        mask_logits, span_logits = model(batch)
        logits, targets = mask_logits.flatten(0, 1), batch["gt_masks"].flatten(0, 1)
        dice = L.mask_dice_loss(logits, targets)
        span = L.temporal_loss(span_logits, batch["span_labels"], batch["span_valid"])
        loss = w_bce * L.mask_bce_loss(logits, targets) + w_dice * dice + span
        optim.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), run.optim.grad_clip)
        optim.step()
        schedule.step()
        history.append((dice.item(), span.item()))
        if (step + 1) % 25 == 0:
            recent = history[-25:]
            print(
                f"step {step + 1}: dice {sum(d for d, _ in recent) / 25:.3f} "
                f"span {sum(s for _, s in recent) / 25:.3f} ({time.time() - start:.0f} s)",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
