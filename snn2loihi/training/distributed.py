"""Multi-process data-parallel training with PyTorch DDP, launched by ``torchrun``.

``torchrun --nproc_per_node=2 -m snn2loihi.cli train --recipe R.yaml`` starts one process
per rank with ``RANK``/``WORLD_SIZE``/``MASTER_ADDR`` set; :meth:`Distributed.from_env`
joins the process group (gloo on CPU, NCCL on CUDA). Without those variables everything
runs in one process and the helpers are no-ops.

Each global batch of B samples is split by rank (``indices[rank::world]``) and each rank
scales its mean loss by ``n_rank · world / B``; DDP averages gradients over ranks, so the
update equals a single process's step on the whole batch. Neuron states start from rest
in every forward call, i.e. they are reset for every batch on every rank.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Sequence

import torch
import torch.distributed as dist


@dataclass
class Distributed:
    """Rank and world size of this process (``world == 1``: not distributed)."""

    rank: int = 0
    world: int = 1
    device: str = "cpu"

    @classmethod
    def from_env(cls, device: str = "cpu") -> "Distributed":
        """Join the process group ``torchrun`` describes in the environment, if any."""
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world <= 1:
            return cls(device=device)
        if device.startswith("cuda"):
            device = f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
            torch.cuda.set_device(device)
        if not dist.is_initialized():
            dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
        return cls(dist.get_rank(), dist.get_world_size(), device)

    @property
    def main(self) -> bool:
        """True on the rank that writes files and prints progress."""
        return self.rank == 0

    def wrap(self, model: torch.nn.Module) -> torch.nn.Module:
        """``DistributedDataParallel(model)`` when distributed, else ``model``."""
        if self.world == 1:
            return model
        ids = [torch.device(self.device)] if self.device.startswith("cuda") else None
        return torch.nn.parallel.DistributedDataParallel(model, device_ids=ids)

    def sum(self, values: Sequence[float]) -> list[float]:
        """Element-wise sum of ``values`` over all ranks (float64)."""
        tensor = torch.tensor(list(values), dtype=torch.float64, device=self.device)
        if self.world > 1:
            dist.all_reduce(tensor)
        return tensor.cpu().tolist()

    def any(self, flag: bool) -> bool:
        """True if ``flag`` is true on any rank."""
        return self.sum([1.0 if flag else 0.0])[0] > 0

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()

    def shard(self, indices: Sequence[int]) -> Sequence[int]:
        """This rank's part of a global batch."""
        return indices[self.rank::self.world]
