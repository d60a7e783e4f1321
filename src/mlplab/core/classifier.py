"""The LightningModule: softmax cross-entropy plus the optional L2 term, accuracy metrics, the optimizer.

It is built from configured objects (`from_settings` builds them from the model, activation, norm,
dropout, l2, optimizer and scheduler groups) and keeps those groups' settings as its
hyperparameters, so a checkpoint read with `torch.load(weights_only=True)` rebuilds the exact
network. One training batch is one optimizer step; `mlplab.fastpath` runs the same step faster.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from torch import nn
from torchmetrics import MaxMetric
from torchmetrics.classification import MulticlassAccuracy

from mlplab.core.model import MLP

FUSED_DEVICES = ("cpu", "cuda")  # where torch's Adam, AdamW and SGD have fused kernels
MODULE_GROUPS = ("model", "activation", "norm", "dropout", "l2", "optimizer", "scheduler")
L2_MODES = ("none", "penalty", "decoupled")
OptimizerFactory = Callable[..., torch.optim.Optimizer]
SchedulerFactory = Callable[[torch.optim.Optimizer], Any]


@dataclass(frozen=True)
class L2:
    """How the Linear weights are pulled toward 0: `penalty` adds weight * sum(w^2) to the loss,
    `decoupled` decays them in the optimizer step (AdamW-style), `none` leaves them alone."""

    mode: str = "none"
    weight: float = 0.0


def rng_states() -> dict[str, Any]:
    """The states of every global generator a training step can draw from."""
    kind, keys, position, has_gauss, cached = np.random.get_state()
    # Plain lists and tuples, so the checkpoint still loads with torch.load(weights_only=True).
    states = {"torch": torch.get_rng_state(), "numpy": [kind, keys.tolist(), position, has_gauss, cached],
              "python": random.getstate()}
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: dict[str, Any]) -> None:
    torch.set_rng_state(states["torch"])
    kind, keys, position, has_gauss, cached = states["numpy"]
    np.random.set_state((kind, np.array(keys, dtype=np.uint32), position, has_gauss, cached))
    random.setstate(states["python"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


class MLPClassifier(pl.LightningModule):
    """Trains an `MLP` on flattened images with softmax cross-entropy."""

    def __init__(self, net: MLP, optimizer: OptimizerFactory, scheduler: SchedulerFactory | None = None,
                 l2: L2 = L2()) -> None:
        super().__init__()
        self.automatic_optimization = False
        self.net, self.optimizer_factory, self.scheduler_factory, self.l2 = net, optimizer, scheduler, l2
        num_classes = net.linear_layers()[-1].out_features
        self.val_acc = MulticlassAccuracy(num_classes, average="micro")
        self.test_acc = MulticlassAccuracy(num_classes, average="micro")
        self.val_acc_best = MaxMetric()
        self.val_acc_best.persistent(True)  # a resumed run remembers its best epoch
        # Running sums of (loss, l2 term, correct predictions) over the logging interval and the epoch.
        self.register_buffer("_interval_sums", torch.zeros(3), persistent=False)
        self.register_buffer("_epoch_sums", torch.zeros(3), persistent=False)
        self._interval_steps = self._epoch_steps = self._interval_samples = self._epoch_samples = 0
        self._interval_logs: list[tuple[int, torch.Tensor, int, int]] = []

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any]) -> MLPClassifier:
        """The module of the groups' settings (a config's, or a checkpoint's hyper_parameters); the
        model's settings hold the data set's `input_size` and `num_classes`."""
        model, l2 = dict(settings["model"]), settings["l2"]
        model.setdefault("_target_", f"{MLP.__module__}.{MLP.__qualname__}")  # saved before the model had one
        net = instantiate(model, activation=instantiate(settings["activation"]), norm=instantiate(settings["norm"]),
                          dropout=settings["dropout"]["p"], _convert_="all")
        scheduler = instantiate(settings["scheduler"]) if settings.get("scheduler") else None
        module = cls(net, instantiate(settings["optimizer"]), scheduler, L2(l2["mode"], float(l2["weight"])))
        # Plain values only: what a checkpoint rebuilds the module from, without unpickling code.
        module.save_hyperparameters({group: settings.get(group) for group in MODULE_GROUPS})
        return module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def decayed_weights(self) -> list[nn.Parameter]:
        """The weights L2 acts on: every Linear's weight matrix; no biases, norm or activation parameters."""
        return [layer.weight for layer in self.net.linear_layers()]

    def l2_penalty(self) -> torch.Tensor:
        """lambda * sum of squared weights (its gradient is 2 * lambda * w)."""
        return self.l2.weight * sum(w.pow(2).sum() for w in self.decayed_weights())

    def training_losses(self, batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, ...]:
        """(cross-entropy, L2 penalty term (0 unless l2=penalty), correct predictions) of one batch."""
        x, y = batch
        logits = self(x)
        loss = F.cross_entropy(logits, y)
        correct = (logits.detach().argmax(dim=-1) == y).sum()
        if self.l2.mode == "penalty" and self.l2.weight > 0:
            return loss, self.l2_penalty(), correct
        return loss, torch.zeros((), device=loss.device), correct

    # Manual optimization: Lightning's automatic closure machinery costs more per step than this
    # model's forward and backward; the step itself is the textbook three lines.
    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        """One optimizer step on one batch; its loss (the NaN guard reads it)."""
        x, y = batch
        total = self.optimizer_step_on(x, y, self.optimizers(), self.manual_backward)
        self.count_step(len(y))
        return total

    def optimizer_step_on(self, x: torch.Tensor, y: torch.Tensor, optimizer: Any,
                          backward: Callable[[torch.Tensor], None]) -> torch.Tensor:
        """Forward, backward, update, metric sums: no host reads, so a CUDA graph can capture it."""
        loss, penalty, correct = self.training_losses((x, y))
        total = loss + penalty
        optimizer.zero_grad(set_to_none=True)
        backward(total)
        optimizer.step()
        terms = torch.stack([loss.detach(), penalty.detach(), correct])
        self._interval_sums += terms
        self._epoch_sums += terms
        return total.detach()

    # Training metrics stay on the device and reach the host once per logging interval: a
    # per-step self.log or .item() would cost more than the step itself for a model this small.
    def count_step(self, samples: int) -> None:
        """Count one optimizer step of `samples` images, on the host; note the logging interval it ends."""
        self._interval_steps += 1
        self._epoch_steps += 1
        self._interval_samples += samples
        self._epoch_samples += samples
        if self._interval_steps >= self.trainer.log_every_n_steps:
            # Kept on the device until the batch ends, logged at the step where the interval ended.
            self._interval_logs.append((self.global_step, self._interval_sums.clone(), self._interval_steps,
                                        self._interval_samples))
            self._reset_interval()

    def _train_means(self, sums: torch.Tensor, steps: int, samples: int) -> dict[str, float]:
        loss, penalty, correct = sums.tolist()
        means = {"train/loss": loss / max(steps, 1), "train/acc": correct / max(samples, 1)}
        if self.l2.mode == "penalty":
            means["train/l2"] = penalty / max(steps, 1)
        return means

    def on_train_epoch_start(self) -> None:
        self._epoch_sums.zero_()
        self._epoch_steps = self._epoch_samples = 0

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        for step, sums, steps, samples in self._interval_logs:
            metrics = self._train_means(sums, steps, samples)
            for logger in self.loggers:
                logger.log_metrics(metrics, step=step)
        self._interval_logs.clear()

    def on_train_epoch_end(self) -> None:
        scheduler = self.lr_schedulers()
        if scheduler is not None:  # manual optimization steps its schedulers itself
            scheduler.step()
        for name, value in self._train_means(self._epoch_sums, self._epoch_steps, self._epoch_samples).items():
            self.log(f"{name}_epoch", value, sync_dist=True)

    def _reset_interval(self) -> None:
        self._interval_sums.zero_()
        self._interval_steps = self._interval_samples = 0

    def on_train_start(self) -> None:
        self._reset_interval()
        self._interval_logs.clear()

    # Lightning's checkpoints hold model, optimizer, loops and callbacks; the global RNG states are
    # added so that a resumed run draws the same dropout masks as an uninterrupted one. (Data order
    # and augmentation depend only on (seed, epoch), so they need no state.)
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["rng_states"] = rng_states()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if "rng_states" in checkpoint and self._trainer is not None and self.trainer.state.fn == "fit":
            set_rng_states(checkpoint["rng_states"])

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        x, y = batch
        logits = self(x)
        self.val_acc(logits, y)
        self.log("val/loss", F.cross_entropy(logits, y), on_epoch=True, prog_bar=True, sync_dist=True)

    def on_validation_epoch_end(self) -> None:
        accuracy = self.val_acc.compute()
        self.val_acc.reset()
        if not self.trainer.sanity_checking:  # the untrained sanity pass is not an epoch
            self.val_acc_best(accuracy)
        self.log("val/acc", accuracy, prog_bar=True, sync_dist=True)
        self.log("val/acc_best", self.val_acc_best.compute(), sync_dist=True)

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        """Logs test loss and accuracy; returns the logits (the confusion-matrix callback reads them)."""
        x, y = batch
        logits = self(x)
        self.test_acc(logits, y)
        self.log("test/loss", F.cross_entropy(logits, y), on_epoch=True, sync_dist=True)
        self.log("test/acc", self.test_acc, on_epoch=True)
        return logits.detach()

    def optimizer_options(self, optimizer: OptimizerFactory) -> dict[str, Any]:
        """Keyword arguments the optimizer gets beyond its config's."""
        options: dict[str, Any] = {}
        if self.l2.mode == "decoupled" and getattr(optimizer, "func", optimizer) is torch.optim.Adam:
            options["decoupled_weight_decay"] = True  # Adam + decoupled decay is AdamW
        if "fused" not in getattr(optimizer, "keywords", {}) and self.device.type in FUSED_DEVICES:
            # One kernel for the whole update instead of several per parameter: ~20 % faster steps on CPU.
            options["fused"] = True
        return options

    def configure_optimizers(self) -> torch.optim.Optimizer | dict[str, Any]:
        decayed = self.decayed_weights()
        decayed_ids = {id(p) for p in decayed}
        others = [p for p in self.parameters() if id(p) not in decayed_ids]
        decay = self.l2.weight if self.l2.mode == "decoupled" else 0.0
        groups = [{"params": decayed, "weight_decay": decay}, {"params": others, "weight_decay": 0.0}]
        optimizer = self.optimizer_factory(groups, **self.optimizer_options(self.optimizer_factory))
        if self.scheduler_factory is None:
            return optimizer
        scheduler = self.scheduler_factory(optimizer)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"}}
