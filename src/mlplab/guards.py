"""Callbacks that keep a run's work safe: a non-finite-loss stop and a checkpoint on Ctrl-C."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch

from mlplab.errors import UserError


class NonFiniteLossError(UserError):
    """The training loss became NaN or infinite."""


class NonFiniteLossGuard(pl.Callback):
    """Stop as soon as the training loss is NaN or inf, naming the epoch and step.

    On the CPU every step is checked (reading a scalar costs nothing there). On an accelerator the
    check runs every `trainer.log_every_n_steps` steps, because reading the loss forces the host to
    wait for the device; the error then names the interval in which it happened.
    """

    def __init__(self, resume_hint: str = "") -> None:
        self.resume_hint = resume_hint

    def on_train_batch_end(self, trainer: pl.Trainer, module: pl.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        step = trainer.global_step
        every = 1 if module.device.type == "cpu" else max(1, trainer.log_every_n_steps)
        if step % every:
            return
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        if torch.isfinite(loss).item():
            return
        where = f"step {step}" if every == 1 else f"steps {max(step - every, 0)}..{step}"
        checkpoint = Path(trainer.default_root_dir) / "checkpoints" / "last.ckpt"
        kept = f"the last good checkpoint is {checkpoint}" if checkpoint.exists() else "no epoch had finished, so no checkpoint was kept"
        raise NonFiniteLossError(
            f"training loss became {loss.item()} at epoch {trainer.current_epoch}, {where}: "
            f"lower optimizer.lr (now {trainer.optimizers[0].param_groups[0]['lr']:g}), use a norm layer, "
            f"or check data.normalize; {kept}."
        )


class InterruptCheckpoint(pl.Callback):
    """On Ctrl-C, save the state reached and say how to resume before Lightning exits."""

    def __init__(self, resume_command: str) -> None:
        self.resume_command = resume_command

    def on_exception(self, trainer: pl.Trainer, module: pl.LightningModule, exception: BaseException) -> None:
        if not isinstance(exception, KeyboardInterrupt) or not trainer.is_global_zero:
            return
        path = Path(trainer.default_root_dir) / "checkpoints" / "interrupted.ckpt"
        trainer.save_checkpoint(path)
        print(
            f"\nInterrupted at epoch {trainer.current_epoch}, step {trainer.global_step}; state saved to {path}.\n"
            f"Resume from the last completed epoch (checkpoints/last.ckpt) with:\n  {self.resume_command}",
            file=sys.stderr,
        )
