"""Gradient Remedy as a torchjd aggregator: a shared trunk with a main and an auxiliary head, trained with
torchjd's ``mtl_backward`` + ``jac_to_grad``, once with torchjd's own ``Sum`` and once with gradremedy's
``GradientRemedy`` (rows ordered main, aux). Prints both losses for each.

    .venv-integrations/bin/python examples/integrations/torchjd_gradient_remedy.py
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import torch
from torchjd.aggregation import Aggregator, Sum
from torchjd.autojac import jac_to_grad, mtl_backward

from gradremedy.integrations.torchjd import GradientRemedy


def train(make_aggregator: Callable[[list], Aggregator], steps: int, seed: int = 0) -> tuple[float, float]:
    torch.manual_seed(seed)
    x = torch.randn(256, 8)
    y_main = x[:, :2].sum(dim=1, keepdim=True)  # (256, 1)
    y_aux = -x[:, :4]  # (256, 4): an auxiliary target that partly pulls the trunk the other way
    trunk = torch.nn.Sequential(torch.nn.Linear(8, 32), torch.nn.Tanh(), torch.nn.Linear(32, 16))
    main_head, aux_head = torch.nn.Linear(16, 1), torch.nn.Linear(16, 4)
    shared = list(trunk.parameters())
    aggregator = make_aggregator(shared)
    optimizer = torch.optim.Adam([*shared, *main_head.parameters(), *aux_head.parameters()], lr=3e-3)
    for _ in range(steps):
        features = trunk(x)
        main_loss = (main_head(features) - y_main).pow(2).mean()
        aux_loss = 5.0 * (aux_head(features) - y_aux).pow(2).mean()
        mtl_backward([main_loss, aux_loss], features=features)  # heads: .grad; trunk: .jac (2 rows)
        jac_to_grad(shared, aggregator)  # trunk: .grad from the aggregator
        optimizer.step()
        optimizer.zero_grad()
    return main_loss.item(), aux_loss.item()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=300)
    args = parser.parse_args()
    aggregators = {
        "sum": lambda shared: Sum(),  # torchjd's own
        "gr": lambda shared: GradientRemedy(tensors=shared, K=5.0),  # per tensor, as in the paper
    }
    for name, make_aggregator in aggregators.items():
        main_loss, aux_loss = train(make_aggregator, args.steps)
        print(f"{name}: after {args.steps} steps  main_loss={main_loss:.4f}  aux_loss={aux_loss:.4f}")


if __name__ == "__main__":
    main()
