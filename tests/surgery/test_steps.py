"""The steps before the combination (ScaleTasks, ClipPerTask, AllReduceTasks without a process group)
inside a GradientEngine, against the same arithmetic done by hand on the two task gradients."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from gradremedy.surgery import (
    AllReduceTasks,
    ClipPerTask,
    GradientEngine,
    ScaleTasks,
    apply_method,
    build_method,
)


class Shared(nn.Module):
    """A shared trunk, a main head and an auxiliary head."""

    def __init__(self) -> None:
        super().__init__()
        self.trunk = nn.Linear(3, 5)
        self.main_head = nn.Linear(5, 2)
        self.aux_head = nn.Linear(5, 3)

    def losses(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        hidden = torch.tanh(self.trunk(x))
        return (self.main_head(hidden) ** 2).sum(), 7.0 * ((self.aux_head(hidden) - 1) ** 2).sum()


def task_gradients(model: Shared, x: torch.Tensor) -> tuple[list, list, dict]:
    """(main, aux) gradients of the trunk, and every other parameter's ordinary gradient."""
    main, aux = model.losses(x)
    shared = list(model.trunk.parameters())
    others = [*model.main_head.parameters(), *model.aux_head.parameters()]
    aux_grads = torch.autograd.grad(aux, shared + others, retain_graph=True, allow_unused=True)
    main_grads = torch.autograd.grad(main, shared + others, allow_unused=True)
    rest = {}
    for p, a, s in zip(others, main_grads[2:], aux_grads[2:]):
        rest[p] = (torch.zeros_like(p) if a is None else a) + (torch.zeros_like(p) if s is None else s)
    return list(main_grads[:2]), list(aux_grads[:2]), rest


def engine_for(model: Shared, method: str, steps: list) -> GradientEngine:
    return GradientEngine(
        model.parameters(), model.trunk.parameters(), build_method(method), before_combination=steps
    )


def test_scale_tasks_weights_each_task_on_the_shared_parameters_only() -> None:
    torch.manual_seed(0)
    model, x = Shared(), torch.randn(4, 3)
    main, aux, rest = task_gradients(model, x)
    engine = engine_for(model, "gr", [ScaleTasks(main=0.5, aux=torch.tensor(3.0))])
    engine.backward(*model.losses(x))
    engine.combine()
    expected = apply_method(build_method("gr"), [0.5 * g for g in main], [3.0 * g for g in aux])
    for p, want in zip(model.trunk.parameters(), expected):
        torch.testing.assert_close(p.grad, want)
    for p, want in rest.items():  # the heads keep their ordinary gradients
        torch.testing.assert_close(p.grad, want)


@pytest.mark.parametrize("max_norm", [1e-3, 1e6])
def test_clip_per_task_clips_each_task_to_max_norm(max_norm: float) -> None:
    torch.manual_seed(0)
    model, x = Shared(), torch.randn(4, 3)
    main, aux, rest = task_gradients(model, x)
    main_norm = torch.cat([g.flatten() for g in [*main, *rest.values()]]).norm()  # main over every parameter
    aux_norm = torch.cat([g.flatten() for g in aux]).norm()
    main_scale = min(1.0, max_norm / float(main_norm))
    aux_scale = min(1.0, max_norm / float(aux_norm))
    engine = engine_for(model, "pcgrad", [ClipPerTask(max_norm)])
    engine.backward(*model.losses(x))
    diagnostics = engine.combine()
    assert float(diagnostics["clipped"]) == float(max_norm < 1)
    expected = apply_method(
        build_method("pcgrad"), [main_scale * g for g in main], [aux_scale * g for g in aux]
    )
    for p, want in zip(model.trunk.parameters(), expected):
        torch.testing.assert_close(p.grad, want, rtol=1e-5, atol=1e-9)
    for p, want in rest.items():
        torch.testing.assert_close(p.grad, main_scale * want, rtol=1e-5, atol=1e-9)
    assert float(diagnostics["main_norm"]) <= max_norm * (1 + 1e-5)
    assert float(diagnostics["aux_norm"]) <= max_norm * (1 + 1e-5)


def test_clip_per_task_bound_follows_the_loss_scale() -> None:
    torch.manual_seed(0)
    model, x = Shared(), torch.randn(4, 3)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**8)
    engine = engine_for(model, "sum", [ClipPerTask(1e-3, scaler=scaler)])
    engine.backward(
        *model.losses(x), backward=lambda loss, keep: scaler.scale(loss).backward(retain_graph=keep)
    )
    diagnostics = engine.combine()
    # The engine's norms carry the scale: the bound is max_norm times it.
    assert float(diagnostics["aux_norm"]) == pytest.approx(1e-3 * 2.0**8, rel=1e-5)


def test_all_reduce_without_a_process_group_changes_nothing() -> None:
    torch.manual_seed(0)
    model, x = Shared(), torch.randn(4, 3)
    main, aux, rest = task_gradients(model, x)
    step = AllReduceTasks()
    engine = engine_for(model, "gr", [step])
    engine.backward(*model.losses(x))
    engine.combine()
    assert step.world_size() == 1 and step.calls == 0
    for p, want in zip(model.trunk.parameters(), apply_method(build_method("gr"), main, aux)):
        torch.testing.assert_close(p.grad, want)
    with pytest.raises(ValueError, match="op must be 'mean' or 'sum'"):
        AllReduceTasks(op="max")
    with pytest.raises(ValueError, match="max_norm must be > 0"):
        ClipPerTask(0.0)


def test_steps_run_in_order() -> None:
    model, x = Shared(), torch.randn(2, 3)
    order = []
    steps = [lambda grads, i=i: order.append(i) for i in range(3)]
    engine = engine_for(model, "sum", steps)
    engine.backward(*model.losses(x))
    engine.combine()
    assert order == [0, 1, 2]
