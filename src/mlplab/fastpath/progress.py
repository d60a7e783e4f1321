"""The interactive progress bar, counted in optimizer steps.

A Lightning batch holds a chunk of batches (`fastpath.chunk`), so Lightning's own bar would count
chunks; this one counts the steps a user set `max_steps` and `log_every_n_steps` in.
"""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.callbacks import RichProgressBar


class StepProgressBar(RichProgressBar):
    """Rich's progress bar with the training bar's total and position in optimizer steps."""

    _epoch_first_step = 0

    @property
    def total_train_batches(self) -> int | float:
        loader = self.trainer.train_dataloader
        if getattr(loader, "chunk", 1) == 1:  # one step per batch: Lightning's count (with its limits) is right
            return super().total_train_batches
        steps = loader.num_batches
        trainer = self.trainer
        if trainer.max_epochs == -1 and trainer.max_steps is not None and trainer.max_steps > 0:
            return min(steps, trainer.max_steps - trainer.global_step)
        return steps

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._epoch_first_step = trainer.global_step
        super().on_train_epoch_start(trainer, pl_module)

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        # Lightning's bar shows batch_idx + 1 as done: here, the steps done in this epoch.
        super().on_train_batch_end(trainer, pl_module, outputs, batch, trainer.global_step - self._epoch_first_step - 1)
