"""GradientEngine against plain autograd on a toy two-head model: per-task gradients, both
accumulation policies, GradScaler, None gradients, state, the ordinary .grad contract (zero_grad,
a caller's backward function), the steps before the combination, diagnostics."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from gradremedy.surgery import (
    ACCUMULATION_POLICIES,
    AllReduceTasks,
    ClipPerTask,
    GradientEngine,
    ScaleTasks,
    TaskGradients,
    apply_method,
    build_method,
    groups_from_modules,
    kinds_from_modules,
)

METHOD_SETTINGS = {
    "sum": {},
    "gr": {"K": 2.0},
    "pcgrad": {},
    "gradvac": {"beta": 0.5},
    "cagrad": {"c": 0.5},
    "mgda": {},
    "imtl": {},
}


class FeedForward(nn.Module):
    """A stand-in for the LSTM with the same call signature."""

    def __init__(self, inputs: int, outputs: int) -> None:
        super().__init__()
        self.linear = nn.Linear(inputs, outputs)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, None]:
        return torch.tanh(self.linear(x)), None


class TwoHeads(nn.Module):
    """Shared trunk (LSTM + Linear) -> main head; the aux loss is on the trunk output only."""

    def __init__(self, rnn: bool = True) -> None:
        super().__init__()
        # Without the LSTM (for the CUDA sync test: cuDNN's own kernels are not under test) a Linear.
        self.trunk_rnn = nn.LSTM(4, 6, num_layers=2, batch_first=True) if rnn else FeedForward(4, 6)
        self.trunk_out = nn.Linear(6, 4)
        self.head = nn.Linear(4, 3)
        self.unused = nn.Linear(2, 2)  # reached by neither loss

    def shared_parameters(self) -> list[nn.Parameter]:
        return [*self.trunk_rnn.parameters(), *self.trunk_out.parameters()]

    def losses(
        self, x: torch.Tensor, target: torch.Tensor, clean: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Both losses are sums over utterances, so gradients of a batch add over its utterances."""
        hidden, _ = self.trunk_rnn(x)
        enhanced = self.trunk_out(hidden)  # (B, T, 4)
        main = ((self.head(enhanced) - target) ** 2).sum()
        aux = 5.0 * ((enhanced - clean) ** 2).sum()  # large: makes conflicts and dominance likely
        return main, aux


