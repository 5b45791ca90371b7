"""A tiny two-task Lightning model and a runner, shared by the Lightning tests.

Run as a script it trains with ``--devices N`` CPU processes (the DDP strategy, gloo, when N > 1) and
rank 0 writes the final weights to ``--out``; the tests start it in a subprocess because Lightning's
DDP launcher re-runs the command line once per extra rank.
"""

from __future__ import annotations

import argparse
import warnings
from typing import Any

import lightning.pytorch as pl
import torch
from torch import nn
from torch.utils.data import DataLoader, Subset, TensorDataset

from gradremedy.integrations.lightning import TwoTaskModule

GLOBAL_BATCH = 16
SAMPLES = 64


def dataset() -> TensorDataset:
    g = torch.Generator().manual_seed(11)
    x = torch.randn(SAMPLES, 6, generator=g)
    y = torch.randn(SAMPLES, generator=g)
    return TensorDataset(x, y)


class Network(nn.Module):
    """A shared front end (``front``) feeding a main (regression) head and an auxiliary head."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(5)
        self.front = nn.Sequential(nn.Linear(6, 12), nn.Tanh(), nn.Linear(12, 12))
        self.main_head = nn.Linear(12, 1)
        self.aux_head = nn.Linear(12, 6)

    def losses(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.front(x)  # (B, 12)
        main = (self.main_head(h).squeeze(-1) - y).pow(2).mean()
        aux = 8.0 * (self.aux_head(h) + x).pow(2).mean()  # large and partly opposed to main
        return main, aux


def _loader(module: pl.LightningModule) -> DataLoader:
    """Rank r of w takes samples r, r+w, ...: the ranks together see the one-process batches."""
    world, rank = module.trainer.world_size, module.trainer.global_rank
    return DataLoader(Subset(dataset(), list(range(rank, SAMPLES, world))), batch_size=GLOBAL_BATCH // world)


class TwoTask(TwoTaskModule):
    def __init__(self, method: str = "gr", lr: float = 0.05, **kwargs: Any) -> None:
        super().__init__(method, **kwargs)
        self.net = Network()
        self.lr = lr

    def task_losses(self, batch: Any, batch_idx: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.net.losses(*batch)

    def shared_parameters(self) -> list[nn.Parameter]:
        return list(self.net.front.parameters())

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=self.lr, momentum=0.9)

    def train_dataloader(self) -> DataLoader:
        return _loader(self)


class SummedAutomatic(pl.LightningModule):
    """The same network trained with Lightning's automatic optimisation on main + aux."""

    def __init__(self, lr: float = 0.05) -> None:
        super().__init__()
        self.net = Network()
        self.lr = lr

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        main, aux = self.net.losses(*batch)
        return main + aux

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=self.lr, momentum=0.9)

    def train_dataloader(self) -> DataLoader:
        return _loader(self)


def trainer(devices: int = 1, max_steps: int = 6, **kwargs: Any) -> pl.Trainer:
    return pl.Trainer(
        accelerator="cpu",
        devices=devices,
        strategy="ddp" if devices > 1 else "auto",
        max_steps=max_steps,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        use_distributed_sampler=False,
        **kwargs,
    )


def flat_weights(module: nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().reshape(-1) for p in module.parameters()])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--devices", type=int, default=1)
    parser.add_argument("--method", default="gr")
    parser.add_argument("--accumulate", type=int, default=1)
    parser.add_argument("--clip", type=float, default=None)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    model = TwoTask(args.method, accumulate_grad_batches=args.accumulate, clip_per_task=args.clip)
    run = trainer(args.devices, max_steps=args.steps)
    run.fit(model)
    if run.global_rank == 0:
        torch.save({"weights": flat_weights(model), "diagnostics": model.last_diagnostics}, args.out)


if __name__ == "__main__":
    main()
