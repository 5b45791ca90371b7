"""Training on several processes (one or many nodes, started by ``torchrun``) with every method correct.

    torchrun --nproc_per_node 4 -m gradremedy train --config C --data D --out EXP --device cuda

**No DDP wrapper: the task gradients are all-reduced by the library's** :class:`AllReduceTasks`
(``gradremedy.surgery``), a step the gradient engine runs right before it combines them. A training step
needs two backward passes through one forward (the auxiliary loss keeping the graph, then the main loss),
which DistributedDataParallel does not support; and the methods are nonlinear, so each task's gradient
must be reduced over the ranks *separately, before* the combination, whereas DDP only reduces what lands
in ``.grad``. The engine holds both task gradients of the shared parameters in one flat buffer each;
``AllReduceTasks`` reduces those two buffers and the gradient of every other parameter over the ranks, so
every rank combines the same gradients, gets the same result and takes the same optimizer step (weights
stay identical without any broadcast after the first one). The training loop uses it exactly as any
torchrun user of the library would.

**What is communicated** per optimizer step (per micro-batch with ``surgery.accumulation=per_micro``):
the main gradient of every parameter (the non-shared ones gathered into flat buckets of at most 25 MiB,
the shared ones as the engine's flat buffer) plus the auxiliary gradient of the shared
parameters (the engine's other flat buffer), plus a few bytes per micro-batch of utterance counts. Plain
DDP with ``no_sync`` accumulation all-reduces each parameter's gradient once per step: N elements. This
sends N + N_shared (+ the engine's chunk padding, < 1024 elements per group). The extra N_shared is
inherent to all-reducing: the methods need the rank average of s and of a, not just of s + a.
``AllReduceTasks.bytes_last_call`` counts what was sent; :func:`ddp_bytes_per_step` is the DDP figure.
Per optimizer step: tiny config 6.3 MiB vs DDP's 5.5 MiB (1.15x, SE = 14 % of the parameters); paper
configs 528 MiB vs 347 MiB (1.52x: the 3 x 896 BLSTM is 47 of the 91 M parameters). (A reduce-scatter of
s and a, the combination on each rank's shard and an all-gather would send 3 N_shared instead of 4 in ring
terms, 1.26x DDP for the paper configs: not done.) The all-reduce runs after the backward passes, not
overlapped with them as DDP does for its last micro-batch.

**The batch size is global** (as in ESPnet): the loader splits each global batch into contiguous,
as-equal-as-possible shares, one per rank (``data/batching.py``). The model's losses are per-utterance
averages over the *local* batch: the ASR losses over the local utterances with a transcript, the SE
loss over those with a clean reference. Each rank
weights them by local / global counts (:func:`loss_weights`: one all-reduce of two numbers per
micro-batch) and ``AllReduceTasks(op="sum")`` sums, so the reduced gradient is the one a single process
computes on the whole global batch, even for uneven shares or references on some ranks only. (This equals
DDP's averaging with each loss weighted by ``local / global * world_size``.)

**Everything else**: the process group is initialised from torchrun's environment (``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``): NCCL and ``cuda:LOCAL_RANK`` on CUDA,
gloo on CPU. Only rank 0 writes files; the others wait at barriers (:func:`main_process_first` for the
experiment directory and tokenizer). Each rank has its own random stream (dropout, SpecAugment), saved per
rank in ``last.pt``, so a resumed run continues exactly. Validation: every rank decodes its share, the
sums and transcripts are gathered. Logged training losses are the mean over ranks of each rank's local
means (exactly the global means when the shares are equal).

Limits: a shared parameter must receive a gradient on every rank or on none (true of the joint model);
a non-shared parameter without a gradient on a rank counts as zeros there, and after the reduction every
non-shared parameter has a gradient (zeros if no rank reached it).
"""

from __future__ import annotations

import atexit
import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from gradremedy.errors import UserError

