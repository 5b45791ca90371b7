"""Per-task gradients from a model and their combination: the step between ``loss`` and ``optimizer.step``.

::

    engine = GradientEngine(model.parameters(), model.shared_parameters(), build_method("gr", K=5))
    for micro_batch in batch:
        losses = model(...)
        engine.backward(losses["main"], losses["aux"])   # scaled by a GradScaler if any
    diagnostics = engine.step_gradients()                # every parameter's .grad is now set
    clip, optimizer.step(), engine.zero_grad()

``backward`` takes the auxiliary gradient ``s`` with ``torch.autograd.grad`` over the shared
parameters only (the auxiliary loss reaches nothing else; any other parameter it might reach gets
nothing from it) keeping the graph for the one ``main_loss.backward()`` that follows and frees it.
The main gradient ``a`` of the shared parameters is moved out of ``.grad`` into the engine's flat
buffer; every other parameter keeps its main gradient in ``.grad`` as usual.

Accumulation over micro-batches (the rules are nonlinear, so this is a real choice):

* ``accumulated`` (default): s and a are summed separately over the micro-batches and the method is
  applied once to the sums. The result then does not depend on how a batch is split into
  micro-batches (nor on the number of ranks), it is what the method means for the whole batch, and
  it costs one combination per optimizer step.
* ``per_micro``: the method is applied to every micro-batch and the results summed (the authors'
  code). Diagnostics are then averaged over the micro-batches.

Distributed training: the optional ``reduce_fn(flat_main, flat_aux)`` is called with the two flat
buffers (1-D, the shared parameters' accumulated main and auxiliary gradients, zero padding
included) right before every combination; it must reduce them in place (e.g. all-reduce and divide
by the world size), so every rank applies the rule to the same averaged gradients.

Parameters are identified by object (never by name, which DDP or torch.compile change). A shared
parameter reached by neither loss keeps ``.grad = None``; one reached by only one loss counts the
other's gradient as zeros. Non-finite gradients stay non-finite, so a GradScaler skips the step.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Sequence
from typing import Any

import torch
from torch import nn

from gradremedy.surgery.base import GradientMethod
from gradremedy.surgery.diagnostics import gradient_diagnostics
from gradremedy.surgery.grouping import FlatLayout, default_kind, group_ids_for

ACCUMULATION_POLICIES = ("accumulated", "per_micro")
ReduceFn = Callable[[torch.Tensor, torch.Tensor], None]


def _unique(parameters: Iterable[nn.Parameter]) -> list[nn.Parameter]:
    seen: set[int] = set()
    unique = []
    for p in parameters:
        if p.requires_grad and id(p) not in seen:
            seen.add(id(p))
            unique.append(p)
    return unique


class GradientEngine:
    """Combined ``.grad`` for every parameter from a main loss and an auxiliary loss per micro-batch.

    ``groups`` (one id per shared parameter) is needed for ``granularity="layer"``; see
    :func:`groups_from_modules`. ``kinds`` (one name per shared parameter, e.g. from
    :func:`kinds_from_modules`) labels the per-kind diagnostics; by default matrices vs vectors.
    """

    def __init__(
        self,
        parameters: Iterable[nn.Parameter],
        shared_parameters: Iterable[nn.Parameter],
        method: GradientMethod,
        accumulation: str = "accumulated",
        *,
        groups: Sequence[Hashable] | None = None,
        kinds: Sequence[str] | None = None,
        reduce_fn: ReduceFn | None = None,
        chunk: int | None = None,
    ):
        if accumulation not in ACCUMULATION_POLICIES:
            raise ValueError(
                f"unknown accumulation '{accumulation}' (known: {', '.join(ACCUMULATION_POLICIES)})"
            )
        self.method = method
        self.accumulation = accumulation
        self.reduce_fn = reduce_fn
        self.parameters = _unique(parameters)
        self.shared = _unique(shared_parameters)
        all_ids = {id(p) for p in self.parameters}
        if any(id(p) not in all_ids for p in self.shared):
            raise ValueError("every shared parameter must also be among the parameters (identity by object)")
        shared_ids = {id(p) for p in self.shared}
        self.others = [p for p in self.parameters if id(p) not in shared_ids]
        devices = {p.device for p in self.shared}
        if len(devices) > 1:
            raise ValueError(f"shared parameters are on several devices: {sorted(map(str, devices))}")
        device = devices.pop() if devices else torch.device("cpu")
        dtype = torch.float64 if any(p.dtype == torch.float64 for p in self.shared) else torch.float32
        shapes = [p.shape for p in self.shared]
        self.layout = FlatLayout(
            shapes, group_ids_for(shapes, method.granularity, groups), device, dtype, chunk
        )
        self._grads = self.layout.new_buffer(2)  # row 0: auxiliary s, row 1: main a
        self._aux_views = self.layout.views(self._grads[0])
        self._main_views = self.layout.views(self._grads[1])
        self._out = torch.zeros(self.layout.padded, device=device, dtype=dtype)
        self._out_views = self.layout.views(self._out)
        self._assigned: list[torch.Tensor | None] = [None] * len(self.shared)
        self._reached = [False] * len(self.shared)
        self._micro_batches = 0
        self._diagnostic_sums: dict[str, torch.Tensor] = {}
        self._init_kinds(kinds)

    def _init_kinds(self, kinds: Sequence[str] | None) -> None:
        if kinds is None:
            kinds = [default_kind(p) for p in self.shared]
        if len(kinds) != len(self.shared):
            raise ValueError(f"kinds= has {len(kinds)} entries for {len(self.shared)} shared parameters")
        group_kind: dict[int, str] = {}
        for gid, kind in zip(self.layout.group_ids, kinds):
            group_kind[gid] = kind if group_kind.get(gid, kind) == kind else "mixed"
        self.kind_names = sorted(set(group_kind.values()))
        index = [self.kind_names.index(group_kind[g]) for g in range(self.layout.num_groups)]
        self._kind_index = torch.tensor(index, dtype=torch.long, device=self.layout.device)

    # ---- per micro-batch -------------------------------------------------------------------------

    def backward(self, main_loss: torch.Tensor, aux_loss: torch.Tensor | None) -> None:
        """Accumulate both task gradients of one micro-batch (losses already scaled by a GradScaler)."""
        self._release_assigned_grads()
        if self.shared and aux_loss is not None and aux_loss.requires_grad:
            aux_grads = torch.autograd.grad(aux_loss, self.shared, retain_graph=True, allow_unused=True)
            self._add_into(self._aux_views, aux_grads)
        main_loss.backward()
        main_grads = [p.grad for p in self.shared]
        self._add_into(self._main_views, main_grads)
        for p in self.shared:
            p.grad = None
        self._micro_batches += 1
        if self.accumulation == "per_micro":
            diagnostics = self._combine(accumulate=True)
            for key, value in diagnostics.items():
                self._diagnostic_sums[key] = self._diagnostic_sums.get(key, 0) + value
            self._grads.zero_()

    def _add_into(self, views: list[torch.Tensor], grads: Sequence[torch.Tensor | None]) -> None:
        targets, sources = [], []
        for i, (view, grad) in enumerate(zip(views, grads)):
            if grad is not None:
                targets.append(view)
                sources.append(grad.to(view.dtype))
                self._reached[i] = True
        if targets:
            torch._foreach_add_(targets, sources)

    def _release_assigned_grads(self) -> None:
        """Before a backward: take our combined ``.grad`` views back; keep any other gradient as main."""
        for i, p in enumerate(self.shared):
            if p.grad is not None and p.grad is self._assigned[i]:
                p.grad = None
        self._assigned = [None] * len(self.shared)

    # ---- per optimizer step ------------------------------------------------------------------------

    def step_gradients(self) -> dict[str, torch.Tensor]:
        """Write the combined ``.grad`` of the shared parameters; returns 0-d diagnostic tensors."""
        if self._micro_batches == 0:
            raise RuntimeError("step_gradients() before any backward() since the last zero_grad()")
        if self.accumulation == "accumulated":
            diagnostics = self._combine(accumulate=False)
        else:
            diagnostics = {k: v / self._micro_batches for k, v in self._diagnostic_sums.items()}
        for i, (p, view) in enumerate(zip(self.shared, self._out_views)):
            grad = view.to(p.dtype) if self._reached[i] else None
            p.grad = grad
            self._assigned[i] = grad
        return diagnostics

    def _combine(self, accumulate: bool) -> dict[str, torch.Tensor]:
        if self.reduce_fn is not None:
            self.reduce_fn(self._grads[1], self._grads[0])  # (flat_main, flat_aux), reduced in place
        stats = self.layout.reduce(self._grads)
        A, B, method_diagnostics = self.method.coefficients(stats)
        self.layout.combine(self._grads, A, B, self._out, accumulate=accumulate)
        diagnostics = gradient_diagnostics(stats, A, B, self._kind_index, self.kind_names)
        diagnostics.update(method_diagnostics)
        return diagnostics

    def zero_grad(self) -> None:
        """Clear every parameter's ``.grad`` and the engine's accumulators."""
        for p in self.parameters:
            p.grad = None
        self._assigned = [None] * len(self.shared)
        self._grads.zero_()
        self._out.zero_()
        self._reached = [False] * len(self.shared)
        self._micro_batches = 0
        self._diagnostic_sums = {}

    # ---- state ---------------------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """The method's state (e.g. GradVac's targets) and the settings it must be resumed with."""
        return {
            "method": self.method.name,
            "settings": self.method.settings(),
            "accumulation": self.accumulation,
            "num_groups": self.layout.num_groups,
            "method_state": self.method.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("method") != self.method.name or state.get("num_groups") != self.layout.num_groups:
            raise ValueError(
                f"engine state is for method '{state.get('method')}' with {state.get('num_groups')} groups, "
                f"this engine runs '{self.method.name}' with {self.layout.num_groups} groups"
            )
        self.method.load_state_dict(state.get("method_state", {}))
