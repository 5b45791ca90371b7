"""The Lightning adapter with the real ``lightning`` package on the CPU.

* ``sum`` through the adapter (manual optimisation, two backward passes) equals Lightning's own
  automatic optimisation of ``main + aux`` (also under the ``bf16-mixed`` precision plugin, to bf16
  rounding);
* ``gr`` through the adapter equals the functional form on the two task gradients;
* 1 process equals 2 gloo processes under the DDP strategy (same weights to 1e-4), with
  accumulation and per-task clipping on.
"""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch

pytest.importorskip("lightning")

from gradremedy.surgery import gradient_remedy  # noqa: E402

from .examples import assert_example_trains_sum_then_gr  # noqa: E402
from .lightning_run import Network, SummedAutomatic, TwoTask, dataset, flat_weights, trainer  # noqa: E402

HERE = Path(__file__).resolve().parent


@pytest.fixture(autouse=True)
def _quiet() -> None:
    warnings.simplefilter("ignore")


def test_sum_equals_automatic_optimisation() -> None:
    automatic = SummedAutomatic()
    trainer(max_steps=6).fit(automatic)
    manual = TwoTask("sum")
    trainer(max_steps=6).fit(manual)
    torch.testing.assert_close(flat_weights(manual), flat_weights(automatic), rtol=1e-6, atol=1e-6)
    assert not torch.allclose(flat_weights(manual), flat_weights(Network()))  # it did train


def test_sum_under_the_bf16_mixed_precision_plugin_matches_automatic_optimisation() -> None:
    """Both backward passes go through the precision plugin (autocast forward, bf16 rounding: 5e-3)."""
    automatic = SummedAutomatic()
    trainer(max_steps=4, precision="bf16-mixed").fit(automatic)
    manual = TwoTask("sum")
    trainer(max_steps=4, precision="bf16-mixed").fit(manual)
    torch.testing.assert_close(flat_weights(manual), flat_weights(automatic), rtol=0, atol=5e-3)
    assert (flat_weights(manual) - flat_weights(Network())).abs().max() > 0.1  # it did train


def test_gr_step_equals_the_functional_form() -> None:
    model = TwoTask("gr", method_settings={"K": 2.0}, lr=0.1)
    reference = Network()
    trainer(max_steps=1).fit(model)

    x, y = dataset().tensors
    main, aux = reference.losses(x[:16], y[:16])
    shared = list(reference.front.parameters())
    a = torch.autograd.grad(main, shared, retain_graph=True)
    s = torch.autograd.grad(aux, shared, retain_graph=True)
    combined = gradient_remedy(list(a), list(s), K=2.0)
    for p_model, p_ref, g in zip(model.net.front.parameters(), shared, combined):
        # SGD with momentum, first step: p <- p - lr * g.
        torch.testing.assert_close(p_model.detach(), p_ref.detach() - 0.1 * g, rtol=1e-5, atol=1e-6)
    heads = list(reference.main_head.parameters())
    head_grads = torch.autograd.grad(main, heads)
    for p_model, p_ref, g in zip(model.net.main_head.parameters(), heads, head_grads):
        torch.testing.assert_close(p_model.detach(), p_ref.detach() - 0.1 * g, rtol=1e-5, atol=1e-6)
    assert float(model.last_diagnostics["rescale_rate"]) > 0  # the magnitude rule acted


def _run(tmp_path: Path, devices: int) -> dict:
    out = tmp_path / f"weights-{devices}.pt"
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    cmd = [sys.executable, str(HERE / "lightning_run.py"), "--devices", str(devices), "--method", "gr",
           "--accumulate", "2", "--clip", "1.0", "--steps", "3", "--out", str(out)]
    done = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return torch.load(out)


def test_two_gloo_processes_equal_one(tmp_path: Path) -> None:
    one = _run(tmp_path, 1)
    two = _run(tmp_path, 2)
    torch.testing.assert_close(two["weights"], one["weights"], rtol=1e-4, atol=1e-4)
    assert float(one["diagnostics"]["clipped"]) == 1.0  # the per-task clip acted
    initial = flat_weights(Network())
    assert not torch.allclose(one["weights"], initial)


def test_the_example_runs() -> None:
    assert_example_trains_sum_then_gr("lightning_gradient_remedy.py", "--epochs", "1")