def batch(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return (
        torch.randn(n, 5, 4, generator=g),
        torch.randn(n, 5, 3, generator=g),
        torch.randn(n, 5, 4, generator=g),
    )


def by_hand(model: TwoHeads, method, x, target, clean) -> dict[str, torch.Tensor | None]:
    """Both task gradients with two autograd.grad calls, the functional form, main for the rest."""
    shared = model.shared_parameters()
    main, aux = model.losses(x, target, clean)
    aux_grads = torch.autograd.grad(aux, shared, retain_graph=True)
    params = [p for p in model.parameters()]
    main_grads = torch.autograd.grad(main, params, allow_unused=True)
    by_param = dict(zip(map(id, params), main_grads))
    combined = apply_method(
        method, [by_param[id(p)] for p in shared], list(aux_grads), **_groups(model, method)
    )
    result = {name: by_param[id(p)] for name, p in model.named_parameters()}
    shared_names = {id(p): name for name, p in model.named_parameters()}
    for p, grad in zip(shared, combined):
        result[shared_names[id(p)]] = grad
    return result


def _groups(model: TwoHeads, method) -> dict:
    if method.granularity == "layer":
        return {"groups": groups_from_modules(model, model.shared_parameters())}
    return {}


def make_engine(model: TwoHeads, method, **kwargs) -> GradientEngine:
    return GradientEngine(
        model.parameters(), model.shared_parameters(), method, **_groups(model, method), **kwargs
    )


@pytest.mark.parametrize("granularity", ["tensor", "layer", "global"])
@pytest.mark.parametrize("name", sorted(METHOD_SETTINGS))
def test_engine_matches_two_autograd_calls_and_the_functional_form(name: str, granularity: str) -> None:
    model = TwoHeads()
    x, target, clean = batch(4)
    expected = by_hand(
        model, build_method(name, granularity=granularity, **METHOD_SETTINGS[name]), x, target, clean
    )
    method = build_method(name, granularity=granularity, **METHOD_SETTINGS[name])
    engine = make_engine(model, method)
    engine.backward(*model.losses(x, target, clean))
    diagnostics = engine.combine()
    for param_name, p in model.named_parameters():
        if expected[param_name] is None:
            assert p.grad is None, param_name
        else:
            torch.testing.assert_close(p.grad, expected[param_name], msg=param_name)
    assert all(v.dim() == 0 for v in diagnostics.values())
    assert 0 <= float(diagnostics["conflict_rate"]) <= 1


@pytest.mark.parametrize("name", ["gr", "pcgrad", "mgda", "cagrad"])
def test_accumulated_does_not_depend_on_the_micro_batch_split(name: str) -> None:
    model = TwoHeads()
    x, target, clean = batch(8, seed=1)
    method = build_method(name, **METHOD_SETTINGS[name])
    one = make_engine(model, method)
    one.backward(*model.losses(x, target, clean))
    one.combine()
    whole = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()
    two = make_engine(model, build_method(name, **METHOD_SETTINGS[name]))
    for half in (slice(0, 4), slice(4, 8)):
        two.backward(*model.losses(x[half], target[half], clean[half]))
    two.combine()
    for n, p in model.named_parameters():
        if n in whole:
            torch.testing.assert_close(p.grad, whole[n], rtol=1e-4, atol=1e-5, msg=n)
    # And this is the formula applied to the summed gradients.
    expected = by_hand(model, build_method(name, **METHOD_SETTINGS[name]), x, target, clean)
    for n, p in model.named_parameters():
        if n in whole:
            torch.testing.assert_close(p.grad, expected[n], rtol=1e-4, atol=1e-5, msg=n)


def test_per_micro_sums_the_combined_micro_batches_and_differs_from_accumulated() -> None:
    model = TwoHeads()
    x, target, clean = batch(8, seed=2)
    halves = (slice(0, 4), slice(4, 8))
    method = build_method("gr", K=2.0)
    expected: dict[str, torch.Tensor] = {}
    for half in halves:
        for n, g in by_hand(model, method, x[half], target[half], clean[half]).items():
            if g is not None:
                expected[n] = expected.get(n, 0) + g
    engine = make_engine(model, build_method("gr", K=2.0), accumulation="per_micro")
    for half in halves:
        engine.backward(*model.losses(x[half], target[half], clean[half]))
    diagnostics = engine.combine()
    for n, p in model.named_parameters():
        if n in expected:
            torch.testing.assert_close(p.grad, expected[n], rtol=1e-4, atol=1e-5, msg=n)
    assert "rescale_rate" in diagnostics
    accumulated = by_hand(model, build_method("gr", K=2.0), x, target, clean)
    shared_names = {n for n, p in model.named_parameters() if any(p is q for q in model.shared_parameters())}
    assert any(not torch.allclose(expected[n], accumulated[n], rtol=1e-3) for n in shared_names)


@pytest.mark.parametrize("name", ["gr", "pcgrad", "gradvac", "cagrad", "mgda"])
def test_the_accumulation_policies_agree_with_one_micro_batch(name: str) -> None:
    model = TwoHeads()
    x, target, clean = batch(8, seed=4)
    grads, diagnostics = {}, {}
    for policy in ACCUMULATION_POLICIES:
        engine = make_engine(model, build_method(name, **METHOD_SETTINGS[name]), accumulation=policy)
        engine.backward(*model.losses(x, target, clean))
        diagnostics[policy] = engine.combine()
        grads[policy] = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
        model.zero_grad()
    assert grads["accumulated"].keys() == grads["per_micro"].keys()
    for n, g in grads["accumulated"].items():
        torch.testing.assert_close(grads["per_micro"][n], g, msg=n)
    for key, value in diagnostics["accumulated"].items():
        torch.testing.assert_close(diagnostics["per_micro"][key], value, msg=key)


@pytest.mark.parametrize("name", sorted(METHOD_SETTINGS))
def test_grad_scaler_scale_cancels(name: str) -> None:
    torch.manual_seed(0)
    model = TwoHeads()
    x, target, clean = batch(4, seed=3)
    reference = by_hand(model, build_method(name, **METHOD_SETTINGS[name]), x, target, clean)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**14)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
    engine = make_engine(model, build_method(name, **METHOD_SETTINGS[name]))
    main, aux = model.losses(x, target, clean)
    engine.backward(scaler.scale(main), scaler.scale(aux))
    engine.combine()
    scaler.unscale_(optimizer)
    for n, p in model.named_parameters():
        if reference[n] is not None:
            torch.testing.assert_close(p.grad, reference[n], rtol=1e-5, atol=1e-6, msg=n)


