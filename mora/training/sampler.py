"""A resumable, rank-aware batch order over a map-style dataset.

The global sample stream is the concatenation of passes over the dataset, pass ``p`` being the
permutation ``randperm(len, seed + p)``. Global micro-step ``g`` consumes the ``world * batch`` samples
starting at ``g * world * batch``; rank ``r`` takes its ``batch``-sized slice (or, given the items' sizes, its
share of a split that balances them: `ResumableBatchSampler`). The position is therefore
one integer (global samples consumed), saved with each checkpoint: resuming with the same world size
replays exactly the batches an uninterrupted run would have drawn.

Items are ``(pass, index)`` keys; `PassIndexedDataset` sets the dataset's epoch to the pass before reading
the index (inside the worker that reads it), so per-epoch randomness such as frame jitter of
`mora.data` datasets (a pure function of seed, epoch and index) also replays exactly.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch.utils.data import Dataset


class PassIndexedDataset(Dataset):
    """Reads ``(pass, index)`` keys from a map-style dataset, calling its ``set_epoch(pass)`` if it has one."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset
        self._set_epoch = getattr(dataset, "set_epoch", None)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]) -> Any:
        epoch, index = key
        if self._set_epoch is not None:
            self._set_epoch(epoch)
        return self.dataset[index]


class ResumableBatchSampler:
    """Infinite iterable of ``(pass, index)`` key lists for ``DataLoader(batch_sampler=...)`` over a
    `PassIndexedDataset`.

    ``sizes`` (optional, one per dataset index): the work an item brings, e.g. the questions of a video group.
    With several ranks, each global micro-step's ``world * batch`` items are then dealt out largest first, each to
    the least loaded rank that still has room, instead of in slices: every rank waits for the slowest at each
    gradient all-reduce, and slices of groups of 1-4 questions leave one rank about a tenth over the mean.
    """

    def __init__(
        self,
        length: int,
        *,
        batch_size: int,
        rank: int,
        world_size: int,
        seed: int,
        start_sample: int = 0,
        sizes: Sequence[int] | None = None,
    ) -> None:
        if length < 1:
            raise ValueError("the training dataset is empty")
        if sizes is not None and len(sizes) != length:
            raise ValueError(f"sizes: need one per dataset item ({length}), got {len(sizes)}")
        self.length = length
        self.batch_size = batch_size
        self.rank = rank
        self.world_size = world_size
        self.seed = seed
        self.start_sample = start_sample
        self.sizes = None if sizes is None else list(sizes)
        self._pass = -1
        self._perm: torch.Tensor | None = None

    @property
    def samples_per_step(self) -> int:
        """Global samples one micro-step consumes (all ranks)."""
        return self.batch_size * self.world_size

    def _key(self, position: int) -> tuple[int, int]:
        p, offset = divmod(position, self.length)
        if p != self._pass:
            self._perm = torch.randperm(self.length, generator=torch.Generator().manual_seed(self.seed + p))
            self._pass = p
        return p, int(self._perm[offset])

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        position = self.start_sample
        while True:
            if self.sizes is None or self.world_size == 1:
                first = position + self.rank * self.batch_size
                yield [self._key(first + i) for i in range(self.batch_size)]
            else:
                keys = [self._key(position + i) for i in range(self.samples_per_step)]
                yield [keys[i] for i in self._share([self.sizes[index] for _, index in keys])]
            position += self.samples_per_step

    def _share(self, sizes: list[int]) -> list[int]:
        """Positions (in order) of this rank's items among one global micro-step's items of ``sizes``: largest
        first, each to the least loaded rank with room (ties: the earlier item, the lower rank); the same on
        every rank."""
        loads = [0] * self.world_size
        taken: list[list[int]] = [[] for _ in range(self.world_size)]
        for i in sorted(range(len(sizes)), key=lambda i: (-sizes[i], i)):
            rank = min(
                (r for r in range(self.world_size) if len(taken[r]) < self.batch_size),
                key=lambda r: (loads[r], r),
            )
            taken[rank].append(i)
            loads[rank] += sizes[i]
        return sorted(taken[self.rank])
