"""Chunked training batches: several optimizer steps per Lightning batch change nothing but speed.

Every test trains in process on real MNIST with the real config and compares a chunked run with
the same run one batch per Lightning batch (`fastpath.chunk=1`): same weights bit for bit, same
global_step, the same logged curve at the same steps, the same NaN report.
"""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import CSVLogger

from helpers import fit_in_process
from mlplab.run.stops import NonFiniteLossError

QUICK = ("trainer.max_epochs=2", "++trainer.limit_val_batches=1", "trainer.log_every_n_steps=7")


def train(compose_cfg, tmp_path: Path, chunk: int, *overrides: str, callbacks=()) -> tuple[pl.Trainer, pl.LightningModule]:
    logger = CSVLogger(tmp_path / f"chunk{chunk}", name="", version="")
    return fit_in_process(tmp_path / f"chunk{chunk}", *QUICK, f"fastpath.chunk={chunk}", *overrides, callbacks=callbacks,
                          logger=logger)


def logged(trainer: pl.Trainer) -> list[tuple[str, str]]:
    """(step, train/loss) of every interval row in the CSV log."""
    return [(row["step"], row["train/loss"]) for row in csv_rows(trainer) if row.get("train/loss")]


def csv_rows(trainer: pl.Trainer) -> list[dict[str, str]]:
    trainer.logger.save()
    with open(Path(trainer.logger.log_dir) / "metrics.csv") as handle:
        return list(csv.DictReader(handle))


@pytest.mark.parametrize("overrides", [
    ("++trainer.limit_train_batches=45",),
    ("++trainer.limit_train_batches=0.1", "augment=affine", "dropout=p02", "l2=penalty", "l2.weight=1e-3"),
], ids=["plain", "augment-dropout-penalty"])
def test_a_chunked_run_equals_one_batch_per_step_bit_for_bit(mnist, compose_cfg, tmp_path, overrides):
    plain_trainer, plain = train(compose_cfg, tmp_path, 1, *overrides)
    chunk_trainer, chunked = train(compose_cfg, tmp_path, 8, *overrides)
    assert chunk_trainer.global_step == plain_trainer.global_step
    assert chunk_trainer.num_training_batches < plain_trainer.num_training_batches  # it did chunk
    for (name, first), (_, second) in zip(plain.state_dict().items(), chunked.state_dict().items()):
        assert torch.equal(first, second), name
    assert logged(chunk_trainer) == logged(plain_trainer)
    assert len(logged(plain_trainer)) >= 10
    # Every row, epoch-level and validation ones included, at the same optimizer step with the same values.
    assert csv_rows(chunk_trainer) == csv_rows(plain_trainer)


def test_limits_and_max_steps_count_optimizer_steps_not_chunks(mnist, compose_cfg, tmp_path):
    trainer, _ = train(compose_cfg, tmp_path, 8, "++trainer.limit_train_batches=13")
    assert trainer.global_step == 2 * 13
    trainer, _ = train(compose_cfg, tmp_path, 8, "trainer.max_epochs=-1", "++trainer.max_steps=11")
    assert trainer.global_step == 11
    assert [step for step, _ in logged(trainer)] == ["7"]  # one interval of 7 steps, logged at its last step


def test_a_nan_inside_a_chunk_is_reported_at_its_exact_step(mnist, compose_cfg, tmp_path):
    messages = []
    for chunk in (1, 8):
        with pytest.raises(NonFiniteLossError) as error:
            train(compose_cfg, tmp_path, chunk, "norm=none", "data.normalize.mode=none", "optimizer=sgd", "optimizer.lr=1e33", "++trainer.limit_train_batches=200")
        messages.append(str(error.value))
    assert messages[0] == messages[1]
    step = int(messages[0].split(" step ")[1].split(":")[0])
    assert step % 8 != 0  # inside a chunk, not at its end


@pytest.mark.parametrize("chunk", [1, 8])
def test_the_progress_bar_counts_optimizer_steps(mnist, compose_cfg, tmp_path, chunk):
    from mlplab.fastpath.progress import StepProgressBar

    class Seen(pl.Callback):
        positions: list[tuple[float, float]] = []

        def on_train_epoch_end(self, trainer, module):
            task = bar.progress.tasks[bar.train_progress_bar_id]
            self.positions.append((task.completed, task.total))

    bar = StepProgressBar()
    Seen.positions = []
    train(compose_cfg, tmp_path, chunk, "++trainer.limit_train_batches=13", callbacks=[bar, Seen()])
    assert Seen.positions == [(13, 13), (13, 13)]
