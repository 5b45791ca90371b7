"""The SpeechBrain mixin with the real ``speechbrain`` package on a small Brain (CPU).

* ``sum`` equals SpeechBrain's stock ``fit_batch`` on ``main + aux`` (weights to 1e-6), with gradient
  accumulation, per-optimizer clipping and a loss scaler on;
* ``gr`` equals the functional form, per step and over accumulated micro-batches (each task summed
  over the micro-batches, combined once).
"""

from __future__ import annotations

import logging
import warnings
from typing import Any

import pytest
import torch

pytest.importorskip("speechbrain")

import speechbrain as sb  # noqa: E402
from torch.utils.data import DataLoader, TensorDataset  # noqa: E402

from gradremedy.integrations.speechbrain import TwoTaskBrainMixin, split_losses  # noqa: E402
from gradremedy.surgery import gradient_remedy  # noqa: E402

from .examples import assert_example_trains_sum_then_gr  # noqa: E402

LR = 0.1


@pytest.fixture(autouse=True)
def _quiet() -> None:
    warnings.simplefilter("ignore")
    logging.getLogger("speechbrain").setLevel(logging.ERROR)


def _modules() -> dict[str, torch.nn.Module]:
    torch.manual_seed(3)
    return {
        "front": torch.nn.Sequential(torch.nn.Linear(5, 10), torch.nn.Tanh(), torch.nn.Linear(10, 10)),
        "main_head": torch.nn.Linear(10, 1),
        "aux_head": torch.nn.Linear(10, 5),
    }


def _losses(modules: Any, batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    x, y = batch
    h = modules.front(x)  # (B, 10)
    main = (modules.main_head(h).squeeze(-1) - y).pow(2).mean()
    aux = 12.0 * (modules.aux_head(h) + x).pow(2).mean()  # large and partly opposed to main
    return main, aux


class StockBrain(sb.Brain):
    def compute_forward(self, batch: Any, stage: sb.Stage) -> Any:
        return batch

    def compute_objectives(self, predictions: Any, batch: Any, stage: sb.Stage) -> torch.Tensor:
        main, aux = _losses(self.modules, batch)
        return main + aux


class TwoTaskBrain(TwoTaskBrainMixin, sb.Brain):
    def compute_forward(self, batch: Any, stage: sb.Stage) -> Any:
        return batch

    def compute_objectives(self, predictions: Any, batch: Any, stage: sb.Stage) -> dict[str, torch.Tensor]:
        main, aux = _losses(self.modules, batch)
        return {"main": main, "aux": aux}

    def shared_parameters(self) -> Any:
        return self.modules.front.parameters()


def _data(batches: int, batch_size: int = 8) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(21)
    x = torch.randn(batches * batch_size, 5, generator=g)
    y = torch.randn(batches * batch_size, generator=g)
    return list(DataLoader(TensorDataset(x, y), batch_size=batch_size))


def _fit(
    brain_class: type, batches: list, hparams: dict | None = None, scaler: bool = False, **run_opts: Any
) -> sb.Brain:
    brain = brain_class(
        modules=_modules(),
        opt_class=lambda params: torch.optim.SGD(params, lr=LR),
        hparams=hparams,
        run_opts={"device": "cpu", **run_opts},
    )
    if scaler:  # a real loss scaler (SpeechBrain enables one for fp16 on CUDA); exact powers of two here
        brain.scaler = torch.GradScaler("cpu", init_scale=2.0**10, growth_interval=1000)
    brain.fit(range(1), batches, progressbar=False)
    return brain


def _weights(brain: sb.Brain) -> torch.Tensor:
    return torch.cat([p.detach().reshape(-1) for p in brain.modules.parameters()])


@pytest.mark.parametrize("scaler", [False, True])
def test_sum_equals_the_stock_fit_batch(scaler: bool) -> None:
    batches = _data(6)
    opts = {"grad_accumulation_factor": 2, "max_grad_norm": 0.5}  # accumulation and clipping both act
    stock = _fit(StockBrain, batches, scaler=scaler, **opts)
    ours = _fit(TwoTaskBrain, batches, hparams={"gradient_method": "sum"}, scaler=scaler, **opts)
    torch.testing.assert_close(_weights(ours), _weights(stock), rtol=1e-6, atol=1e-6)
    assert not torch.allclose(_weights(ours), torch.cat([p.reshape(-1) for m in _modules().values()
                                                          for p in m.parameters()]))
    assert ours.optimizer_step == stock.optimizer_step == 3


@pytest.mark.parametrize("factor", [1, 2])
def test_gr_equals_the_functional_form(factor: int) -> None:
    batches = _data(factor)
    brain = _fit(
        TwoTaskBrain,
        batches,
        hparams={"gradient_method": "gr", "gradient_method_settings": {"K": 2.0}},
        grad_accumulation_factor=factor,
        max_grad_norm=1e9,
    )
    reference = torch.nn.ModuleDict(_modules())
    shared = list(reference.front.parameters())
    main_sum = [torch.zeros_like(p) for p in shared]
    aux_sum = [torch.zeros_like(p) for p in shared]
    for batch in batches:  # each task summed over the micro-batches (losses / factor)
        main, aux = _losses(reference, batch)
        for acc, g in zip(main_sum, torch.autograd.grad(main / factor, shared, retain_graph=True)):
            acc += g
        for acc, g in zip(aux_sum, torch.autograd.grad(aux / factor, shared)):
            acc += g
    combined = gradient_remedy(main_sum, aux_sum, K=2.0)
    for p_brain, p_ref, g in zip(brain.modules.front.parameters(), shared, combined):
        torch.testing.assert_close(p_brain.detach(), p_ref.detach() - LR * g, rtol=1e-5, atol=1e-6)
    assert float(brain.gradient_diagnostics["rescale_rate"]) > 0  # the magnitude rule acted
    assert brain.optimizer_step == 1


def test_per_task_clip_from_hparams_acts() -> None:
    brain = _fit(
        TwoTaskBrain, _data(1), hparams={"gradient_method": "sum", "clip_per_task": 0.01}, max_grad_norm=1e9
    )
    assert float(brain.gradient_diagnostics["clipped"]) == 1.0


def test_objectives_that_are_not_two_losses_are_a_clear_error() -> None:
    with pytest.raises(ValueError, match="without aux"):
        split_losses({"main": torch.tensor(1.0)})
    with pytest.raises(ValueError, match=r"\(main_loss, aux_loss\)"):
        split_losses(torch.tensor(1.0))


def test_the_example_runs() -> None:
    assert_example_trains_sum_then_gr("speechbrain_gradient_remedy.py", "--epochs", "1")
