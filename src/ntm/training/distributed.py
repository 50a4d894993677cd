"""Data-parallel training on ``torch.distributed``: the process group, rank seeds, rank states.

A run started by ``torchrun``, which sets ``WORLD_SIZE``, ``RANK`` and ``LOCAL_RANK`` in every
process it starts, trains one replica of the model per process with
:class:`~torch.nn.parallel.DistributedDataParallel` (DDP): gloo on the CPU, NCCL on CUDA with
each process on ``cuda:LOCAL_RANK``. Each process (rank) draws its own batches of
``train.batch_size`` sequences; DDP averages the gradients during the backward pass, so one
update with ``K`` ranks equals a one-process update on the ``K * batch_size`` sequences together:
the loss is a mean over sequences, and the mean of ``K`` means of equal-sized batches is the mean
of their union. Rank 0 alone validates and writes the run directory.

Resuming restores every rank exactly. At each checkpoint the generator states of all ranks are
gathered (:func:`torch.distributed.all_gather`) into rank 0's state file: rank 0's stay under
``rng.<name>``, as in a one-process run, and rank ``r``'s go under ``rng.rank<r>.<name>``
(``name`` is ``data``, ``torch`` for torch's global CPU generator, and ``cuda`` on CUDA). They are
stored rather than re-derived because how many numbers a task draws per batch varies.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from safetensors import safe_open
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from .build import resolve_device
from .errors import ConfigError, RunDirError

__all__ = [
    "World",
    "agree",
    "data_seed",
    "gather_generators",
    "launched",
    "mean",
    "process_group",
    "restore_generators",
    "wrap",
]


@dataclass(frozen=True)
class World:
    """Where this process stands in a data-parallel run; a plain run is a world of one.

    Attributes:
        size: processes in the run (torchrun's ``WORLD_SIZE``).
        rank: this process's index, ``0`` to ``size - 1``; rank 0 writes the run directory.
        device: the device this process trains on (``cuda:LOCAL_RANK`` under torchrun).
    """

    size: int = 1
    rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def main(self) -> bool:
        """Whether this is rank 0, the process that logs, validates and checkpoints."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        """Whether there are other processes to communicate with."""
        return self.size > 1


def launched() -> tuple[int, int]:
    """``(WORLD_SIZE, RANK)`` as torchrun set them for this process; ``(1, 0)`` outside torchrun.

    Known before :func:`process_group` runs, e.g. for the command line to let rank 0 alone
    print.
    """
    return int(os.environ.get("WORLD_SIZE", "1")), int(os.environ.get("RANK", "0"))


@contextlib.contextmanager
def process_group(device: str = "auto") -> Iterator[World]:
    """The :class:`World` of this process, inside torchrun's process group while in the block.

    Under torchrun with ``WORLD_SIZE`` above 1 it initialises the default process group (gloo
    for the CPU, NCCL for CUDA; the rendezvous address comes from torchrun's environment) and
    destroys it on leaving. A process group the caller has initialised is used and left alone.

    Args:
        device: ``train.device``: ``"auto"``, ``"cpu"`` or ``"cuda"``. With CUDA and
            ``LOCAL_RANK`` set, the process trains on ``cuda:LOCAL_RANK``.

    Raises:
        ConfigError: CUDA asked for but missing, or ``LOCAL_RANK`` past the CUDA devices.
    """
    resolved = resolve_device(device)
    if dist.is_available() and dist.is_initialized():
        size, rank = dist.get_world_size(), dist.get_rank()
    else:
        size, rank = launched()
    if resolved.type == "cuda" and "LOCAL_RANK" in os.environ:
        local, count = int(os.environ["LOCAL_RANK"]), torch.cuda.device_count()
        if local >= count:
            raise ConfigError(f"LOCAL_RANK is {local} but this machine has {count} CUDA "
                              f"device(s); start at most {count} processes per node")
        resolved = torch.device("cuda", local)
        torch.cuda.set_device(resolved)  # NCCL and the CUDA generator use the current device
    created = size > 1 and not dist.is_initialized()
    if created:
        if not dist.is_available():
            raise ConfigError("WORLD_SIZE is above 1 but this PyTorch has no torch.distributed")
        dist.init_process_group("nccl" if resolved.type == "cuda" else "gloo")
    try:
        yield World(size, rank, resolved)
        if created:
            # Leave together: a rank that tears gloo down while rank 0 still validates and
            # writes the last checkpoint was seen to abort ("terminate called without an
            # active exception"). Not on errors, where a peer may never arrive.
            dist.barrier()
    finally:
        if created:
            dist.destroy_process_group()


def data_seed(seed: int, rank: int = 0) -> int:
    """The seed of rank ``rank``'s training data in a run seeded with ``seed``.

    Rank 0 draws what a one-process run draws, ``2 * seed + 1`` (even numbers seed the weights),
    so a world of one is a plain run. Other ranks take a 63-bit number that numpy's
    :class:`~numpy.random.SeedSequence` derives from ``(seed, rank)``; it is built to give
    independent streams from related keys, so no rank reuses the stream of another run's seed.

    >>> data_seed(3), data_seed(3, 1) == data_seed(3, 1) != data_seed(4, 1)
    (7, True)
    """
    if rank == 0:
        return 2 * seed + 1
    word = np.random.SeedSequence(seed, spawn_key=(rank,)).generate_state(1, np.uint64)[0]
    return int(word) >> 1  # torch.Generator.manual_seed wants at most 64 bits; keep it positive


def wrap(model: nn.Module, world: World) -> nn.Module:
    """``model`` in :class:`DistributedDataParallel` when ``world`` has several ranks, else itself.

    Construction broadcasts rank 0's parameters, so every replica starts equal; afterwards the
    gradients of ``backward`` are averaged over the ranks. Call the bare model, not the wrapper,
    where only some ranks run it (validation): the wrapper's forward pass is collective.
    """
    if not world.distributed:
        return model
    ids = [world.device.index] if world.device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids)


def mean(value: torch.Tensor, world: World) -> float:
    """The mean over the ranks of a scalar; collective, so every rank must call it."""
    if not world.distributed:
        return value.item()
    total = value.detach().reshape(1).to(torch.float64)  # NCCL reduces device tensors only
    dist.all_reduce(total)
    return total.item() / world.size


def agree(code: int, world: World) -> int:
    """The largest ``code`` over the ranks; collective. Lets any rank's reason to stop stop all."""
    if not world.distributed:
        return code
    tensor = torch.tensor([code], device=world.device)
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return int(tensor.item())


def _with_global(generators: dict[str, torch.Generator]) -> dict[str, torch.Generator]:
    return {**generators, "torch": torch.default_generator}


def gather_generators(
    generators: dict[str, torch.Generator], world: World
) -> dict[str, torch.Generator]:
    """Copies of the other ranks' generators, for rank 0 to save; collective.

    Args:
        generators: this rank's named generators; torch's global CPU generator is added as
            ``"torch"``. Every rank must pass the same names.
        world: this process's world.

    Returns:
        On rank 0, generators named ``rank<r>.<name>`` holding rank ``r``'s states, for every
        other rank ``r``; elsewhere, and in a world of one, an empty dict.
    """
    if not world.distributed:
        return {}
    copies = {}
    for name, generator in sorted(_with_global(generators).items()):
        state = generator.get_state().to(world.device)  # a uint8 tensor, as long on every rank
        states = [torch.empty_like(state) for _ in range(world.size)]
        dist.all_gather(states, state)
        if world.main:
            for rank in range(1, world.size):
                copy = copies[f"rank{rank}.{name}"] = torch.Generator(device=generator.device)
                copy.set_state(states[rank].cpu())
    return copies


def restore_generators(
    path: str | os.PathLike[str], generators: dict[str, torch.Generator], world: World
) -> None:
    """Set this rank's generators (and torch's global one) to the states saved for it in ``path``.

    Rank 0's states are the plain ``rng.<name>`` entries that
    :func:`~ntm.training.checkpoint.load_state` restores; so this does nothing on rank 0.

    Raises:
        RunDirError: the file holds no states for this rank.
    """
    if world.main:
        return
    with safe_open(Path(path), framework="pt") as file:
        keys = set(file.keys())  # noqa: SIM118 (safe_open is not a mapping)
        for name, generator in _with_global(generators).items():
            key = f"rng.rank{world.rank}.{name}"
            if key not in keys:
                raise RunDirError(f"{path} holds no generator state for rank {world.rank}")
            generator.set_state(file.get_tensor(key))
