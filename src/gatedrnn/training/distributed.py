"""Data-parallel training across processes started by ``torchrun``.

``torchrun --standalone --nproc_per_node=N -m gatedrnn train ...`` sets ``RANK``, ``WORLD_SIZE``
and ``LOCAL_RANK``; ``setup`` then joins the process group (gloo on CPU, NCCL on CUDA). Each rank
trains on its own rows of the global batch; DistributedDataParallel averages the gradients, so
the update equals one process's on the whole batch. Rank 0 alone writes files.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_writer(self) -> bool:
        return self.rank == 0

    def rows(self, batch_size: int) -> slice:
        """This rank's share of the ``batch_size`` streams."""
        if batch_size % self.world_size:
            raise ValueError(f"batch size {batch_size} must be a multiple of the number of processes "
                             f"({self.world_size})")
        share = batch_size // self.world_size
        return slice(self.rank * share, (self.rank + 1) * share)


def resolve_device(name, info: DistInfo | None = None) -> torch.device:
    """``name`` (``cpu``, ``cuda``, ``cuda:N``, ``auto`` or a ``torch.device``) as a device this
    process can use; a ``ValueError`` saying why otherwise. ``cuda`` alone is the process's
    local rank under torchrun (``info``), the current device otherwise."""
    info = info or DistInfo()
    if isinstance(name, torch.device):
        name = str(name)
    if name in ("", "auto"):
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ValueError(f"device must be cpu, cuda, cuda:N or auto, got {name!r}") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {name!r} was asked for, but this torch build sees no CUDA device")
        if device.index is None:
            device = torch.device("cuda", info.local_rank if info.enabled else torch.cuda.current_device())
    return device


def setup(device: str = "auto") -> tuple[DistInfo, torch.device]:
    """Join the process group when launched by torchrun; a single process otherwise."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    info = DistInfo(rank=int(os.environ.get("RANK", "0")), world_size=world,
                    local_rank=int(os.environ.get("LOCAL_RANK", "0")))
    dev = resolve_device(device, info)
    if info.enabled and not dist.is_initialized():
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo")
    return info, dev


def teardown(clean: bool = True) -> None:
    """Leave the process group. After a clean end, once every rank has got here: a rank that
    destroyed its group while another still worked (rank 0 drawing the loss curve) was seen to
    die in gloo's teardown (SIGABRT), failing the whole launch. After an error, at once: the other
    ranks may never get here."""
    if dist.is_available() and dist.is_initialized():
        if clean:
            dist.barrier()
        dist.destroy_process_group()


def broadcast_object(obj, info: DistInfo):
    """Rank 0's ``obj`` on every rank (a run folder name, a go/no-go decision)."""
    if not info.enabled:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def gather_rows(tensors: list, info: DistInfo) -> list:
    """Each tensor ``(L, B_rank, size)`` gathered along the batch axis into ``(L, B, size)``."""
    if not info.enabled:
        return tensors
    out = []
    for t in tensors:
        parts = [torch.empty_like(t) for _ in range(info.world_size)]
        dist.all_gather(parts, t.contiguous())
        out.append(torch.cat(parts, dim=1))
    return out


def gather_objects(obj, info: DistInfo) -> list:
    if not info.enabled:
        return [obj]
    out = [None] * info.world_size
    dist.all_gather_object(out, obj)
    return out


def all_reduce_mean(value: float, info: DistInfo, device) -> float:
    if not info.enabled:
        return value
    t = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return float(t.item()) / info.world_size
