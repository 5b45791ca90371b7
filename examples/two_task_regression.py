"""Hello world for gradremedy.surgery: a small regression network with a main and an auxiliary task,
trained once with the plain sum of the two losses and once with Gradient Remedy (gr).

The network has a shared trunk and two heads. The main task predicts y = sin(w . x); the auxiliary
task reconstructs the input (an autoencoder loss with a large weight, so that its gradient dominates the
trunk's, as the speech-enhancement loss does in this project). Only torch and gradremedy's core are
needed (``pip install gradremedy``, no extras); it runs in a few seconds on a CPU:

    python examples/two_task_regression.py [--steps 300] [--seed 0]

It prints the held-out main and auxiliary losses of both methods.
"""

from __future__ import annotations

import argparse
import time

import torch
from torch import nn

from gradremedy.surgery import GradientEngine, build_method


class TwoTaskNet(nn.Module):
    """Shared trunk -> main head (one output) and auxiliary head (reconstructs the input)."""

    def __init__(self, inputs: int = 16, hidden: int = 64) -> None:
        super().__init__()
        self.trunk = nn.Sequential(nn.Linear(inputs, hidden), nn.Tanh(), nn.Linear(hidden, hidden), nn.Tanh())
        self.main_head = nn.Linear(hidden, 1)
        self.aux_head = nn.Linear(hidden, inputs)

    def losses(
        self, x: torch.Tensor, y: torch.Tensor, aux_weight: float
    ) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.trunk(x)
        main = nn.functional.mse_loss(self.main_head(features).squeeze(-1), y)
        aux = aux_weight * nn.functional.mse_loss(self.aux_head(features), x)
        return main, aux


def make_data(seed: int, count: int, inputs: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    w = torch.randn(inputs, generator=torch.Generator().manual_seed(1234)) / inputs**0.5
    x = torch.randn(count, inputs, generator=generator)
    return x, torch.sin(3 * x @ w)


def train(method_name: str, steps: int, seed: int, aux_weight: float = 10.0) -> tuple[float, float]:
    """Train with one method; returns the held-out (main, aux) losses."""
    torch.manual_seed(seed)
    model = TwoTaskNet()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    engine = GradientEngine(model.parameters(), model.trunk.parameters(), build_method(method_name))
    x_train, y_train = make_data(seed, 4096)
    generator = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        batch = torch.randint(0, len(x_train), (64,), generator=generator)
        main, aux = model.losses(x_train[batch], y_train[batch], aux_weight)
        engine.backward(main, aux)  # both task gradients of the trunk, kept apart
        engine.combine()  # the trunk's .grad = the method's combination; the heads' are ordinary
        optimizer.step()
        optimizer.zero_grad()  # the ordinary one: the engine keeps no gradient state
    x_test, y_test = make_data(seed + 1, 2048)
    with torch.no_grad():
        main, aux = model.losses(x_test, y_test, aux_weight)
    return float(main), float(aux)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    for method in ("sum", "gr"):
        start = time.perf_counter()
        main_loss, aux_loss = train(method, args.steps, args.seed)
        seconds = time.perf_counter() - start
        losses = f"main loss {main_loss:.4f}  aux loss {aux_loss:.4f}"
        print(f"{method:4s} {losses}  ({args.steps} steps, {seconds:.1f} s)")


if __name__ == "__main__":
    main()
