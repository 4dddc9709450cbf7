"""A small torch module, dataset and collate function with MoRA's training interface (``forward(**batch)``
returning ``loss`` and ``loss_*``), for testing the training loop without the real model."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class ToyOutput:
    loss: torch.Tensor
    loss_mse: torch.Tensor
    loss_l1: torch.Tensor


class ToyRegressor(torch.nn.Module):
    """Linear -> dropout -> linear; ``nan_at_call`` makes the n-th forward (1-based) return NaN."""

    def __init__(self, nan_at_call: int | None = None) -> None:
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.Dropout(0.2), torch.nn.Linear(16, 1))
        self.nan_at_call = nan_at_call
        self.calls = 0

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> ToyOutput:
        self.calls += 1
        pred = self.net(x).squeeze(-1)
        mse = ((pred - y) ** 2).mean()
        l1 = (pred - y).abs().mean()
        if self.nan_at_call is not None and self.calls >= self.nan_at_call:
            mse = mse * float("nan")
        return ToyOutput(loss=mse + 0.1 * l1, loss_mse=mse, loss_l1=l1)


class ToyDataset(torch.utils.data.Dataset):
    """Item i is fixed by i (like a seeded dataset); y = sum(x) + noise drawn from the global RNG, so
    resuming is exact only if the RNG state is restored too."""

    def __len__(self) -> int:
        return 37

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.randn(4, generator=torch.Generator().manual_seed(i))
        return x, x.sum() + 0.01 * torch.randn(())


def toy_collate(items: list[tuple[torch.Tensor, torch.Tensor]]) -> dict[str, torch.Tensor]:
    return {"x": torch.stack([x for x, _ in items]), "y": torch.stack([y for _, y in items])}
