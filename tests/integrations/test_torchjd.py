"""gradremedy's methods as torchjd aggregators, checked with the real torchjd against the functional forms.

Rows are (main, aux). Per tensor, each tensor's block of the aggregated vector must equal the method
applied to that tensor alone; globally, the method applied to the whole vector. Gradient Remedy is
also checked against ``gradient_remedy()`` through torchjd's own ``backward`` + ``jac_to_grad``.
"""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("torchjd")

from torchjd.aggregation import GramianWeightedAggregator  # noqa: E402
from torchjd.autojac import backward, jac_to_grad, mtl_backward  # noqa: E402

from gradremedy.integrations.torchjd import (  # noqa: E402
    GradientRemedy,
    MethodAggregator,
    MethodWeighting,
    aggregator,
)
from gradremedy.surgery import apply_method, build_method, gradient_remedy, method_names  # noqa: E402

from .examples import assert_example_trains_sum_then_gr  # noqa: E402

SHAPES = [(6, 4), (5,), (2, 3, 3), (1,)]
NUMELS = [24, 5, 18, 1]


def _random_jacobian(seed: int, conflict: bool) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    J = torch.randn(2, sum(NUMELS), generator=g)
    if conflict:  # an auxiliary row mostly opposed to the main one, 10x larger: every rule has work to do
        J[1] = -10 * J[0] + 0.5 * J[1]
    return J


def _blocks(row: torch.Tensor) -> list[torch.Tensor]:
    return [c.reshape(s) for c, s in zip(row.split(NUMELS), SHAPES)]


@pytest.mark.parametrize("name", method_names())
@pytest.mark.parametrize("conflict", [False, True])
def test_every_method_per_tensor_equals_the_method_on_each_tensor_alone(name: str, conflict: bool) -> None:
    J = _random_jacobian(seed=len(name), conflict=conflict)
    shapes_only = [torch.empty(s) for s in SHAPES]
    out = aggregator(name, tensors=shapes_only)(J)
    assert out.shape == (sum(NUMELS),)
    for block, a, s in zip(out.split(NUMELS), _blocks(J[0]), _blocks(J[1])):
        (expected,) = apply_method(build_method(name), [a], [s])  # a fresh method: no shared state
        torch.testing.assert_close(block.reshape(a.shape), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", method_names())
def test_every_method_global_equals_the_method_on_the_whole_vector(name: str) -> None:
    J = _random_jacobian(seed=7, conflict=True)
    out = aggregator(name)(J)  # no tensors=: one group
    (expected,) = apply_method(build_method(name, granularity="global"), [J[0]], [J[1]])
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-6)
    weighting = MethodWeighting(build_method(name, granularity="global"))
    torch.testing.assert_close(GramianWeightedAggregator(weighting)(J), expected, rtol=1e-4, atol=1e-5)


def _model_and_losses(seed: int) -> tuple[torch.nn.Module, list, torch.Tensor, torch.Tensor]:
    torch.manual_seed(seed)
    trunk = torch.nn.Sequential(torch.nn.Linear(5, 8), torch.nn.Tanh(), torch.nn.Linear(8, 8))
    main_head, aux_head = torch.nn.Linear(8, 1), torch.nn.Linear(8, 3)
    x = torch.randn(16, 5)
    h = trunk(x)
    main_loss = (main_head(h).squeeze(-1) - x[:, 0]).pow(2).mean()
    aux_loss = 20 * (aux_head(h) + x[:, 1:4]).pow(2).mean()  # large and partly opposed: GR acts
    model = torch.nn.ModuleDict({"trunk": trunk, "main": main_head, "aux": aux_head})
    return model, list(trunk.parameters()), main_loss, aux_loss


@pytest.mark.parametrize("granularity", ["tensor", "global"])
def test_jac_to_grad_with_gradient_remedy_equals_the_functional_form(granularity: str) -> None:
    model, shared, main_loss, aux_loss = _model_and_losses(seed=3)
    a = torch.autograd.grad(main_loss, shared, retain_graph=True)
    s = torch.autograd.grad(aux_loss, shared, retain_graph=True)
    expected = gradient_remedy(list(a), list(s), K=2.0, granularity=granularity)

    backward([main_loss, aux_loss], inputs=shared)
    tensors = shared if granularity == "tensor" else None
    jac_to_grad(shared, GradientRemedy(tensors=tensors, K=2.0, granularity=granularity))
    for p, e in zip(shared, expected):
        torch.testing.assert_close(p.grad, e, rtol=1e-5, atol=1e-6)
    # The rule acted: the result is not the plain sum.
    assert any(not torch.allclose(p.grad, ai + si) for p, ai, si in zip(shared, a, s))


def test_row_order_is_main_then_aux() -> None:
    _, shared, main_loss, aux_loss = _model_and_losses(seed=4)
    a = torch.autograd.grad(main_loss, shared, retain_graph=True)
    s = torch.autograd.grad(aux_loss, shared, retain_graph=True)
    backward([main_loss, aux_loss], inputs=shared)
    jac_to_grad(shared, GradientRemedy(tensors=shared))
    right = gradient_remedy(list(a), list(s))
    swapped = gradient_remedy(list(s), list(a))
    assert all(torch.allclose(p.grad, r, rtol=1e-5, atol=1e-6) for p, r in zip(shared, right))
    assert not all(torch.allclose(p.grad, w, rtol=1e-5, atol=1e-6) for p, w in zip(shared, swapped))


def test_mtl_backward_then_jac_to_grad_on_the_shared_trunk() -> None:
    torch.manual_seed(5)
    trunk, main_head, aux_head = torch.nn.Linear(4, 6), torch.nn.Linear(6, 1), torch.nn.Linear(6, 2)
    x = torch.randn(10, 4)
    features = trunk(x)
    main_loss = main_head(features).pow(2).mean()
    aux_loss = 30 * (aux_head(features) - 1).pow(2).mean()
    shared = list(trunk.parameters())
    a = torch.autograd.grad(main_loss, shared, retain_graph=True)
    s = torch.autograd.grad(aux_loss, shared, retain_graph=True)
    mtl_backward([main_loss, aux_loss], features=features)
    jac_to_grad(shared, GradientRemedy(tensors=shared))
    for p, e in zip(shared, gradient_remedy(list(a), list(s))):
        torch.testing.assert_close(p.grad, e, rtol=1e-5, atol=1e-6)
    # The task heads got their ordinary gradients from mtl_backward.
    assert main_head.weight.grad is not None and aux_head.weight.grad is not None


def test_bad_input_is_a_clear_error() -> None:
    agg = GradientRemedy(tensors=[torch.empty(3), torch.empty(2)])
    with pytest.raises(ValueError, match="2 rows"):
        agg(torch.randn(3, 5))
    with pytest.raises(ValueError, match="6 columns but tensors= has 5"):
        agg(torch.randn(2, 6))
    with pytest.raises(ValueError, match="needs tensors="):
        MethodAggregator(build_method("gr"))
    with pytest.raises(ValueError, match="no setting"):
        aggregator("gr", beta=0.1)
    with pytest.raises(ValueError, match="granularity='global'"):
        MethodWeighting(build_method("gr"))


def test_the_example_runs() -> None:
    assert_example_trains_sum_then_gr("torchjd_gradient_remedy.py", "--steps", "20")
