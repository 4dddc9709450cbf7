"""Training progress: a tqdm bar (ETA, loss components, learning rate, samples/s) and TensorBoard scalars,
both on rank 0 only."""

from __future__ import annotations

import time
from collections import defaultdict
from pathlib import Path

from mora.utils.logging import get_logger

logger = get_logger("training")


class LossMeter:
    """Running means of the loss components over the micro-batches since the last `pop`."""

    def __init__(self) -> None:
        self._sums: dict[str, float] = defaultdict(float)
        self._count = 0

    def add(self, values: dict[str, float]) -> None:
        for k, v in values.items():
            self._sums[k] += v
        self._count += 1

    def pop(self) -> dict[str, float]:
        out = {k: v / max(1, self._count) for k, v in self._sums.items()}
        self._sums.clear()
        self._count = 0
        return out


class ProgressReporter:
    def __init__(
        self,
        *,
        total_steps: int,
        start_step: int,
        enabled: bool,
        progress_bar: bool,
        tensorboard_dir: Path | None,
    ) -> None:
        self.enabled = enabled
        self.total_steps = total_steps
        self._bar = None
        self._writer = None
        self._last_time = time.perf_counter()
        self._last_samples = 0
        self._last_questions = 0
        if not enabled:
            return
        if progress_bar:
            from tqdm.auto import tqdm

            self._bar = tqdm(
                total=total_steps, initial=start_step, desc="train", unit="step", dynamic_ncols=True
            )
        if tensorboard_dir is not None:
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(log_dir=str(tensorboard_dir))

    def start(self, samples_consumed: int) -> None:
        self._last_time = time.perf_counter()
        self._last_samples = samples_consumed

    def step(self, n: int = 1) -> None:
        if self._bar is not None:
            self._bar.update(n)

    def log(
        self, step: int, losses: dict[str, float], lr: float, samples_consumed: int, questions: int = 0
    ) -> None:
        """Report losses and rates; ``samples_consumed`` counts dataset items (a video group is one),
        ``questions`` the questions trained on so far (rows of the batches)."""
        if not self.enabled:
            return
        now = time.perf_counter()
        elapsed = max(now - self._last_time, 1e-9)
        rate = (samples_consumed - self._last_samples) / elapsed
        q_rate = (questions - self._last_questions) / elapsed
        self._last_time, self._last_samples, self._last_questions = now, samples_consumed, questions
        if self._bar is not None:
            short = {k.removeprefix("loss_"): f"{v:.4f}" for k, v in losses.items()}
            rates = {"samples/s": f"{rate:.1f}", "questions/s": f"{q_rate:.1f}"}
            self._bar.set_postfix({**short, "lr": f"{lr:.2e}", **rates}, refresh=False)
        else:
            parts = " ".join(f"{k}={v:.4f}" for k, v in losses.items())
            logger.info(
                "step %d/%d %s lr=%.3e samples/s=%.1f questions/s=%.1f",
                step,
                self.total_steps,
                parts,
                lr,
                rate,
                q_rate,
            )
        if self._writer is not None:
            for k, v in losses.items():
                self._writer.add_scalar(f"train/{k}", v, step)
            self._writer.add_scalar("train/lr", lr, step)
            self._writer.add_scalar("train/samples_per_s", rate, step)
            self._writer.add_scalar("train/questions_per_s", q_rate, step)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
        if self._writer is not None:
            self._writer.flush()
            self._writer.close()
