"""The LightningModule: cross-entropy plus the optional L2 term, accuracy metrics, the optimizer,
and the fast training step.

Its hyperparameters are the plain config dicts of the model, activation, norm, dropout, l2 and
optimizer groups, so a checkpoint rebuilds the exact network with `load_from_checkpoint`.

Each Lightning batch is a chunk of batches (see `mlplab.core.data`); `training_step` takes one optimizer
step per batch, so global_step, logging intervals and `max_steps` count optimizer steps exactly as
without chunks. On one CUDA device the step is replayed from a CUDA graph (`model.cuda_graph`).
"""

from __future__ import annotations

import inspect
import random
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from pytorch_lightning.trainer import call
from torch import nn
from torchmetrics import MaxMetric
from torchmetrics.classification import MulticlassAccuracy

from mlplab.fastpath.cuda_graph import GraphedStep
from mlplab.core.model import MLP
from mlplab.run.targets import check_targets

FUSED_DEVICES = ("cpu", "cuda")  # where torch's Adam, AdamW and SGD have fused kernels


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

    def __init__(
        self,
        model: dict[str, Any],
        activation: dict[str, Any],
        norm: dict[str, Any],
        dropout: dict[str, Any],
        l2: dict[str, Any],
        optimizer: dict[str, Any],
        scheduler: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        # Whoever built this module (a config, a checkpoint's hyperparameters), nothing it names is
        # called unless conf/ names it.
        check_targets({"activation": activation, "norm": norm, "optimizer": optimizer, "scheduler": scheduler,
                       "model": model, "dropout": dropout, "l2": l2}, "the module's hyperparameters",
                      interpolations=False)
        self.save_hyperparameters()
        self.automatic_optimization = False
        self.net = MLP(
            input_size=model["input_size"],
            hidden_sizes=list(model["hidden_sizes"]),
            num_classes=model["num_classes"],
            activation=instantiate(activation),
            norm=instantiate(norm),
            dropout=dropout["p"],
            init=model.get("init", "default"),
        )
        self.l2_mode, self.l2_weight = l2["mode"], float(l2["weight"])
        num_classes = model["num_classes"]
        self.val_acc = MulticlassAccuracy(num_classes, average="micro")
        self.test_acc = MulticlassAccuracy(num_classes, average="micro")
        self.val_acc_best = MaxMetric()
        self.val_acc_best.persistent(True)  # a resumed run remembers its best epoch
        # Running sums of (loss, l2 term, correct predictions) over the logging interval and the epoch.
        self.register_buffer("_interval_sums", torch.zeros(3), persistent=False)
        self.register_buffer("_epoch_sums", torch.zeros(3), persistent=False)
        self._interval_steps = self._epoch_steps = self._interval_samples = self._epoch_samples = 0
        self._interval_logs: list[tuple[int, torch.Tensor, int, int]] = []
        self._graphed: GraphedStep | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def decayed_weights(self) -> list[nn.Parameter]:
        """The weights L2 acts on: every Linear's weight matrix; no biases, norm or activation parameters."""
        return [layer.weight for layer in self.net.linear_layers()]

    def l2_penalty(self) -> torch.Tensor:
        """lambda * sum of squared weights (its gradient is 2 * lambda * w)."""
        return self.l2_weight * sum(w.pow(2).sum() for w in self.decayed_weights())

    def training_losses(self, batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, ...]:
        """(cross-entropy, L2 penalty term (0 unless l2=penalty), correct predictions) of one batch."""
        x, y = batch
        logits = self(x)
        loss = F.cross_entropy(logits, y)
        correct = (logits.detach().argmax(dim=-1) == y).sum()
        if self.l2_mode == "penalty" and self.l2_weight > 0:
            return loss, self.l2_penalty(), correct
        return loss, torch.zeros((), device=loss.device), correct

    def training_step(self, batch: list[tuple[torch.Tensor, torch.Tensor]], batch_idx: int) -> torch.Tensor | None:
        """One optimizer step per batch of the chunk; the steps' losses (the NaN guard reads them)."""
        losses = []
        for x, y in batch:
            if 0 <= self.trainer.max_steps <= self.global_step:  # max_steps counts optimizer steps
                break
            losses.append(self._optimizer_step(x, y))
            self._count_step(len(y))
        # Lightning logs epoch-level values at the count of batches that stepped, which it raises by one
        # after this batch: made to count optimizer steps, so every row of the logs is in one unit.
        self.trainer.fit_loop.epoch_loop._batches_that_stepped += len(losses) - 1
        return torch.stack(losses) if losses else None

    # Manual optimization: Lightning's automatic closure machinery costs more per step than this
    # model's forward and backward; the step itself is the textbook three lines.
    def _optimizer_step(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        optimizer = self.optimizers()
        if self._graphed is None:
            return self._step(x, y, optimizer, self.manual_backward)
        # The graph runs the raw optimizer; Lightning's step count and hooks are kept here, per step.
        optimizer._on_before_step()
        total = self._graphed(x, y, key=tuple(group["lr"] for group in optimizer.param_groups))
        call._call_callback_hooks(self.trainer, "on_before_optimizer_step", optimizer.optimizer)
        optimizer._on_after_step()
        return total

    def _step(self, x: torch.Tensor, y: torch.Tensor, optimizer: Any, backward: Any) -> torch.Tensor:
        """Forward, backward, update, metric sums: no host reads, so a CUDA graph can capture it."""
        loss, penalty, correct = self.training_losses((x, y))
        total = loss + penalty
        optimizer.zero_grad(set_to_none=True)
        backward(total)
        optimizer.step()
        self._accumulate(loss.detach(), penalty.detach(), correct)
        return total.detach()

    def _captured_step(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self._step(x, y, self.optimizers().optimizer, torch.Tensor.backward)

    def uses_cuda_graph(self) -> bool:
        """Whether training steps are replayed from a CUDA graph: asked for, on one CUDA device, full precision."""
        trainer = self._trainer
        model = self.hparams.model
        return (bool(model.get("cuda_graph")) and not model.get("compile") and self.device.type == "cuda"
                and trainer is not None and trainer.world_size == 1 and trainer.precision == "32-true")

    # Training metrics stay on the device and reach the host once per logging interval: a
    # per-step self.log or .item() would cost more than the step itself for a model this small.
    def _accumulate(self, loss: torch.Tensor, penalty: torch.Tensor, correct: torch.Tensor) -> None:
        terms = torch.stack([loss, penalty, correct])
        self._interval_sums += terms
        self._epoch_sums += terms

    def _count_step(self, samples: int) -> None:
        self._interval_steps += 1
        self._epoch_steps += 1
        self._interval_samples += samples
        self._epoch_samples += samples
        if self._interval_steps >= self.trainer.log_every_n_steps:
            # Kept on the device until the chunk ends, logged at the step where the interval ended.
            self._interval_logs.append((self.global_step, self._interval_sums.clone(), self._interval_steps,
                                        self._interval_samples))
            self._reset_interval()

    def _train_means(self, sums: torch.Tensor, steps: int, samples: int) -> dict[str, float]:
        loss, penalty, correct = sums.tolist()
        means = {"train/loss": loss / max(steps, 1), "train/acc": correct / max(samples, 1)}
        if self.l2_mode == "penalty":
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
        self._graphed = GraphedStep(self._captured_step) if self.uses_cuda_graph() else None

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

    def configure_optimizers(self) -> torch.optim.Optimizer | dict[str, Any]:
        decayed = self.decayed_weights()
        decayed_ids = {id(p) for p in decayed}
        others = [p for p in self.parameters() if id(p) not in decayed_ids]
        decay = self.l2_weight if self.l2_mode == "decoupled" else 0.0
        groups = [{"params": decayed, "weight_decay": decay}, {"params": others, "weight_decay": 0.0}]
        factory = instantiate(self.hparams.optimizer)
        extra = {}
        if self.l2_mode == "decoupled" and factory.func is torch.optim.Adam:
            extra["decoupled_weight_decay"] = True  # Adam + decoupled decay is AdamW
        if "fused" not in factory.keywords and self.device.type in FUSED_DEVICES:
            # One kernel for the whole update instead of several per parameter: ~20 % faster steps on CPU.
            extra["fused"] = True
        if self.uses_cuda_graph() and "capturable" in inspect.signature(factory.func).parameters:
            extra["capturable"] = True  # the step count stays on the GPU, where a graph can update it
        optimizer = factory(groups, **extra)
        if not self.hparams.get("scheduler"):
            return optimizer
        scheduler = instantiate(self.hparams.scheduler)(optimizer)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"}}
