"""Training batches in chunks: one Lightning batch holds `chunk` batches of `batch_size`.

Lightning's per-batch machinery costs more than this model's step on a GPU; gathering `chunk`
batches at once pays it once per chunk. The model still takes one optimizer step per batch
(`steps.py`), so the recipe and its numbers are those of one batch per step.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytorch_lightning as pl
import torch

from mlplab.core.data import DeviceBatches, MNISTDataModule


def batch_limit(limit: int | float | None, batches: int) -> int | None:
    """Lightning's `limit_train_batches` (a count, or a fraction of the epoch) as a number of batches."""
    if limit is None or (isinstance(limit, float) and limit == 1.0):
        return None
    return int(limit) if isinstance(limit, int) else int(batches * limit)


class ChunkedBatches(DeviceBatches):
    """Each item is `chunk` consecutive batches gathered at once (the last of an epoch may hold
    fewer); `max_batches` ends the epoch early, counted in batches, not items."""

    def __init__(self, batches: DeviceBatches, chunk: int, max_batches: int | None = None) -> None:
        super().__init__(batches.images, batches.labels, batches.batch_size, batches.sampler)
        self.chunk, self.max_batches = chunk, max_batches

    @property
    def num_batches(self) -> int:
        batches = super().num_batches
        return batches if self.max_batches is None else min(batches, self.max_batches)

    def __len__(self) -> int:
        return -(-self.num_batches // self.chunk)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        return self.gathered(self.chunk * self.batch_size)


class ChunkedMNIST(MNISTDataModule):
    """MNISTDataModule whose training batches are chunks: lists of (inputs, labels), one per batch, each
    with the members' axis first."""

    chunk = 1  # set by FastPath.attach
    _taken_limit: tuple[pl.Trainer, int | float] | None = None

    def train_dataloader(self) -> ChunkedBatches:
        batches = ChunkedBatches(super().train_dataloader(), self.chunk)
        trainer = self.trainer
        if trainer is not None and self.chunk > 1:
            # `limit_train_batches` counts batches of batch_size (optimizer steps), as without chunks:
            # the limit is applied here, and Lightning, which would count chunks, is told to take them all.
            if self._taken_limit is None or self._taken_limit[0] is not trainer:
                self._taken_limit = (trainer, trainer.limit_train_batches)
                trainer.limit_train_batches = 1.0
            batches.max_batches = batch_limit(self._taken_limit[1], batches.num_batches)
        return batches

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        """Evaluation: (inputs, labels). Training: a list of (inputs, labels), one per batch of the chunk."""
        if self.trainer is None or not self.trainer.training:
            return super().on_after_batch_transfer(batch, dataloader_idx)
        images, labels = batch
        inputs = self.to_input(self.training_pixels(images))
        return list(zip(inputs.split(self.batch_size, dim=1), labels.split(self.batch_size, dim=1)))
