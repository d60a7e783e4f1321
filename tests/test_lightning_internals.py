"""Pins every private Lightning name mlplab.lightning_internals uses: a Lightning release that changes
one fails here, before step counts, logs or resumes can go quietly wrong."""

from __future__ import annotations

import csv

import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import CSVLogger
from torch.utils.data import DataLoader, TensorDataset

from mlplab.lightning_internals import continue_csv_columns, count_extra_steps, logged_step, step_outside_lightning

STEPS_PER_BATCH = 3


class HookCount(pl.Callback):
    def __init__(self) -> None:
        self.optimizers: list = []

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        self.optimizers.append(optimizer)


class ManySteps(pl.LightningModule):
    """Takes STEPS_PER_BATCH raw optimizer steps per batch, as the CUDA-graph step does."""

    def __init__(self) -> None:
        super().__init__()
        self.automatic_optimization = False
        self.layer = torch.nn.Linear(2, 1)

    def training_step(self, batch, batch_idx):
        optimizer = self.optimizers()
        for _ in range(STEPS_PER_BATCH):
            def raw_step() -> torch.Tensor:
                optimizer.optimizer.zero_grad()
                loss = self.layer(batch[0]).pow(2).mean()
                loss.backward()
                optimizer.optimizer.step()
                return loss.detach()

            step_outside_lightning(self.trainer, optimizer, raw_step)
        count_extra_steps(self.trainer, STEPS_PER_BATCH)
        self.log("loss", self.layer.weight.sum(), on_epoch=True, on_step=False)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def fit(tmp_path, batches: int = 4) -> tuple[pl.Trainer, HookCount]:
    hooks = HookCount()
    data = DataLoader(TensorDataset(torch.randn(batches, 2)), batch_size=1)
    trainer = pl.Trainer(accelerator="cpu", max_epochs=2, logger=CSVLogger(tmp_path, name="csv", version=""),
                         callbacks=[hooks], enable_progress_bar=False, enable_model_summary=False,
                         default_root_dir=tmp_path, log_every_n_steps=1)
    trainer.fit(ManySteps(), data)
    return trainer, hooks


def test_raw_optimizer_steps_are_counted_and_hooked_as_lightning_steps(tmp_path):
    trainer, hooks = fit(tmp_path)
    assert trainer.global_step == 2 * 4 * STEPS_PER_BATCH
    assert len(hooks.optimizers) == trainer.global_step
    assert all(isinstance(optimizer, torch.optim.SGD) for optimizer in hooks.optimizers)  # the raw optimizer


def test_the_logged_step_counts_optimizer_steps_and_is_saved_in_checkpoints(tmp_path):
    trainer, _ = fit(tmp_path)
    assert trainer.fit_loop.epoch_loop._batches_that_stepped == trainer.global_step
    with open(tmp_path / "csv" / "metrics.csv") as handle:
        steps = [int(row["step"]) for row in csv.DictReader(handle) if row.get("loss")]
    assert steps == [4 * STEPS_PER_BATCH - 1, 2 * 4 * STEPS_PER_BATCH - 1]  # each epoch's last step
    checkpoint = torch.load(next((tmp_path / "csv" / "checkpoints").glob("*.ckpt")), weights_only=True)
    assert logged_step(checkpoint) == trainer.global_step
    assert logged_step({"global_step": 7}) == 7  # a checkpoint without loops


def test_a_fresh_csv_writer_appends_to_the_columns_it_is_given(tmp_path):
    logger = CSVLogger(tmp_path, name="csv", version="")
    columns = continue_csv_columns(logger.experiment, ["step", "b", "a"])
    assert columns == ["a", "b", "step"]
    logger.log_metrics({"a": 1.0}, step=3)
    logger.save()
    with open(tmp_path / "csv" / "metrics.csv") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == ["a", "b", "step"] and rows[1] == ["1.0", "", "3"]
