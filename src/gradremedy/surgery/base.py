"""The interface every gradient method implements, and the functional form that applies one.

A method sees, per group, only the three reductions of the auxiliary gradient ``s`` and the main
gradient ``a`` (:class:`GroupStats`) and returns two per-group scalars ``A`` and ``B``: the shared
parameters then receive ``A * s + B * a``. It may also return its own diagnostics (0-d tensors) and
keep state across steps (GradVac's target similarity) through ``state_dict``/``load_state_dict``.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Any

import torch

from gradremedy.surgery.grouping import GRANULARITIES, GroupStats, group_ids_for

Coefficients = tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]


class GradientMethod:
    """Base class: ``coefficients(stats) -> (A, B, diagnostics)``, all tensors, no host syncs."""

    name = "method"
    # True when method(c s, c a) = c method(s, a) for every c > 0 (needed under a loss scaler).
    scale_equivariant = True
    # True when the result is always s + a: the engine may then take it from one backward pass of
    # main + aux (see GradientEngine.backward's ``task_gradients``).
    adds_gradients = False

    def __init__(self, granularity: str = "tensor"):
        if granularity not in GRANULARITIES:
            raise ValueError(
                f"{self.name}: unknown granularity '{granularity}' (known: {', '.join(GRANULARITIES)})"
            )
        self.granularity = granularity

    def coefficients(self, stats: GroupStats) -> Coefficients:
        raise NotImplementedError

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state:
            raise ValueError(f"{self.name} keeps no state, got keys {sorted(state)}")

    def settings(self) -> dict[str, Any]:
        """The settings it was built with (for logs and checkpoints)."""
        return {"granularity": self.granularity}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.settings().items())
        return f"{type(self).__name__}({args})"


def plain_sum_where_unusable(
    stats: GroupStats, A: torch.Tensor, B: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Use ``A = B = 1`` (the plain sum) in groups without a usable angle (see GroupStats.usable)."""
    usable = stats.usable
    one = torch.ones_like(A)
    return torch.where(usable, A, one), torch.where(usable, B, one)


# Elements per block of the reductions' float64 scratch (2 x 2 MiB) and of the combine's scratch.
REDUCE_BLOCK = 1 << 18


def _check_pairs(main_grads: Sequence[torch.Tensor | None], aux_grads: Sequence[torch.Tensor | None]) -> None:
    if len(main_grads) != len(aux_grads):
        raise ValueError(f"main_grads has {len(main_grads)} tensors but aux_grads has {len(aux_grads)}")
    devices = set()
    for i, (a, s) in enumerate(zip(main_grads, aux_grads)):
        if a is not None and s is not None and a.shape != s.shape:
            raise ValueError(f"tensor {i}: main gradient shape {tuple(a.shape)} != aux {tuple(s.shape)}")
        devices.update(t.device for t in (a, s) if t is not None)
    if len(devices) > 1:
        raise ValueError(f"gradients are on several devices: {sorted(map(str, devices))}")


def _compute_dtype(*tensors: torch.Tensor | None) -> torch.dtype:
    """float64 if any input is, else float32 (half and bfloat16 are computed in float32)."""
    return (
        torch.float64 if any(t is not None and t.dtype == torch.float64 for t in tensors) else torch.float32
    )


def _tensor_stats(
    main_grads: Sequence[torch.Tensor | None], aux_grads: Sequence[torch.Tensor | None]
) -> torch.Tensor:
    """(3, N) float64 on the CPU: |s|^2, |a|^2, <s, a> of every tensor, in float64.

    Per tensor, no packing. A float64 pair: ``torch._foreach_norm`` and a ``dot``. A float32 (or half)
    pair is streamed block by block through a small float64 scratch (cache-sized, reused) and reduced
    there with three ``dot`` calls per block: each gradient is read from memory once and
    nothing the size of the inputs is allocated. float64 makes the products of float32 values exact and
    their squares exact-range, as the engine's reductions: float32 sums (error ~1e-7 |s||a|) would leave
    GR's sin = sqrt(1 - cos^2) ~1e-4 off near anti-parallel gradients, and the per-element cancellations
    of A s + B a visible at 1e-5. One host synchronisation, for the 3 N numbers.
    """
    n = len(main_grads)
    refs = [a if a is not None else s for a, s in zip(main_grads, aux_grads)]
    device = next((r.device for r in refs if r is not None), torch.device("cpu"))
    grams = torch.zeros(n, 3, dtype=torch.float64, device=device)  # |s|^2, |a|^2, <s, a>
    largest = max((r.numel() for r in refs if r is not None), default=0)
    scratch = torch.empty(2, min(REDUCE_BLOCK, max(largest, 1)), dtype=torch.float64, device=device)
    for i, (a, s) in enumerate(zip(main_grads, aux_grads)):
        if refs[i] is None or refs[i].numel() == 0:
            continue
        a_flat = None if a is None else a.reshape(-1)
        s_flat = None if s is None else s.reshape(-1)
        if _compute_dtype(a, s) == torch.float64:
            a_flat = None if a_flat is None else a_flat.double()
            s_flat = None if s_flat is None else s_flat.double()
            if s_flat is not None:
                grams[i, 0] = torch.dot(s_flat, s_flat)
            if a_flat is not None:
                grams[i, 1] = torch.dot(a_flat, a_flat)
            if a_flat is not None and s_flat is not None:
                grams[i, 2] = torch.dot(s_flat, a_flat)
            continue
        if a_flat is None or s_flat is None:
            scratch.zero_()
        numel = refs[i].numel()
        parts = []
        for start in range(0, numel, scratch.shape[1]):
            s_block, a_block = scratch[:, : min(numel - start, scratch.shape[1])]
            for block, flat in ((s_block, s_flat), (a_block, a_flat)):
                if flat is not None:
                    block.copy_(flat[start : start + block.shape[0]])
            parts += [torch.dot(s_block, s_block), torch.dot(a_block, a_block), torch.dot(s_block, a_block)]
        grams[i] = torch.stack(parts).view(-1, 3).sum(0)
    return grams.T.cpu()  # the one sync