def test_overflow_skips_the_step_with_weights_untouched() -> None:
    model = TwoHeads()
    x, target, clean = batch(4, seed=4)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**14)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    engine = make_engine(model, build_method("gr"))
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    main, aux = model.losses(x, target, clean)
    engine.backward(scaler.scale(main), scaler.scale(aux) * float("inf"))  # the SE gradient overflows
    engine.combine()
    assert any(not torch.isfinite(p.grad).all() for p in model.shared_parameters())
    scaler.step(optimizer)
    scaler.update()
    assert scaler.get_scale() < 2.0**14  # the scaler saw the overflow and backed off
    for n, p in model.named_parameters():
        torch.testing.assert_close(p.detach(), before[n], rtol=0, atol=0, msg=n)


def test_none_gradients() -> None:
    model = TwoHeads()
    x, target, clean = batch(2)
    engine = make_engine(model, build_method("gr"))
    main, _ = model.losses(x, target, clean)
    engine.backward(main, torch.zeros(()))  # no SE reference in this batch: aux is a constant
    engine.combine()
    assert model.unused.weight.grad is None  # reached by neither loss
    reference = by_hand(model, build_method("sum"), x, target, clean)
    for p in model.trunk_out.parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all()
    # With no aux gradient the shared parameters get the main gradient alone.
    main_only = torch.autograd.grad(model.losses(x, target, clean)[0], model.trunk_out.weight)[0]
    torch.testing.assert_close(model.trunk_out.weight.grad, main_only)
    assert reference["trunk_out.weight"] is not None


def test_shared_parameter_unreached_by_the_aux_loss_and_by_both() -> None:
    model = TwoHeads()
    extra = nn.Parameter(torch.ones(3))  # shared but reached by nothing
    x, target, clean = batch(2)
    shared = [*model.shared_parameters(), extra]
    engine = GradientEngine([*model.parameters(), extra], shared, build_method("pcgrad"))
    hidden, _ = model.trunk_rnn(x)
    enhanced = model.trunk_out(hidden)
    main = ((model.head(enhanced) - target) ** 2).sum()
    aux = (hidden**2).sum()  # does not reach trunk_out
    engine.backward(main, aux)
    engine.combine()
    assert extra.grad is None
    main_only = torch.autograd.grad(
        ((model.head(model.trunk_out(model.trunk_rnn(x)[0])) - target) ** 2).sum(), model.trunk_out.weight
    )[0]
    torch.testing.assert_close(model.trunk_out.weight.grad, main_only)


def test_identity_by_object_survives_a_wrapper() -> None:
    """Like DDP's ``module.`` prefix: names change, objects do not, so nothing changes."""
    model = TwoHeads()
    wrapper = nn.ModuleDict({"module": model})
    x, target, clean = batch(3)
    expected = by_hand(model, build_method("gr", granularity="layer", K=2.0), x, target, clean)
    shared = model.shared_parameters()
    groups = groups_from_modules(wrapper, shared)
    assert groups[0].startswith("module.trunk_rnn/")
    engine = GradientEngine(
        wrapper.parameters(), shared, build_method("gr", granularity="layer", K=2.0), groups=groups
    )
    engine.backward(*model.losses(x, target, clean))
    engine.combine()
    for n, p in model.named_parameters():
        if expected[n] is not None:
            torch.testing.assert_close(p.grad, expected[n], msg=n)


def test_groups_and_kinds_from_modules() -> None:
    model = TwoHeads()
    groups = groups_from_modules(model, model.shared_parameters())
    assert groups == ["trunk_rnn/l0"] * 4 + ["trunk_rnn/l1"] * 4 + ["trunk_out"] * 2
    kinds = kinds_from_modules(model, model.shared_parameters())
    assert kinds[:2] == ["LSTM.weight", "LSTM.weight"] and kinds[2] == "LSTM.bias"
    with pytest.raises(ValueError, match="does not belong"):
        groups_from_modules(model.head, model.shared_parameters())
    engine = GradientEngine(model.parameters(), model.shared_parameters(), build_method("sum"), kinds=kinds)
    engine.backward(*model.losses(*batch(2)))
    diagnostics = engine.combine()
    assert {"conflict_rate/LSTM.weight", "cos_mean/Linear.bias"} <= set(diagnostics)


