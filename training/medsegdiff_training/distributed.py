"""Running the same training under ``torchrun``: process-group setup and helpers.

``torchrun --nproc_per_node=N -m medsegdiff_training train ...`` starts N copies of the
CLI with ``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE`` and the rendezvous address in the
environment. :func:`distributed_session` turns that into an initialised process group
(NCCL on GPUs, gloo on CPUs) and a device per process; the trainer then wraps the model
in :class:`~torch.nn.parallel.DistributedDataParallel`, splits the data with
:class:`~torch.utils.data.DistributedSampler` and lets rank 0 alone write. Nothing here
is home-made distribution: it is PyTorch's, configured.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

from .device import resolve_device
from .errors import DeviceError


@dataclass(frozen=True)
class DistributedContext:
    """This process's place in the job (rank 0 of 1 when not under torchrun)."""

    rank: int
    local_rank: int
    world_size: int
    device: str  # a device string for TrainConfig.device, e.g. "cuda:1" or "cpu"
    backend: str | None

    @property
    def is_main(self) -> bool:
        """Whether this process prints, writes checkpoints and registers versions."""
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world_size > 1


def launched_by_torchrun() -> bool:
    """Whether the environment says this process is one of several (torchrun sets these)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and "RANK" in os.environ


def init_distributed(device: str = "auto", timeout_minutes: float = 30.0) -> DistributedContext:
    """Join the torchrun job described by the environment; a no-op for a single process."""
    if not launched_by_torchrun():
        return DistributedContext(0, 0, 1, str(resolve_device(device)), None)
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    kind = resolve_device(device).type
    if kind == "cuda":
        if local_rank >= torch.cuda.device_count():
            raise DeviceError(
                f"Process {local_rank} on this node has no GPU ({torch.cuda.device_count()} visible): "
                "start torchrun with --nproc_per_node at most the number of GPUs."
            )
        torch.cuda.set_device(local_rank)
        backend, device_name = "nccl", f"cuda:{local_rank}"
    elif kind == "cpu":
        backend, device_name = "gloo", "cpu"
    else:
        raise DeviceError(
            f"Multi-process training runs on CUDA GPUs or CPUs, not {kind!r}; use --device cuda or cpu."
        )
    if not dist.is_initialized():
        dist.init_process_group(backend=backend, timeout=timedelta(minutes=timeout_minutes))
    return DistributedContext(rank, local_rank, world, device_name, backend)


def shutdown_distributed() -> None:
    """Leave the process group (safe to call when there is none)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


@contextlib.contextmanager
def distributed_session(device: str = "auto") -> Iterator[DistributedContext]:
    """``with distributed_session("auto") as context:`` -- join the job, leave it after."""
    context = init_distributed(device)
    try:
        yield context
    finally:
        if context.active:
            shutdown_distributed()


def process_rank() -> int:
    """This process's rank (0 when not distributed)."""
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def world_size() -> int:
    """How many processes train together (1 when not distributed)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def barrier() -> None:
    """Wait for every process (nothing to wait for in a single process)."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.barrier()


def max_over_ranks(value: float, device: torch.device) -> float:
    """The largest ``value`` over all ranks (``value`` itself in a single process).

    The trainer uses it so that every rank stops at the same step when any one of them
    is cancelled or out of time; otherwise the others would wait for it forever.
    """
    if not (dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
        return value
    tensor = torch.tensor([float(value)], device=device)
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return float(tensor.item())


def gather_objects(value: object) -> list[object]:
    """Every rank's ``value``, in rank order (``[value]`` in a single process)."""
    if not (dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
        return [value]
    gathered: list[object] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, value)
    return gathered
