"""The steps a :class:`GradientEngine` applies to the two task gradients right before it combines them.

Each step is a callable object ``step(grads: TaskGradients) -> dict[str, Tensor] | None`` that changes
the gradients in place and may return 0-d diagnostic tensors. They run in the order given to the engine::

    steps = [ScaleTasks(main=1.0, aux=0.5), AllReduceTasks(), ClipPerTask(5.0)]
    GradientEngine(..., before_combination=steps)

* :class:`ScaleTasks`: a fixed weight per task on the shared parameters;
* :class:`AllReduceTasks`: averages (or sums) each task's gradient over the ranks of a
  ``torch.distributed`` process group, separately, so that every rank combines the same gradients
  (the methods are nonlinear: combining first and averaging afterwards is not the same). It also
  reduces the ordinary ``.grad`` of every other parameter, so no DistributedDataParallel wrapper is
  needed (DDP cannot run the two backward passes of one forward);
* :class:`ClipPerTask`: clips each task's gradient to a maximum norm before they are combined (a clip
  of the combined gradient would undo GR's compression and stretch).

Nothing here synchronises with the host.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

BUCKET_BYTES = 25 * 1024 * 1024  # DDP's default bucket_cap_mb


@dataclass
class TaskGradients:
    """What a step sees: both task gradients of the shared parameters, and the other parameters.

    ``main`` and ``aux`` hold one tensor per shared parameter (views into ``flat_main`` and ``flat_aux``,
    1-D buffers that also hold zero padding: a collective or a norm can work on them whole). ``others``
    are the parameters outside the shared set; their gradient is their ordinary ``.grad`` (the main
    task's, plus the auxiliary task's where it reaches them). With ``accumulation="per_micro"`` the
    engine calls the steps once per micro-batch on the shared gradients with ``others`` empty, and once
    more at ``combine()`` with only ``others`` (``main`` and ``aux`` empty).
    """

    main: list[torch.Tensor]
    aux: list[torch.Tensor]
    flat_main: torch.Tensor
    flat_aux: torch.Tensor
    others: list[nn.Parameter]


class ScaleTasks:
    """Multiply the main and the auxiliary gradient of the shared parameters by fixed weights.

    Only the shared parameters: a parameter only one task reaches keeps its ordinary gradient (scale
    that task's loss instead if its weight should apply there too). Numbers or 0-d tensors.
    """

    def __init__(self, main: float | torch.Tensor = 1.0, aux: float | torch.Tensor = 1.0):
        self.main, self.aux = main, aux

    def __call__(self, grads: TaskGradients) -> None:
        for flat, weight in ((grads.flat_main, self.main), (grads.flat_aux, self.aux)):
            if not (isinstance(weight, (int, float)) and weight == 1):
                flat.mul_(weight.to(flat.dtype) if isinstance(weight, torch.Tensor) else weight)

    def __repr__(self) -> str:
        return f"ScaleTasks(main={self.main!r}, aux={self.aux!r})"


def _buckets(parameters: Sequence[nn.Parameter], bucket_bytes: int) -> list[list[nn.Parameter]]:
    """Consecutive parameters of one dtype and device, at most ``bucket_bytes`` per bucket (or one)."""
    buckets: list[list[nn.Parameter]] = []
    size = 0
    for p in parameters:
        nbytes = p.numel() * p.element_size()
        last = buckets[-1] if buckets else None
        if (
            last is None
            or size + nbytes > bucket_bytes
            or last[0].dtype != p.dtype
            or last[0].device != p.device
        ):
            buckets.append([p])
            size = nbytes
        else:
            last.append(p)
            size += nbytes
    return buckets


class AllReduceTasks:
    """All-reduce each task's gradient over the ranks, separately, before the combination.

    ``op="mean"`` (default) averages over the ranks, as DDP does; ``op="sum"`` sums (for losses already
    weighted by each rank's share of a global batch). The shared parameters' two flat buffers are
    reduced whole; the other parameters' ``.grad`` (``include_others``, default) in flat buckets of at
    most ``bucket_bytes``, after which each has ``.grad`` set (zeros where no rank reached it). A no-op
    without an initialised process group or with one rank. Every collective is queued asynchronously
    and waited for together. ``bytes_last_call`` counts what one call sent.

    A shared parameter must receive a gradient on every rank or on none; a rank's missing task
    gradient counts as zeros.
    """

    # Reducing s and a separately or their sum gives the same sum: a one-pass step may use it.
    linear = True

    def __init__(
        self,
        op: str = "mean",
        *,
        group: Any = None,
        include_others: bool = True,
        bucket_bytes: int = BUCKET_BYTES,
    ):
        if op not in ("mean", "sum"):
            raise ValueError(f"AllReduceTasks: op must be 'mean' or 'sum', got {op!r}")
        self.op = op
        self.group = group
        self.include_others = include_others
        self.bucket_bytes = bucket_bytes
        self.bytes_last_call = 0
        self.bytes_total = 0
        self.calls = 0
        self._buckets: list[list[nn.Parameter]] | None = None
        self._bucket_ids: list[int] = []

    def world_size(self) -> int:
        dist = torch.distributed
        if not (dist.is_available() and dist.is_initialized()):
            return 1
        return dist.get_world_size(self.group)

    def _others(self, others: list[nn.Parameter]) -> list[list[nn.Parameter]]:
        if not self.include_others or not others:
            return []
        ids = [id(p) for p in others]
        if self._buckets is None or ids != self._bucket_ids:
            self._buckets, self._bucket_ids = _buckets(others, self.bucket_bytes), ids
        return self._buckets

    def __call__(self, grads: TaskGradients) -> None:
        world_size = self.world_size()
        if world_size <= 1:
            return
        dist = torch.distributed
        buckets = self._others(grads.others)
        flats = [
            torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) for p in bucket])
            for bucket in buckets
        ]
        tensors = [t for t in (grads.flat_main, grads.flat_aux) if t.numel() > 0] + flats
        works = [dist.all_reduce(t, group=self.group, async_op=True) for t in tensors]
        for work in works:
            work.wait()
        if self.op == "mean":
            torch._foreach_div_(tensors, float(world_size))
        for bucket, flat in zip(buckets, flats):
            for p, piece in zip(bucket, flat.split([p.numel() for p in bucket])):
                p.grad = piece.view_as(p)
        self.bytes_last_call = sum(t.numel() * t.element_size() for t in tensors)
        self.bytes_total += self.bytes_last_call
        self.calls += 1

    def __repr__(self) -> str:
        return f"AllReduceTasks(op={self.op!r}, include_others={self.include_others})"


class ClipPerTask:
    """Clip the main and the auxiliary gradient each to ``max_norm`` (L2) before they are combined.

    The main gradient's norm is taken over the shared parameters' main gradient and (``include_others``,
    default) every other parameter's ``.grad``, which is scaled with it; the auxiliary one over the shared
    parameters. ``scaler`` (a ``torch.amp.GradScaler``) means the gradients carry its scale: the bound is
    ``max_norm`` times the current scale. Returns ``{"clipped": 1.0 or 0.0}`` (either task clipped).
    Needs ``accumulation="accumulated"`` (per micro-batch it would clip every micro-batch separately).
    """

    needs_whole_step = True

    def __init__(
        self, max_norm: float, *, include_others: bool = True, scaler: Any = None, eps: float = 1e-12
    ):
        if not (max_norm > 0):
            raise ValueError(f"ClipPerTask: max_norm must be > 0, got {max_norm}")
        self.max_norm = float(max_norm)
        self.include_others = include_others
        self.scaler = scaler
        self.eps = eps

    def _limit(self) -> float | torch.Tensor:
        if self.scaler is not None and self.scaler.is_enabled():
            # The scale as a device tensor where the scaler offers it: get_scale() would sync with the host.
            scale_async = getattr(self.scaler, "_get_scale_async", None)
            scale = scale_async() if scale_async is not None else None
            return self.max_norm * (scale.double() if scale is not None else self.scaler.get_scale())
        return self.max_norm

    def __call__(self, grads: TaskGradients) -> dict[str, torch.Tensor]:
        limit = self._limit()
        others = [p.grad for p in grads.others if p.grad is not None] if self.include_others else []
        main_sq = grads.flat_main.double().square().sum()
        if others:
            main_sq = main_sq + torch.stack([n.double() for n in torch._foreach_norm(others)]).square().sum()
        main_scale = (limit / (main_sq.sqrt() + self.eps)).clamp(max=1.0)
        aux_scale = (limit / (grads.flat_aux.double().norm() + self.eps)).clamp(max=1.0)
        grads.flat_main.mul_(main_scale.to(grads.flat_main.dtype))
        grads.flat_aux.mul_(aux_scale.to(grads.flat_aux.dtype))
        if others:
            torch._foreach_mul_(others, main_scale.to(others[0].dtype))
        return {"clipped": ((main_scale < 1) | (aux_scale < 1)).double()}

    def __repr__(self) -> str:
        return f"ClipPerTask(max_norm={self.max_norm}, include_others={self.include_others})"