def test_diagnostics_values() -> None:
    model = TwoHeads()
    x, target, clean = batch(4)
    shared = model.shared_parameters()
    main, aux = model.losses(x, target, clean)
    aux_grads = torch.autograd.grad(aux, shared, retain_graph=True)
    main_grads = torch.autograd.grad(main, shared)
    engine = make_engine(model, build_method("sum"))
    engine.backward(*model.losses(x, target, clean))
    d = engine.combine()
    dots = torch.stack([(s * a).sum() for s, a in zip(aux_grads, main_grads)])
    cos = torch.stack(
        [torch.cosine_similarity(s.flatten(), a.flatten(), dim=0) for s, a in zip(aux_grads, main_grads)]
    )
    assert float(d["conflict_rate"]) == pytest.approx(float((dots < 0).double().mean()))
    assert float(d["cos_mean"]) == pytest.approx(float(cos.double().mean()), abs=1e-6)
    assert float(d["cos_q50"]) == pytest.approx(float(cos.double().median()), abs=0.2)
    assert float(d["cos_q10"]) <= float(d["cos_q50"]) <= float(d["cos_q90"])
    assert float(d["aux_norm"]) == pytest.approx(
        float(torch.cat([g.flatten() for g in aux_grads]).norm()), rel=1e-5
    )
    assert float(d["main_norm"]) == pytest.approx(
        float(torch.cat([g.flatten() for g in main_grads]).norm()), rel=1e-5
    )
    combined = torch.cat([p.grad.flatten() for p in shared]).norm()
    assert float(d["combined_norm"]) == pytest.approx(float(combined), rel=1e-4)
    assert float(d["usable_groups"]) == len(shared)
    assert {"conflict_rate/matrix", "conflict_rate/vector"} <= set(d)


def test_steps_before_combination_see_the_task_gradients() -> None:
    model = TwoHeads()
    x, target, clean = batch(4)
    seen = []

    def as_if_the_other_rank_had_zero_gradients(grads: TaskGradients) -> dict[str, torch.Tensor]:
        seen.append((grads.flat_main.dim(), len(grads.main), float(grads.flat_aux.norm()), len(grads.others)))
        grads.flat_main.mul_(0.5)
        grads.flat_aux.mul_(0.5)
        return {"seen": torch.tensor(1.0)}

    engine = make_engine(
        model, build_method("gr", K=2.0), before_combination=[as_if_the_other_rank_had_zero_gradients]
    )
    engine.backward(*model.losses(x, target, clean))
    diagnostics = engine.combine()
    assert float(diagnostics["seen"]) == 1.0
    assert seen == [(1, len(model.shared_parameters()), seen[0][2], len(engine.others))] and seen[0][2] > 0
    expected = by_hand(model, build_method("gr", K=2.0), x, target, clean)
    for p in model.trunk_out.parameters():  # GR is scale-equivariant: half of both gives half
        name = "trunk_out." + ("weight" if p.dim() == 2 else "bias")
        torch.testing.assert_close(p.grad, 0.5 * expected[name])


@pytest.mark.parametrize("set_to_none", [True, False])
def test_ordinary_zero_grad_between_steps(set_to_none: bool) -> None:
    """No gradient state survives combine(): optimizer.zero_grad() (either kind) is all a step needs."""
    model = TwoHeads()
    x, target, clean = batch(4)
    engine = make_engine(model, build_method("gr", K=2.0))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
    grads = []
    for _ in range(3):
        engine.backward(*model.losses(x, target, clean))
        engine.combine()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
        optimizer.step()
        optimizer.zero_grad(set_to_none=set_to_none)
    expected = by_hand(model, build_method("gr", K=2.0), x, target, clean)
    for step in grads:
        for n, g in step.items():
            torch.testing.assert_close(g, expected[n], msg=n)
    with pytest.raises(RuntimeError, match="before any backward"):
        engine.combine()


