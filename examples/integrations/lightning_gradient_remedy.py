"""Gradient Remedy in PyTorch Lightning: a ``TwoTaskModule`` (manual optimisation through
``manual_backward``) with a shared front end, a main head and an auxiliary head, trained with ``sum`` and
with ``gr`` on synthetic data. Prints both losses for each. ``--devices 2`` runs the DDP strategy on two
CPU processes (gloo).

    .venv-integrations/bin/python examples/integrations/lightning_gradient_remedy.py [--devices 2]
"""

from __future__ import annotations

import argparse
import warnings
from typing import Any

import lightning.pytorch as pl
import torch
from torch.utils.data import DataLoader, TensorDataset

from gradremedy.integrations.lightning import TwoTaskModule


class Regression(TwoTaskModule):
    def __init__(self, method: str) -> None:
        super().__init__(method, method_settings={}, accumulate_grad_batches=2, clip_per_task=5.0)
        torch.manual_seed(0)
        self.front = torch.nn.Sequential(torch.nn.Linear(8, 32), torch.nn.Tanh(), torch.nn.Linear(32, 16))
        self.main_head = torch.nn.Linear(16, 1)
        self.aux_head = torch.nn.Linear(16, 4)

    def task_losses(self, batch: Any, batch_idx: int) -> tuple[torch.Tensor, torch.Tensor]:
        x, y_main, y_aux = batch
        features = self.front(x)  # (B, 16)
        main_loss = (self.main_head(features) - y_main).pow(2).mean()
        aux_loss = 5.0 * (self.aux_head(features) - y_aux).pow(2).mean()
        return main_loss, aux_loss

    def shared_parameters(self) -> list[torch.nn.Parameter]:
        return list(self.front.parameters())

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=3e-3)


def data() -> DataLoader:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(512, 8, generator=g)
    y_main = x[:, :2].sum(dim=1, keepdim=True)  # (512, 1)
    y_aux = -x[:, :4]  # (512, 4): pulls the front end partly the other way
    return DataLoader(TensorDataset(x, y_main, y_aux), batch_size=32)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--devices", type=int, default=1)
    parser.add_argument("--epochs", type=int, default=5)
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    results = []
    for method in ("sum", "gr"):
        model = Regression(method)
        trainer = pl.Trainer(
            accelerator="cpu",
            devices=args.devices,
            strategy="ddp" if args.devices > 1 else "auto",
            max_epochs=args.epochs,
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
        )
        trainer.fit(model, data())
        metrics = trainer.callback_metrics
        main_loss, aux_loss = float(metrics["train/main_loss"]), float(metrics["train/aux_loss"])
        results.append(f"{method}: after {args.epochs} epochs, last batch  main_loss={main_loss:.4f}  "
                       f"aux_loss={aux_loss:.4f}")
    if trainer.global_rank == 0:
        print("\n".join(results))


if __name__ == "__main__":
    main()
