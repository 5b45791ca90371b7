"""Gradient Remedy in SpeechBrain: a ``Brain`` with ``TwoTaskBrainMixin`` whose ``compute_objectives``
returns the main and the auxiliary loss; a shared front end, a main head and an auxiliary head, trained on
synthetic data with ``sum`` and with ``gr`` (method and settings from the hparams, as a YAML would give
them), with SpeechBrain's gradient accumulation and clipping on. Prints both losses for each.

    .venv-integrations/bin/python examples/integrations/speechbrain_gradient_remedy.py
"""

from __future__ import annotations

import argparse
import logging
import warnings
from typing import Any

import speechbrain as sb
import torch
from torch.utils.data import DataLoader, TensorDataset

from gradremedy.integrations.speechbrain import TwoTaskBrainMixin


class TwoTaskBrain(TwoTaskBrainMixin, sb.Brain):
    def compute_forward(self, batch: Any, stage: sb.Stage) -> torch.Tensor:
        x, _, _ = batch
        return self.modules.front(x)  # (B, 16)

    def compute_objectives(self, features: torch.Tensor, batch: Any, stage: sb.Stage) -> dict:
        _, y_main, y_aux = batch
        main = (self.modules.main_head(features) - y_main).pow(2).mean()
        aux = 5.0 * (self.modules.aux_head(features) - y_aux).pow(2).mean()
        return {"main": main, "aux": aux}

    def shared_parameters(self) -> Any:
        return self.modules.front.parameters()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--epochs", type=int, default=5)
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    logging.getLogger("speechbrain").setLevel(logging.ERROR)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(512, 8, generator=g)
    data = TensorDataset(x, x[:, :2].sum(dim=1, keepdim=True), -x[:, :4])  # main, aux partly opposed

    for method, settings in (("sum", {}), ("gr", {"K": 5.0})):
        torch.manual_seed(0)
        modules = {
            "front": torch.nn.Sequential(torch.nn.Linear(8, 32), torch.nn.Tanh(), torch.nn.Linear(32, 16)),
            "main_head": torch.nn.Linear(16, 1),
            "aux_head": torch.nn.Linear(16, 4),
        }
        brain = TwoTaskBrain(
            modules=modules,
            opt_class=lambda params: torch.optim.Adam(params, lr=3e-3),
            hparams={"gradient_method": method, "gradient_method_settings": settings},
            run_opts={"device": "cpu", "grad_accumulation_factor": 2, "max_grad_norm": 5.0},
        )
        brain.fit(range(args.epochs), DataLoader(data, batch_size=32), progressbar=False)
        with torch.no_grad():  # both losses on the whole data set
            features = brain.compute_forward(data.tensors, sb.Stage.TEST)
            losses = brain.compute_objectives(features, data.tensors, sb.Stage.TEST)
        print(
            f"{method}: after {args.epochs} epochs  main_loss={losses['main'].item():.4f}  "
            f"aux_loss={losses['aux'].item():.4f}"
        )


if __name__ == "__main__":
    main()
