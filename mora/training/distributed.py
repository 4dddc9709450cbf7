"""Process-group set-up for DeepSpeed: one code path for a single CPU process, ``deepspeed``/``torchrun``
launches on CPU (gloo) and GPUs (NCCL)."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class DistInfo:
    rank: int
    local_rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def init_distributed() -> DistInfo:
    """Initialise the process group (idempotent). Without a launcher this is a world of one process."""
    import deepspeed
    from deepspeed.accelerator import get_accelerator

    if "RANK" not in os.environ:  # plain `python train/train.py`: a world of one, on a free local port
        os.environ.update(RANK="0", LOCAL_RANK="0", WORLD_SIZE="1", LOCAL_WORLD_SIZE="1")
        os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(_free_port()))
    accelerator = get_accelerator()
    backend = accelerator.communication_backend_name()  # "gloo" on CPU, "nccl" on CUDA
    if not torch.distributed.is_initialized():
        deepspeed.init_distributed(dist_backend=backend, verbose=False)
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if accelerator.device_name() == "cpu":
        device = torch.device("cpu")
    else:
        accelerator.set_device(local_rank)
        device = torch.device(accelerator.device_name(local_rank))
    return DistInfo(
        rank=torch.distributed.get_rank(),
        local_rank=local_rank,
        world_size=torch.distributed.get_world_size(),
        device=device,
    )


def all_ranks_true(flag: bool, device: torch.device) -> bool:
    """True on every rank iff ``flag`` is true on every rank."""
    t = torch.tensor([0.0 if flag else 1.0], device=device)
    if torch.distributed.is_initialized() and torch.distributed.get_world_size() > 1:
        torch.distributed.all_reduce(t)
    return bool(t.item() == 0.0)


def mean_over_ranks(values: dict[str, float], device: torch.device) -> dict[str, float]:
    if not values or not torch.distributed.is_initialized() or torch.distributed.get_world_size() == 1:
        return values
    keys = sorted(values)
    t = torch.tensor([values[k] for k in keys], dtype=torch.float64, device=device)
    torch.distributed.all_reduce(t)
    t /= torch.distributed.get_world_size()
    return dict(zip(keys, t.tolist()))
