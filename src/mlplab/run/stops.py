"""Callbacks that keep a run's record true when it cannot finish: a NaN/inf loss, or a signal.

SIGINT (Ctrl-C), SIGTERM (schedulers, `timeout`, preemption) and SIGHUP (a closed terminal) all
stop a run the same way: at the next safe point (the end of the current batch, or the start of
training), with `checkpoints/interrupted.ckpt` saved, and `train.py` then exits with 128 + the
signal's number. A second signal stops it at once.
"""

from __future__ import annotations

import signal
from pathlib import Path
from types import FrameType
from typing import Any

import pytorch_lightning as pl
import torch

from mlplab.errors import UserError
from mlplab.run.cli import STOP_SIGNALS
from mlplab.run.records import INTERRUPTED_CHECKPOINT, checkpoint_path



class NonFiniteLossError(UserError):
    """The training loss became NaN or infinite."""


class RunInterrupted(KeyboardInterrupt):
    """A stop signal arrived. A KeyboardInterrupt, so Lightning shuts down as it does on Ctrl-C."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class NonFiniteLossGuard(pl.Callback):
    """Stop as soon as the training loss is NaN or inf, naming the epoch and the optimizer step.

    A training batch may hold several optimizer steps (mlplab.fastpath); the module returns each
    step's loss per member ([steps, members]). On the CPU every step is checked (reading a scalar
    costs nothing there). On an accelerator the check runs once every `trainer.log_every_n_steps`
    steps, because reading the loss forces the host to wait for the device; it then reads the
    losses of the whole batch, and the error names the interval in which the loss went bad.

    In a pack, a member whose loss goes bad is recorded failed at its step (the module's
    `failed_members`) while the others train on; members share no weights, so theirs are unchanged.
    The run stops when no member is left.
    """

    def on_train_batch_end(self, trainer: pl.Trainer, module: pl.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        losses = outputs["loss"] if isinstance(outputs, dict) else outputs
        if losses is None:
            return
        members = getattr(module, "members", 1)
        losses = losses.reshape(-1, members)
        step, first = trainer.global_step, trainer.global_step - len(losses)
        every = 1 if module.device.type == "cpu" else max(1, trainer.log_every_n_steps)
        if every > 1 and step // every == first // every:  # no multiple of `every` in this batch's steps
            return
        finite = torch.isfinite(losses)
        if finite.all().item():
            return
        failed = getattr(module, "failed_members", {})
        went_bad = [member for member in range(members) if member not in failed and not finite[:, member].all().item()]
        reasons = {member: self.reason(trainer, losses[:, member], finite[:, member], first, every)
                   for member in went_bad}
        if len(failed) + len(went_bad) < members:
            failed.update(reasons)
            return
        if went_bad:
            raise NonFiniteLossError(reasons[went_bad[0]])

    @staticmethod
    def reason(trainer: pl.Trainer, losses: torch.Tensor, finite: torch.Tensor, first: int, every: int) -> str:
        bad = int((~finite).nonzero()[0]) + 1  # steps are counted from 1
        where = f"step {first + bad}" if every == 1 else f"step {first + bad} (checked every {every} steps)"
        checkpoint = checkpoint_path(trainer.default_root_dir)
        kept = f"the last good checkpoint is {checkpoint}" if checkpoint.exists() else "no epoch had finished, so no checkpoint was kept"
        return (f"training loss became {losses[bad - 1].item()} at epoch {trainer.current_epoch}, {where}: "
                f"lower optimizer.lr (now {trainer.optimizers[0].param_groups[0]['lr']:g}), use a norm layer, "
                f"or check data.normalize; {kept}.")


class StopOnSignal(pl.Callback):
    """Turns SIGINT, SIGTERM and SIGHUP into a clean stop with a checkpoint of the state reached.

    `install()` takes the signals for the whole run. The handler only notes the first signal: an
    exception raised at an arbitrary point (inside a library's bookkeeping) could leave state
    half-changed, so the stop happens at the next batch end or loop start, where the checkpoint
    holds a consistent state. `signum` says which signal stopped the run.
    """

    def __init__(self) -> None:
        self.signum: int | None = None
        self.checkpoint: Path | None = None
        self._previous: dict[int, Any] = {}

    def install(self) -> None:
        self._previous = {signum: signal.signal(signum, self._on_signal) for signum in STOP_SIGNALS}

    def uninstall(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is not None:
            raise RunInterrupted(signum)  # asked twice: do not wait for a safe point
        self.signum = signum

    def raise_if_asked(self, *args: Any) -> None:
        if self.signum is not None:
            raise RunInterrupted(self.signum)

    on_fit_start = on_train_start = on_train_batch_end = on_validation_batch_end = raise_if_asked
    on_test_start = on_test_batch_end = raise_if_asked

    # Lightning's OnExceptionCheckpoint saves on every exception (a NaN, a failing test) and deletes
    # the file at teardown; a stop keeps its checkpoint, and only a stop in training writes one.
    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        if isinstance(exception, KeyboardInterrupt) and self.signum is None:
            self.signum = getattr(exception, "signum", signal.SIGINT)
        if self.signum is None or not trainer.is_global_zero or not trainer.training:
            return
        self.checkpoint = checkpoint_path(trainer.default_root_dir, INTERRUPTED_CHECKPOINT)
        trainer.save_checkpoint(self.checkpoint)