def test_a_grad_left_on_a_shared_parameter_counts_as_main_gradient() -> None:
    """As plain PyTorch accumulates: no zero_grad between two backward/combine rounds adds up."""
    model = TwoHeads()
    x, target, clean = batch(4)
    engine = make_engine(model, build_method("sum"))
    engine.backward(*model.losses(x, target, clean))
    engine.combine()
    first = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    engine.backward(*model.losses(x, target, clean))  # no zero_grad: the old .grad is still there
    engine.combine()
    for n, p in model.named_parameters():
        if n in first:
            torch.testing.assert_close(p.grad, 2 * first[n], msg=n)


def test_a_caller_supplied_backward_function() -> None:
    model = TwoHeads()
    x, target, clean = batch(4)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**10)
    calls = []

    def scaled_backward(loss: torch.Tensor, retain_graph: bool) -> None:
        calls.append(retain_graph)
        scaler.scale(loss).backward(retain_graph=retain_graph)

    engine = make_engine(model, build_method("gr", K=2.0))
    engine.backward(*model.losses(x, target, clean), backward=scaled_backward)
    engine.combine()
    assert calls == [True, False]  # the auxiliary loss first, keeping the graph for the main one
    scaler.unscale_(torch.optim.SGD(model.parameters(), lr=0.0))
    expected = by_hand(model, build_method("gr", K=2.0), x, target, clean)
    for n, p in model.named_parameters():
        if expected[n] is not None:
            torch.testing.assert_close(p.grad, expected[n], rtol=1e-5, atol=1e-6, msg=n)


def test_aux_gradient_of_a_parameter_outside_the_shared_set_is_ordinary() -> None:
    """An auxiliary head (reached by the aux loss only) gets its ordinary gradient."""
    model = TwoHeads()
    aux_head = nn.Linear(4, 4)
    x, target, clean = batch(3)
    params = [*model.parameters(), *aux_head.parameters()]
    engine = GradientEngine(params, model.shared_parameters(), build_method("gr", K=2.0))

    def losses() -> tuple[torch.Tensor, torch.Tensor]:
        enhanced = model.trunk_out(model.trunk_rnn(x)[0])
        return ((model.head(enhanced) - target) ** 2).sum(), ((aux_head(enhanced) - clean) ** 2).sum()

    engine.backward(*losses())
    engine.combine()
    expected = torch.autograd.grad(losses()[1], aux_head.weight)[0]
    torch.testing.assert_close(aux_head.weight.grad, expected)


def test_state_dict_round_trip() -> None:
    model = TwoHeads()
    x, target, clean = batch(4)
    engine = make_engine(model, build_method("gradvac", beta=0.5))
    engine.backward(*model.losses(x, target, clean))
    engine.combine()
    state = engine.state_dict()
    other = make_engine(model, build_method("gradvac", beta=0.5))
    other.load_state_dict(state)
    torch.testing.assert_close(other.method.target, engine.method.target)
    with pytest.raises(ValueError, match="engine state is for method 'gradvac'"):
        make_engine(model, build_method("gr")).load_state_dict(state)


def test_bad_construction() -> None:
    model = TwoHeads()
    with pytest.raises(ValueError, match="must also be among the parameters"):
        GradientEngine(model.head.parameters(), model.shared_parameters(), build_method("gr"))
    with pytest.raises(ValueError, match="needs groups="):
        GradientEngine(model.parameters(), model.shared_parameters(), build_method("gr", granularity="layer"))
    with pytest.raises(ValueError, match="unknown accumulation"):
        GradientEngine(model.parameters(), model.shared_parameters(), build_method("gr"), accumulation="each")
    with pytest.raises(ValueError, match="needs accumulation='accumulated'"):
        GradientEngine(
            model.parameters(),
            model.shared_parameters(),
            build_method("gr"),
            accumulation="per_micro",
            before_combination=[ClipPerTask(1.0)],
        )


def test_no_shared_parameters_is_plain_backward() -> None:
    model = TwoHeads()
    x, target, clean = batch(2)
    engine = GradientEngine(model.parameters(), [], build_method("gr"))
    main, _ = model.losses(x, target, clean)
    engine.backward(main, None)
    diagnostics = engine.combine()
    expected = torch.autograd.grad(model.losses(x, target, clean)[0], model.head.weight)[0]
    torch.testing.assert_close(model.head.weight.grad, expected)
    assert float(diagnostics["usable_groups"]) == 0


