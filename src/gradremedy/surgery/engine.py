"""Per-task gradients from a model and their combination: the step between ``loss`` and ``optimizer.step``.

::

    engine = GradientEngine(model.parameters(), shared, build_method("gr", K=5),
                            before_combination=[AllReduceTasks(), ClipPerTask(5.0)])
    for micro_batch in batch:
        main_loss, aux_loss = ...
        engine.backward(main_loss, aux_loss)          # or backward=<your backward function>
    diagnostics = engine.combine()                    # every parameter's .grad is now set
    optimizer.step()
    optimizer.zero_grad()                             # the ordinary one: the engine keeps nothing

**The contract.** ``backward`` runs two backward passes through the caller's graph: first the auxiliary
loss (keeping the graph), then the main loss, each through ``backward(loss, retain_graph)``, by default
``loss.backward(retain_graph=retain_graph)``. Pass your own to let Lightning (``manual_backward``), a
``GradScaler`` or DeepSpeed run them. After each pass the engine moves the shared parameters' ``.grad``
into its accumulators (``s``: auxiliary, ``a``: main) and sets it to ``None``; every other parameter
keeps its ordinary ``.grad`` (the sum of whatever the two losses give it). ``combine`` applies the
``before_combination`` steps (see :mod:`gradremedy.surgery.steps`) to the two task gradients, combines
them with the method and writes the shared parameters' ``.grad``. From then on the engine holds no
gradient state: the next ``backward`` starts a new step, so the usual ``optimizer.zero_grad()`` (either
``set_to_none``) is all that is needed. A shared parameter's ``.grad`` found non-``None`` at a
``backward`` (the user did not zero it) is counted as main-task gradient, as PyTorch would accumulate it.
The only state that survives a step is the method's own (GradVac's targets), saved by ``state_dict``.

**One pass where two are not needed.** ``backward(..., task_gradients=False)`` allows the engine to run
one backward pass of ``main + aux`` instead of two when the result cannot depend on the two gradients
apart: the method always adds them (``adds_gradients``: the plain sum) and every ``before_combination``
step is ``linear`` (``AllReduceTasks``). That step's ``combine`` then returns no gradient diagnostics (there
are no task gradients to compare). Otherwise the flag changes nothing. A training loop passes it on the
steps whose diagnostics it does not log: the plain sum then costs one backward pass, as it does without
the engine.

Accumulation over micro-batches (the rules are nonlinear, so this is a real choice):

* ``accumulated`` (default): s and a are summed separately over the micro-batches and the method is
  applied once to the sums. The result then does not depend on how a batch is split into
  micro-batches (nor on the number of ranks), it is what the method means for the whole batch, and
  it costs one combination per optimizer step.
* ``per_micro``: the method is applied to every micro-batch and the results summed (the authors'
  code). Diagnostics are then averaged over the micro-batches.

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
from gradremedy.surgery.steps import TaskGradients

ACCUMULATION_POLICIES = ("accumulated", "per_micro")
BackwardFn = Callable[[torch.Tensor, bool], None]
Step = Callable[[TaskGradients], "dict[str, torch.Tensor] | None"]


def default_backward(loss: torch.Tensor, retain_graph: bool) -> None:
    """``loss.backward(retain_graph=retain_graph)``."""
    loss.backward(retain_graph=retain_graph)


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

    ``before_combination``: steps applied in order to the task gradients right before each combination
    (:class:`ScaleTasks`, :class:`AllReduceTasks`, :class:`ClipPerTask` or your own callables).
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
        before_combination: Sequence[Step] = (),
        groups: Sequence[Hashable] | None = None,
        kinds: Sequence[str] | None = None,
        chunk: int | None = None,
    ):
        if accumulation not in ACCUMULATION_POLICIES:
            raise ValueError(
                f"unknown accumulation '{accumulation}' (known: {', '.join(ACCUMULATION_POLICIES)})"
            )
        self.method = method
        self.accumulation = accumulation
        self.before_combination = list(before_combination)
        if accumulation == "per_micro":
            whole = [s for s in self.before_combination if getattr(s, "needs_whole_step", False)]
            if whole:
                raise ValueError(f"{whole[0]!r} needs accumulation='accumulated'")
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
        # Work buffers, reused every step; their contents never outlive the step (see the contract).
        self._grads = self.layout.new_buffer(2)  # row 0: auxiliary s, row 1: main a
        self._aux_views = self.layout.views(self._grads[0])
        self._main_views = self.layout.views(self._grads[1])
        self._out = torch.zeros(self.layout.padded, device=device, dtype=dtype)
        self._out_views = self.layout.views(self._out)
        self._reached_aux = [False] * len(self.shared)
        self._reached_main = [False] * len(self.shared)
        self._reached_out = [False] * len(self.shared)
        self._micro_batches = 0
        self._diagnostic_sums: dict[str, torch.Tensor] = {}
        self._one_pass = False  # this step's gradients came from one backward pass of main + aux
        self.one_pass_possible = getattr(method, "adds_gradients", False) and all(
            getattr(step, "linear", False) for step in self.before_combination
        )
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

    def backward(
        self,
        main_loss: torch.Tensor,
        aux_loss: torch.Tensor | None,
        backward: BackwardFn | None = None,
        *,
        task_gradients: bool = True,
    ) -> None:
        """Both task gradients of one micro-batch: ``backward(aux, True)``, then ``backward(main, False)``.

        ``backward`` defaults to ``loss.backward(retain_graph=...)``; e.g. for a GradScaler
        ``lambda loss, retain_graph: scaler.scale(loss).backward(retain_graph=retain_graph)``. An
        ``aux_loss`` that is ``None`` or needs no gradient adds nothing. ``task_gradients=False``: one
        ``backward(main + aux, False)`` where the result allows it (see the module doc); every micro-batch
        of a step must pass the same value.
        """
        run = backward or default_backward
        n = len(self.shared)
        one_pass = not task_gradients and self.one_pass_possible
        if self._micro_batches == 0:
            self._reached_out = [False] * n
            self._one_pass = one_pass
        elif one_pass != self._one_pass:
            raise ValueError("task_gradients must be the same for every micro-batch of a step")
        if self._micro_batches == 0 or self.accumulation == "per_micro":  # the buffers start afresh
            self._reached_aux, self._reached_main = [False] * n, [False] * n
        leftover = self._take_shared_grads()  # a .grad the user left counts as main gradient
        aux_needed = aux_loss is not None and aux_loss.requires_grad
        if one_pass and aux_needed:
            main_loss = main_loss + aux_loss if main_loss.requires_grad else aux_loss
        elif aux_needed:
            run(aux_loss, True)
            self._add_into(self._aux_views, self._take_shared_grads(), self._reached_aux)
        if main_loss.requires_grad:
            run(main_loss, False)
        main_grads = self._take_shared_grads()
        for i, grad in enumerate(leftover):
            if grad is not None:
                main_grads[i] = grad if main_grads[i] is None else main_grads[i] + grad
        self._add_into(self._main_views, main_grads, self._reached_main)
        self._micro_batches += 1
        if self.accumulation == "per_micro":
            self._zero_unreached(self._aux_views, self._reached_aux)
            self._zero_unreached(self._main_views, self._reached_main)
            diagnostics = self._combine(accumulate=self._micro_batches > 1, others=[])
            for key, value in diagnostics.items():
                self._diagnostic_sums[key] = self._diagnostic_sums.get(key, 0) + value
            self._reached_out = [
                o or x or y for o, x, y in zip(self._reached_out, self._reached_aux, self._reached_main)
            ]

    def _take_shared_grads(self) -> list[torch.Tensor | None]:
        grads = [p.grad for p in self.shared]
        for p in self.shared:
            p.grad = None
        return grads

    def _add_into(
        self, views: list[torch.Tensor], grads: Sequence[torch.Tensor | None], reached: list[bool]
    ) -> None:
        """Accumulate into the views; a view not yet reached this step is overwritten, not added to."""
        copy_to, copy_from, add_to, add_from = [], [], [], []
        for i, (view, grad) in enumerate(zip(views, grads)):
            if grad is None:
                continue
            grad = grad if grad.dtype == view.dtype else grad.to(view.dtype)
            if reached[i]:
                add_to.append(view)
                add_from.append(grad)
            else:
                copy_to.append(view)
                copy_from.append(grad)
                reached[i] = True
        for target, source in zip(copy_to, copy_from):  # (torch._foreach_copy_ needs a newer torch)
            target.copy_(source)
        if add_to:
            torch._foreach_add_(add_to, add_from)

    @staticmethod
    def _zero_unreached(views: list[torch.Tensor], reached: list[bool]) -> None:
        unreached = [v for v, r in zip(views, reached) if not r and v.numel() > 0]
        if unreached:
            torch._foreach_zero_(unreached)

    # ---- per optimizer step ------------------------------------------------------------------------

    def combine(self) -> dict[str, torch.Tensor]:
        """Write the combined ``.grad`` of the shared parameters; returns 0-d diagnostic tensors.

        Runs the ``before_combination`` steps, the method and the fused combine (accumulated), or
        finishes the per-micro-batch combinations (per_micro). Afterwards the engine holds no gradient
        state: the next ``backward`` starts the next step.
        """
        if self._micro_batches == 0:
            raise RuntimeError("combine() before any backward() since the last combine()")
        if self.accumulation == "accumulated":
            self._zero_unreached(self._aux_views, self._reached_aux)
            self._zero_unreached(self._main_views, self._reached_main)
            diagnostics = self._combine(accumulate=False, others=self.others)
            reached = [x or y for x, y in zip(self._reached_aux, self._reached_main)]
        else:
            diagnostics = {k: v / self._micro_batches for k, v in self._diagnostic_sums.items()}
            diagnostics.update(self._run_steps(self._others_only()))  # e.g. reduce the others' .grad
            reached = self._reached_out
        for p, view, hit in zip(self.shared, self._out_views, reached):
            p.grad = (view if view.dtype == p.dtype else view.to(p.dtype)) if hit else None
        self._micro_batches = 0
        self._diagnostic_sums = {}
        return diagnostics

    def _others_only(self) -> TaskGradients:
        empty = self._grads.new_empty(0)
        return TaskGradients([], [], empty, empty, self.others)

    def _run_steps(self, grads: TaskGradients) -> dict[str, torch.Tensor]:
        diagnostics: dict[str, torch.Tensor] = {}
        for step in self.before_combination:
            diagnostics.update(step(grads) or {})
        return diagnostics

    def _combine(self, accumulate: bool, others: list[nn.Parameter]) -> dict[str, torch.Tensor]:
        grads = TaskGradients(self._main_views, self._aux_views, self._grads[1], self._grads[0], others)
        step_diagnostics = self._run_steps(grads)
        stats = self.layout.reduce(self._grads)
        A, B, method_diagnostics = self.method.coefficients(stats)
        self.layout.combine(self._grads, A, B, self._out, accumulate=accumulate)
        if self._one_pass:  # s is zero and a is s + a: nothing to compare
            return step_diagnostics
        diagnostics = gradient_diagnostics(stats, A, B, self._kind_index, self.kind_names)
        diagnostics.update(method_diagnostics)
        diagnostics.update(step_diagnostics)
        return diagnostics

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