_RANK_SEED_STRIDE = 1_000_003  # seeds of ranks > 0: far from any seed a user would try next


@dataclass(frozen=True)
class DistributedContext:
    """Where this process stands: its rank, the number of ranks and the device it trains on."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _env_int(name: str, default: int | None = None) -> int:
    value = os.environ.get(name)
    if value is None:
        if default is None:
            raise UserError(
                f"WORLD_SIZE is set but {name} is not: start several processes with torchrun "
                "(torchrun --nproc_per_node N -m gradremedy train ...)"
            )
        return default
    try:
        return int(value)
    except ValueError:
        raise UserError(f"environment variable {name}={value!r} is not an integer") from None


def setup(device: torch.device) -> DistributedContext:
    """Join the process group torchrun describes in the environment (or the one already initialised).

    A single process (``WORLD_SIZE`` unset or 1) gets ``DistributedContext(device=device)`` and no
    process group. On CUDA the device becomes ``cuda:LOCAL_RANK`` whatever index ``device`` names.
    """
    initialised = dist.is_available() and dist.is_initialized()
    if initialised:
        rank, world_size = dist.get_rank(), dist.get_world_size()
        local_rank = _env_int("LOCAL_RANK", rank if device.type != "cuda" else (device.index or 0))
    else:
        world_size = _env_int("WORLD_SIZE", 1)
        if world_size <= 1:
            return DistributedContext(device=device)
        if not dist.is_available():
            raise UserError("WORLD_SIZE > 1 but this PyTorch build has no torch.distributed")
        rank, local_rank = _env_int("RANK"), _env_int("LOCAL_RANK")
        for name in ("MASTER_ADDR", "MASTER_PORT"):
            if name not in os.environ:
                raise UserError(f"WORLD_SIZE={world_size} but {name} is not set: start with torchrun")
    if device.type == "cuda":
        if local_rank >= torch.cuda.device_count():
            raise UserError(
                f"LOCAL_RANK {local_rank} but this node has {torch.cuda.device_count()} CUDA device(s): "
                "use --nproc_per_node <= the number of GPUs"
            )
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    if not initialised:
        backend = "nccl" if device.type == "cuda" else "gloo"
        device_id = device if device.type == "cuda" else None
        dist.init_process_group(backend, device_id=device_id)
        atexit.register(shutdown)
    return DistributedContext(rank, world_size, local_rank, device)


def shutdown() -> None:
    """Leave the process group (if any); safe to call more than once."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier(world_size: int) -> None:
    """Wait until every rank arrives (no-op for a single process)."""
    if world_size > 1:
        dist.barrier()


@contextmanager
def main_process_first(context: DistributedContext) -> Iterator[None]:
    """Rank 0 runs the block first (e.g. writes a file); the others run it after rank 0 has finished."""
    if not context.is_main:
        barrier(context.world_size)
    yield
    if context.is_main:
        barrier(context.world_size)


def broadcast_state(module: nn.Module, world_size: int) -> None:
    """Give every rank rank 0's parameters and buffers (as DDP does once at start-up)."""
    if world_size <= 1:
        return
    for tensor in module.state_dict().values():
        dist.broadcast(tensor, src=0)


def decorrelate_random_streams(seed: int, rank: int, world_size: int) -> None:
    """Seed every generator of rank r > 0 from ``seed + r * stride``: ranks draw independent masks.

    Rank 0 keeps the stream a single process would have. Called after the model is built, so the initial
    weights are the same on every rank.
    """
    if world_size <= 1 or rank == 0:
        return
    import random

    import numpy as np

    rank_seed = seed + rank * _RANK_SEED_STRIDE
    random.seed(rank_seed)
    np.random.seed(rank_seed % 2**32)
    torch.manual_seed(rank_seed)


# ----------------------------------------------------------------------------------------------------
# Per micro-batch: the weights that make the summed gradient the global-batch one