@pytest.mark.gpu
@pytest.mark.parametrize("name", sorted(METHOD_SETTINGS))
def test_no_host_sync_inside_a_step_on_cuda(name: str) -> None:
    model = TwoHeads(rnn=False).cuda()
    x, target, clean = (t.cuda() for t in batch(4))
    engine = make_engine(model, build_method(name, **METHOD_SETTINGS[name]))
    main, aux = model.losses(x, target, clean)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        engine.backward(main, aux)
        diagnostics = engine.combine()
        model.zero_grad()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert all(v.is_cuda for v in diagnostics.values())
    expected = by_hand(model, build_method(name, **METHOD_SETTINGS[name]), x, target, clean)
    engine.backward(*model.losses(x, target, clean))
    engine.combine()
    for n, p in model.named_parameters():
        if expected[n] is not None:
            torch.testing.assert_close(p.grad, expected[n], rtol=1e-4, atol=1e-5, msg=n)


@pytest.mark.gpu
def test_functional_gradient_remedy_has_no_host_sync_on_cuda() -> None:
    from gradremedy.surgery import FlatLayout, GradientRemedy
    from gradremedy.surgery.grouping import group_ids_for

    shapes = [torch.Size([300, 7]), torch.Size([7]), torch.Size([2000])]
    layout = FlatLayout(shapes, group_ids_for(shapes, "tensor", None), "cuda")
    buffer = torch.randn(2, layout.padded, device="cuda")
    out = torch.empty(layout.padded, device="cuda")
    method = GradientRemedy()
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        A, B, _ = method.coefficients(layout.reduce(buffer))
        layout.combine(buffer, A, B, out)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert torch.isfinite(out).all()


def _count_backward_calls(engine: GradientEngine, model: TwoHeads, micro_batches: int, **options) -> int:
    calls = []

    def counting_backward(loss: torch.Tensor, retain_graph: bool) -> None:
        calls.append(retain_graph)
        loss.backward(retain_graph=retain_graph)

    x, target, clean = batch(4)
    for _ in range(micro_batches):
        engine.backward(*model.losses(x, target, clean), backward=counting_backward, **options)
    return len(calls)


@pytest.mark.parametrize("granularity", ["tensor", "global"])
@pytest.mark.parametrize("micro_batches", [1, 2])
def test_the_sum_in_one_pass_gives_the_two_pass_gradients_without_diagnostics(
    granularity: str, micro_batches: int
) -> None:
    grads = {}
    for task_gradients in (True, False):
        torch.manual_seed(0)
        model = TwoHeads()
        engine = make_engine(model, build_method("sum", granularity=granularity))
        passes = _count_backward_calls(engine, model, micro_batches, task_gradients=task_gradients)
        assert passes == (2 if task_gradients else 1) * micro_batches
        diagnostics = engine.combine()
        assert ("conflict_rate" in diagnostics) == task_gradients
        grads[task_gradients] = {n: p.grad for n, p in model.named_parameters()}
    for name, expected in grads[True].items():
        if expected is None:
            assert grads[False][name] is None, name
        else:
            torch.testing.assert_close(grads[False][name], expected, msg=name)


@pytest.mark.parametrize(
    "method, steps",
    [("gr", []), ("pcgrad", []), ("sum", [ClipPerTask(1.0)]), ("sum", [ScaleTasks(main=1.0, aux=2.0)])],
)
def test_task_gradients_false_changes_nothing_where_the_result_needs_them(method, steps) -> None:
    model = TwoHeads()
    settings = METHOD_SETTINGS.get(method, {})
    engine = make_engine(model, build_method(method, **settings), before_combination=steps)
    assert not engine.one_pass_possible
    assert _count_backward_calls(engine, model, 1, task_gradients=False) == 2
    assert "conflict_rate" in engine.combine()


def test_task_gradients_must_not_change_within_a_step() -> None:
    model = TwoHeads()
    engine = make_engine(model, build_method("sum"), before_combination=[AllReduceTasks()])
    assert engine.one_pass_possible
    _count_backward_calls(engine, model, 1, task_gradients=False)
    with pytest.raises(ValueError, match="task_gradients"):
        _count_backward_calls(engine, model, 1, task_gradients=True)