def _combine_one(
    a: torch.Tensor | None, s: torch.Tensor | None, A: torch.Tensor, B: torch.Tensor
) -> torch.Tensor | None:
    """``A * s + B * a`` for one tensor, as the engine rounds it (each product rounded, then summed).

    One kernel when A or B is 1 (GR outside its rescale, the plain sum); otherwise block by block
    through a small scratch for ``B * a``, so no second full-size tensor is allocated.
    """
    ref = a if a is not None else s
    if ref is None:
        return None
    dtype = _compute_dtype(a, s)
    a = None if a is None else a.to(dtype)
    s = None if s is None else s.to(dtype)
    A_, B_ = A.to(dtype).item(), B.to(dtype).item()  # the coefficients in the compute dtype, as the engine
    if a is None:
        out = torch.mul(s, A_)
    elif s is None:
        out = torch.mul(a, B_)
    elif A_ == 1.0:
        out = torch.add(s, a, alpha=B_)
    elif B_ == 1.0:
        out = torch.add(a, s, alpha=A_)
    else:  # block by block, so that each block of the result is written to memory once
        out = torch.empty_like(s)
        flat_out, flat_s, flat_a = out.view(-1), s.reshape(-1), a.reshape(-1)
        scratch = torch.empty(min(flat_a.numel(), REDUCE_BLOCK), dtype=dtype, device=a.device)
        for start in range(0, flat_a.numel(), REDUCE_BLOCK):
            stop = min(flat_a.numel(), start + REDUCE_BLOCK)
            block = torch.mul(flat_s[start:stop], A_, out=flat_out[start:stop])
            block.add_(torch.mul(flat_a[start:stop], B_, out=scratch[: stop - start]))
    return out if out.dtype == ref.dtype else out.to(ref.dtype)


def apply_method(
    method: GradientMethod,
    main_grads: Sequence[torch.Tensor | None],
    aux_grads: Sequence[torch.Tensor | None],
    *,
    groups: Sequence[Hashable] | None = None,
) -> list[torch.Tensor | None]:
    """Combine per-tensor main and auxiliary gradients with ``method``; returns ``A*s + B*a`` per tensor.

    A ``None`` gradient counts as zeros; a tensor whose two gradients are both ``None`` gets ``None``.
    Results are new tensors with the shapes and dtypes of the inputs (computed in float32, or float64 if
    either input of that tensor is); the inputs are not changed.

    No packing into a flat buffer: per-tensor float64 reductions (each gradient read once), the method
    on the per-group sums (G numbers), then one combine per tensor. Unlike :class:`GradientEngine`, this
    synchronises with the host once per call (on a GPU), to read the per-tensor numbers.
    """
    _check_pairs(main_grads, aux_grads)
    shapes = [
        (a if a is not None else s).shape if (a is not None or s is not None) else torch.Size([0])
        for a, s in zip(main_grads, aux_grads)
    ]
    group_ids = group_ids_for(shapes, method.granularity, groups)
    stats = _tensor_stats(main_grads, aux_grads)  # (3, N) float64, CPU
    num_groups = max(group_ids, default=-1) + 1
    index = torch.tensor(group_ids, dtype=torch.long)
    grouped = torch.zeros(3, num_groups, dtype=torch.float64).index_add_(1, index, stats)
    A, B, _ = method.coefficients(GroupStats(ss=grouped[0], aa=grouped[1], sa=grouped[2]))
    return [_combine_one(a, s, A[g], B[g]) for a, s, g in zip(main_grads, aux_grads, group_ids)]