def loss_weights(
    has_text: torch.Tensor, has_clean: torch.Tensor, world_size: int
) -> tuple[torch.Tensor | float, torch.Tensor | float]:
    """(main weight, auxiliary weight) of this rank's per-utterance-averaged losses.

    ``local transcripts / global transcripts`` and ``local references / global references`` (0 where no
    rank has one), from the (B,) masks of the utterances with a transcript and with a clean reference:
    the ASR losses are averaged over the transcribed utterances, the SE loss over those with a
    reference, so with the gradients summed over ranks the result is the global-batch mean. One
    all-reduce of two numbers, on the device, no host sync. ``(1.0, 1.0)`` for a single process.
    """
    if world_size <= 1:
        return 1.0, 1.0
    local = torch.stack([has_text.sum().float(), has_clean.sum().float()])  # (2,)
    total = local.clone()
    dist.all_reduce(total)
    weights = local / total.clamp(min=1.0)
    return weights[0], weights[1]


def ddp_bytes_per_step(parameters: Sequence[nn.Parameter]) -> int:
    """Bytes plain DDP all-reduces per optimizer step (``no_sync`` accumulation): every gradient once."""
    return sum(p.numel() * p.element_size() for p in parameters if p.requires_grad)


# ----------------------------------------------------------------------------------------------------
# Logging, validation and checkpoints


def average_over_ranks(sums: dict[str, torch.Tensor], world_size: int, device: torch.device) -> None:
    """Replace each logged running sum by its mean over the ranks (one all-reduce), in place."""
    if world_size <= 1 or not sums:
        return
    names = sorted(sums)  # the same order on every rank
    stacked = torch.stack([sums[n].detach().float().to(device).reshape(()) for n in names])  # (K,)
    dist.all_reduce(stacked)
    stacked /= world_size
    for name, value in zip(names, stacked):
        sums[name] = value


def sum_over_ranks(values: Sequence[float], world_size: int, device: torch.device) -> list[float]:
    """Element-wise sums of a list of numbers over the ranks (float64)."""
    if world_size <= 1:
        return [float(v) for v in values]
    tensor = torch.tensor([float(v) for v in values], dtype=torch.float64, device=device)
    dist.all_reduce(tensor)
    return tensor.tolist()


def gather_over_ranks(items: list[Any], world_size: int) -> list[Any]:
    """Every rank's list, concatenated in rank order (picklable items)."""
    if world_size <= 1:
        return list(items)
    gathered: list[Any] = [None] * world_size
    dist.all_gather_object(gathered, items)
    return [item for part in gathered for item in part]


def gather_rng_states(state: dict[str, Any], world_size: int) -> dict[str, Any]:
    """What ``last.pt`` stores as its random state: ``state`` itself, or every rank's under ``per_rank``."""
    if world_size <= 1:
        return state
    return {"per_rank": gather_over_ranks([state], world_size)}


def rng_state_for_rank(saved: dict[str, Any], rank: int, world_size: int) -> dict[str, Any]:
    """This rank's random state from a checkpoint written by :func:`gather_rng_states`.

    A run resumed with another number of ranks cannot continue every stream: rank r then takes the
    saved stream r modulo the saved count (and says so).
    """
    if "per_rank" not in saved:
        if world_size > 1 and rank == 0:
            print("resuming a single-process run on several ranks: random streams differ", file=sys.stderr)
        return saved
    states = saved["per_rank"]
    if len(states) != world_size and rank == 0:
        print(
            f"resuming a run of {len(states)} rank(s) on {world_size}: random streams differ", file=sys.stderr
        )
    return states[rank % len(states)]


__all__ = [
    "DistributedContext",
    "average_over_ranks",
    "barrier",
    "broadcast_state",
    "ddp_bytes_per_step",
    "decorrelate_random_streams",
    "gather_over_ranks",
    "gather_rng_states",
    "loss_weights",
    "main_process_first",
    "rng_state_for_rank",
    "setup",
    "shutdown",
    "sum_over_ranks",
]
