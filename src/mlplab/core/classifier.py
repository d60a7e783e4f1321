"""The LightningModule: softmax cross-entropy plus the optional L2 term, accuracy metrics, the optimizer.

It is built from configured objects (`from_settings` builds them from the model, activation, norm,
dropout, l2, optimizer and scheduler groups) and keeps those groups' settings as its
hyperparameters, so a checkpoint read with `torch.load(weights_only=True)` rebuilds the exact
network. One training batch is one optimizer step; `mlplab.fastpath` runs the same step faster.

The network is a pack of members (`mlplab.core.model`): every loss, accuracy and sum here is kept
per member ([members] tensors), the optimizer steps all members at once (their losses are summed,
and no member's loss reaches another's weights), and `self.log` gets the mean over the members
that are still training, which for a pack of one is the member's own value. Each member's own
values are in `member_values` (name -> one float per member) whenever a value is logged, for the
loggers that write each member's record (`mlplab.run.members`).
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

from mlplab.core.model import MLP
from mlplab.core.pack import MemberViews

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
    """Trains an `MLP` (a pack of one or more members) on flattened images with softmax cross-entropy."""

    def __init__(self, net: MLP, optimizer: OptimizerFactory, scheduler: SchedulerFactory | None = None,
                 l2: L2 = L2()) -> None:
        super().__init__()
        self.automatic_optimization = False
        self.net, self.optimizer_factory, self.scheduler_factory, self.l2 = net, optimizer, scheduler, l2
        members = net.members
        # The best validation accuracy of each member so far: a resumed run remembers its best epoch.
        self.register_buffer("val_acc_best", torch.full((members,), float("-inf")))
        # Per member, running sums of (loss, l2 term, correct predictions) over the logging interval
        # and the epoch; of (loss, correct, images) over an evaluation.
        self.register_buffer("_interval_sums", torch.zeros(3, members), persistent=False)
        self.register_buffer("_epoch_sums", torch.zeros(3, members), persistent=False)
        self.register_buffer("_eval_sums", torch.zeros(3, members), persistent=False)
        self._interval_steps = self._epoch_steps = self._interval_samples = self._epoch_samples = 0
        self._interval_logs: list[tuple[int, torch.Tensor, int, int]] = []
        self.member_values: dict[str, list[float]] = {}
        self.failed_members: dict[int, str] = {}  # member index -> why it stopped (its loss went non-finite)
        self._register_load_state_dict_pre_hook(_earlier_best)

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any]) -> MLPClassifier:
        """The module of the groups' settings (a config's, or a checkpoint's hyper_parameters); the
        model's settings hold the data set's `input_size` and `num_classes`, and the members' `seeds`."""
        model, l2 = dict(settings["model"]), settings["l2"]
        model.setdefault("_target_", f"{MLP.__module__}.{MLP.__qualname__}")  # saved before the model had one
        net = instantiate(model, activation=instantiate(settings["activation"]), norm=instantiate(settings["norm"]),
                          dropout=settings["dropout"]["p"], _convert_="all")
        scheduler = instantiate(settings["scheduler"]) if settings.get("scheduler") else None
        module = cls(net, instantiate(settings["optimizer"]), scheduler, L2(l2["mode"], float(l2["weight"])))
        # Plain values only: what a checkpoint rebuilds the module from, without unpickling code.
        module.save_hyperparameters({group: settings.get(group) for group in MODULE_GROUPS})
        return module

    @property
    def members(self) -> int:
        return self.net.members

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def decayed_weights(self) -> list[nn.Parameter]:
        """The weights L2 acts on: every Linear's weight matrix; no biases, norm or activation parameters."""
        return [layer.weight for layer in self.net.linear_layers()]

    def l2_penalty(self) -> torch.Tensor:
        """[members]: lambda * each member's sum of squared weights (its gradient is 2 * lambda * w)."""
        return self.l2.weight * sum(w.pow(2).sum(dim=(1, 2)) for w in self.decayed_weights())

    def member_losses(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """[members, batch] cross-entropy of each member's logits [members, batch, classes]."""
        labels = y.expand(logits.shape[:2]) if y.dim() == 1 else y
        return F.cross_entropy(logits.flatten(0, 1), labels.flatten(), reduction="none").view(logits.shape[:2])

    def training_losses(self, batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, ...]:
        """Per member ([members] each): cross-entropy, L2 penalty term (0 unless l2=penalty), correct predictions."""
        x, y = batch
        logits = self(x)
        loss = self.member_losses(logits, y).mean(dim=1)
        correct = (logits.detach().argmax(dim=-1) == y).sum(dim=1)
        if self.l2.mode == "penalty" and self.l2.weight > 0:
            return loss, self.l2_penalty(), correct
        return loss, torch.zeros_like(loss), correct

    # Manual optimization: Lightning's automatic closure machinery costs more per step than this
    # model's forward and backward; the step itself is the textbook three lines.
    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        """One optimizer step on one batch; each member's loss [1, members] (the NaN guard reads them)."""
        x, y = batch
        total = self.optimizer_step_on(x, y, self.optimizers(), self.manual_backward)
        self.count_step(y.shape[-1])
        return total.unsqueeze(0)

    def optimizer_step_on(self, x: torch.Tensor, y: torch.Tensor, optimizer: Any,
                          backward: Callable[[torch.Tensor], None]) -> torch.Tensor:
        """Forward, backward, update, metric sums: no host reads, so a CUDA graph can capture it.
        Returns each member's loss [members]."""
        loss, penalty, correct = self.training_losses((x, y))
        total = loss + penalty
        optimizer.zero_grad(set_to_none=True)
        self.zero_grad(set_to_none=True)
        backward(total.sum())  # members share no weights: each member's gradient is its own loss's
        self.member_views.load_grads()
        optimizer.step()
        terms = torch.stack([loss.detach(), penalty.detach(), correct.to(loss.dtype)])
        self._interval_sums += terms
        self._epoch_sums += terms
        return total.detach()

    # Training metrics stay on the device and reach the host once per logging interval: a
    # per-step self.log or .item() would cost more than the step itself for a model this small.
    def count_step(self, samples: int) -> None:
        """Count one optimizer step of `samples` images per member, on the host; note the logging interval it ends."""
        self._interval_steps += 1
        self._epoch_steps += 1
        self._interval_samples += samples
        self._epoch_samples += samples
        if self._interval_steps >= self.trainer.log_every_n_steps:
            # Kept on the device until the batch ends, logged at the step where the interval ended.
            self._interval_logs.append((self.global_step, self._interval_sums.clone(), self._interval_steps,
                                        self._interval_samples))
            self._reset_interval()

    def _train_means(self, sums: torch.Tensor, steps: int, samples: int) -> dict[str, torch.Tensor]:
        loss, penalty, correct = sums.cpu()
        means = {"train/loss": loss / max(steps, 1), "train/acc": correct / max(samples, 1)}
        if self.l2.mode == "penalty":
            means["train/l2"] = penalty / max(steps, 1)
        return means

    def active(self) -> list[int]:
        """The members still training (all but those whose loss went non-finite)."""
        return [member for member in range(self.members) if member not in self.failed_members]

    def pack_values(self, values: Mapping[str, torch.Tensor]) -> dict[str, float]:
        """Note each member's values; return their means over the active members (a pack of one: its own)."""
        active = self.active() or list(range(self.members))
        means = {}
        for name, value in values.items():
            per_member = value.detach().float().reshape(self.members).cpu()
            self.member_values[name] = per_member.tolist()
            means[name] = per_member[active].mean().item() if len(active) > 1 else per_member[active[0]].item()
        return means

    def log_members(self, values: Mapping[str, torch.Tensor], **options: Any) -> None:
        """`self.log` of per-member values [members]: the loggers get the mean, each member's record its own."""
        for name, value in self.pack_values(values).items():
            self.log(name, value, **options)

    def log_member_rows(self, values: Mapping[str, torch.Tensor], step: int, **fixed: float) -> None:
        """A row of per-member values written to the loggers now, at `step` (not through self.log)."""
        row = self.pack_values(values) | fixed
        for logger in self.loggers:
            logger.log_metrics(row, step=step)

    def on_train_epoch_start(self) -> None:
        self._epoch_sums.zero_()
        self._epoch_steps = self._epoch_samples = 0

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        for step, sums, steps, samples in self._interval_logs:
            self.log_member_rows(self._train_means(sums, steps, samples), step)
        self._interval_logs.clear()

    def on_train_epoch_end(self) -> None:
        scheduler = self.lr_schedulers()
        if scheduler is not None:  # manual optimization steps its schedulers itself
            scheduler.step()
        means = self._train_means(self._epoch_sums, self._epoch_steps, self._epoch_samples)
        self.log_members({f"{name}_epoch": value for name, value in means.items()}, sync_dist=True)

    def _reset_interval(self) -> None:
        self._interval_sums.zero_()
        self._interval_steps = self._interval_samples = 0

    def on_train_start(self) -> None:
        self._reset_interval()
        self._interval_logs.clear()

    # Lightning's checkpoints hold model, optimizer, loops and callbacks; the global RNG states and
    # the members' dropout generators are added so that a resumed run draws the same dropout masks
    # as an uninterrupted one. (Data order and augmentation depend only on (seed, epoch).)
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["rng_states"] = rng_states()
        checkpoint["member_generators"] = self.net.generators.state()
        checkpoint["failed_members"] = {str(member): why for member, why in self.failed_members.items()}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if self._trainer is None or self.trainer.state.fn != "fit":
            return
        if "rng_states" in checkpoint:
            set_rng_states(checkpoint["rng_states"])
        self.net.generators.load_state(checkpoint.get("member_generators", {}))
        self.failed_members = {int(member): why for member, why in checkpoint.get("failed_members", {}).items()}

    def _evaluate(self, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        x, y = batch
        logits = self(x)
        losses = self.member_losses(logits, y)
        correct = (logits.argmax(dim=-1) == y).sum(dim=1)
        self._eval_sums += torch.stack([losses.sum(dim=1), correct.to(losses.dtype),
                                        torch.full_like(losses[:, 0], len(y))])
        return logits

    def _evaluation_means(self, stage: str) -> dict[str, torch.Tensor]:
        sums = self._eval_sums
        if self.trainer.world_size > 1:
            sums = self.all_gather(sums).sum(dim=0)
        loss, correct, count = sums.clone()
        self._eval_sums.zero_()
        count = count.clamp(min=1)
        return {f"{stage}/loss": loss / count, f"{stage}/acc": correct / count}

    def on_validation_epoch_start(self) -> None:
        self._eval_sums.zero_()

    on_test_epoch_start = on_validation_epoch_start

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self._evaluate(batch)

    def on_validation_epoch_end(self) -> None:
        values = self._evaluation_means("val")
        if not self.trainer.sanity_checking:  # the untrained sanity pass is not an epoch
            self.val_acc_best.copy_(torch.maximum(self.val_acc_best, values["val/acc"]))
        self.log_members(values, prog_bar=True)
        self.log_members({"val/acc_best": self.val_acc_best})

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        """Each member's logits [members, batch, classes] (the confusion-matrix callback reads them)."""
        return self._evaluate(batch).detach()

    def on_test_epoch_end(self) -> None:
        self.log_members(self._evaluation_means("test"))

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
        # The optimizer updates each member's slices as tensors of their own (see MemberViews).
        self.member_views = MemberViews(decayed + others, self.members)
        groups = [{"params": self.member_views.of(decayed), "weight_decay": decay},
                  {"params": self.member_views.of(others), "weight_decay": 0.0}]
        optimizer = self.optimizer_factory(groups, **self.optimizer_options(self.optimizer_factory))
        if self.scheduler_factory is None:
            return optimizer
        scheduler = self.scheduler_factory(optimizer)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"}}


def _earlier_best(state_dict: dict, prefix: str, *args: object) -> None:
    """Checkpoints saved before packs kept the best validation accuracy in a torchmetrics MaxMetric."""
    earlier = state_dict.pop(prefix + "val_acc_best.max_value", None)
    if earlier is not None:
        state_dict[prefix + "val_acc_best"] = earlier.reshape(1)
