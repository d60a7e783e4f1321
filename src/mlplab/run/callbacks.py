"""Lightning callbacks that show what the chapter is about, as metrics and figures of a run.

- `WeightImages`: the first Linear layer's weights as a grid of 28x28 images, once per epoch.
- `GradientNorms`: each Linear layer's weight-gradient RMS and norm, per epoch and per logging interval
  (vanishing gradients).
- `ActivationStats`: mean, std and fraction of exact zeros (dead ReLUs) of each hidden activation.
- `ConfusionMatrix`: the test set's 10x10 confusion matrix, as JSON and as a figure.

Every measure is taken per member of the pack (`mlplab.core.model`: weights [members, ...]).
Scalars go through the module's `log_members`, so each member's record gets its own value and the
loggers of the pack their mean. Figures are written under each member's `figures/` (a single run's:
`<trainer.default_root_dir>/figures/`) and also sent to the member's loggers that have `log_image`
(WandbLogger). Drawing lives in `mlplab.plots`; these classes only hook Lightning.

conf/callbacks/ configures which of them a run has. `FitClock` and `FlushLoggers` keep the run's
own records and are always there (see each for why Lightning's own is not used).
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback
from torchmetrics.classification import MulticlassConfusionMatrix

from mlplab.core.model import MLP
from mlplab.plots.run_figures import confusion_matrix_figure, weight_grid_figure
from mlplab.run.members import Member, MemberLoggers
from mlplab.run.records import FIGURES_DIR


def _net(pl_module: pl.LightningModule) -> MLP:
    net = getattr(pl_module, "net", None)
    if not isinstance(net, MLP):
        raise TypeError(f"the mlplab callbacks need a module with an MLP as `.net`; {type(pl_module).__name__} has none")
    return net


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def members_of(trainer: pl.Trainer) -> list[Member]:
    """The members whose records a callback writes: a pack's, or the single run's own directory and loggers."""
    for logger in trainer.loggers:
        if isinstance(logger, MemberLoggers):
            return [m for m in logger.members if m.index not in logger.module.failed_members]
    return [Member(0, 0, Path(trainer.default_root_dir), list(trainer.loggers))]


def _log_image(trainer: pl.Trainer, member: Member, key: str, path: Path) -> None:
    for logger in member.loggers:
        if hasattr(logger, "log_image"):
            logger.log_image(key=key, images=[str(path)], step=trainer.global_step)


class WeightImages(Callback):
    """Draws the first Linear layer's weights every `every_n_epochs` epochs and at the end of training.

    Writes `figures/weights_epoch{epoch:03d}.png` and `figures/weights.png` (the latest) in the run
    directory, and logs the image as `weights/first_layer` where a logger has `log_image`.
    """

    def __init__(self, every_n_epochs: int = 1) -> None:
        if not _whole(every_n_epochs):
            raise ValueError(f"every_n_epochs={every_n_epochs!r} must be a whole number of epochs, 1 or more")
        self.every_n_epochs = every_n_epochs
        self._last_epoch = 0
        self._drawn_step = -1

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._last_epoch = trainer.current_epoch
        if (trainer.current_epoch + 1) % self.every_n_epochs == 0:
            self.draw(trainer, pl_module, trainer.current_epoch)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.global_step != self._drawn_step:
            self.draw(trainer, pl_module, self._last_epoch)

    def draw(self, trainer: pl.Trainer, pl_module: pl.LightningModule, epoch: int) -> Path | None:
        """Write (and log) the figure of the current weights, labelled `epoch`; rank zero only."""
        self._drawn_step = trainer.global_step
        if not trainer.is_global_zero:
            return None
        weights = _net(pl_module).linear_layers()[0].weight
        path = None
        for member in members_of(trainer):
            folder = member.directory / FIGURES_DIR
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / f"weights_epoch{epoch:03d}.png"
            weight_grid_figure(weights[member.index]).savefig(path)
            shutil.copyfile(path, folder / "weights.png")
            _log_image(trainer, member, "weights/first_layer", path)
        return path


class GradientNorms(Callback):
    """The size of each Linear layer's weight gradient, measured before every optimizer step.

    i counts the Linear layers from the input side, from 0. Per epoch (the mean over its steps):

    - `grad_rms/linear{i}`: the root mean square of the gradient's entries, ||dL/dW|| / sqrt(entries).
      Per weight, so layers of 78,400, 10,000 and 1,000 weights compare on one scale.
    - `grad_norm/linear{i}`: the L2 (Frobenius) norm ||dL/dW||, which grows with the layer's size.

    And `grad_rms_interval/linear{i}`, the mean RMS over each logging interval (every
    `trainer.log_every_n_steps` optimizer steps), logged at the interval's last step: how the
    gradients change within an epoch, which an epoch mean hides. Its rows carry the epoch too.

    The sums stay on the device; they reach the host once per interval and once per epoch.
    """

    def __init__(self) -> None:
        # [2, layers, members]: norm and RMS, summed over the epoch's steps
        self._epoch_sums: torch.Tensor | None = None
        self._interval_sums: torch.Tensor | None = None  # [layers, members]: RMS summed over the interval's steps
        self._inverse_sqrt_sizes: torch.Tensor | None = None
        self._epoch_steps = self._interval_steps = 0
        # (epoch, last step, mean RMS) of the intervals that ended in this batch, logged when it ends.
        self._interval_logs: list[tuple[int, int, torch.Tensor]] = []

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        layers, members = _net(pl_module).linear_layers(), _net(pl_module).members
        self._inverse_sqrt_sizes = torch.tensor([(layer.weight[0].numel()) ** -0.5 for layer in layers],
                                                device=pl_module.device).unsqueeze(1)
        self._epoch_sums = torch.zeros(2, len(layers), members, device=pl_module.device)
        if self._interval_sums is None or self._interval_sums.shape != (len(layers), members) \
                or self._interval_sums.device != pl_module.device:
            self._interval_sums = torch.zeros(len(layers), members, device=pl_module.device)
            self._interval_steps = 0
        self._epoch_steps = 0

    def on_before_optimizer_step(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, optimizer: torch.optim.Optimizer
    ) -> None:
        gradients = [layer.weight.grad for layer in _net(pl_module).linear_layers()]
        if self._epoch_sums is None or any(gradient is None for gradient in gradients):
            return
        # One fused kernel for all layers and members, and no .item(): a host sync per step would stall
        # the GPU. Each member's slice is a tensor of its own, so its norm is summed as a single run's.
        members = len(gradients[0])
        slices = [gradient[member] for gradient in gradients for member in range(members)]
        norms = torch.stack(torch._foreach_norm(slices)).float().view(len(gradients), members)
        rms = norms * self._inverse_sqrt_sizes
        self._epoch_sums += torch.stack([norms, rms])
        self._interval_sums += rms
        self._epoch_steps += 1
        self._interval_steps += 1
        step = trainer.global_step + 1  # this step's number: Lightning counts it once the optimizer has stepped
        if step % max(trainer.log_every_n_steps, 1) == 0:
            self._interval_logs.append((trainer.current_epoch, step, self._interval_sums / self._interval_steps))
            self._interval_sums = torch.zeros_like(self._interval_sums)
            self._interval_steps = 0

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        # After the batch's steps (several on the fast path), as the module logs its training loss.
        for epoch, step, means in self._interval_logs:
            metrics = {f"grad_rms_interval/linear{index}": mean for index, mean in enumerate(means)}
            # `epoch` as in Lightning's rows: readers see where each epoch ends
            pl_module.log_member_rows(metrics, step, epoch=epoch)
        self._interval_logs.clear()

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._epoch_sums is None or self._epoch_steps == 0:
            return
        norms, rms = self._epoch_sums / self._epoch_steps
        pl_module.log_members({f"grad_norm/linear{index}": mean for index, mean in enumerate(norms)}
                              | {f"grad_rms/linear{index}": mean for index, mean in enumerate(rms)}, on_epoch=True)


class ActivationStats(Callback):
    """Logs `activation/layer{i}/{mean,std,zero_frac,dead_frac}` of each hidden activation's output,
    once per epoch.

    The statistics come from a fixed batch, the first `num_images` validation images (test images
    when there is no validation split), run in eval mode without gradients. `zero_frac` is the
    fraction of outputs that are exactly zero (inactive ReLUs on that input); `dead_frac` the
    fraction of units that are zero on every image of the batch (dead units, never active).
    """

    def __init__(self, num_images: int = 1000) -> None:
        if not _whole(num_images):
            raise ValueError(f"num_images={num_images!r} must be a whole number of images, 1 or more")
        self.num_images = num_images
        self._inputs: torch.Tensor | None = None
        self._recorded_epoch: int | None = None

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.sanity_checking:
            self.record(trainer, pl_module)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # Epochs without validation (data.val_size=0, limit_val_batches=0) are measured here instead.
        if self._recorded_epoch != trainer.current_epoch:
            self.record(trainer, pl_module)

    def fixed_inputs(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> torch.Tensor:
        """The normalized fixed batch on the module's device (cached)."""
        if self._inputs is None or self._inputs.device != pl_module.device:
            datamodule = trainer.datamodule
            if datamodule is None or not hasattr(datamodule, "split"):
                raise TypeError("ActivationStats needs the run's MNISTDataModule: trainer.fit(module, datamodule=...)")
            images, _ = datamodule.split("val")
            if len(images) == 0:
                images, _ = datamodule.split("test")
            self._inputs = datamodule.to_input(images[: self.num_images].to(pl_module.device))
        return self._inputs

    @torch.no_grad()
    def statistics(self, net: MLP, inputs: torch.Tensor) -> torch.Tensor:
        """[hidden layers, 4, members]: mean, std, zero fraction and dead-unit fraction of each hidden
        activation's output on `inputs`, per member."""
        outputs: list[torch.Tensor] = []
        handles = [
            module.register_forward_hook(lambda module, args, output: outputs.append(output))
            for module in net.hidden_activations()
        ]
        modes = {module: module.training for module in net.modules()}
        try:
            net.eval()
            net(inputs.to(net.linear_layers()[0].weight.dtype))
        finally:
            for handle in handles:
                handle.remove()
            for module, training in modes.items():
                module.training = training
        # Member by member: each statistic is then summed over exactly the tensor a single run sums over.
        return torch.stack([
            torch.stack([torch.stack([member.float().mean(), member.float().std(), (member == 0).float().mean(),
                                      (member == 0).all(dim=0).float().mean()]) for member in output], dim=1)
            for output in outputs
        ])

    def record(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._recorded_epoch = trainer.current_epoch
        stats = self.statistics(_net(pl_module), self.fixed_inputs(trainer, pl_module))
        metrics = {}
        for index, (mean, std, zero_frac, dead_frac) in enumerate(stats):
            metrics |= {
                f"activation/layer{index}/mean": mean,
                f"activation/layer{index}/std": std,
                f"activation/layer{index}/zero_frac": zero_frac,
                f"activation/layer{index}/dead_frac": dead_frac,
            }
        pl_module.log_members(metrics, on_epoch=True)


class ConfusionMatrix(Callback):
    """The test set's confusion matrix (rows: true class, columns: predicted class), at the end of testing.

    Writes `confusion_matrix.json` (a list of lists of counts) and `figures/confusion_matrix.png` in
    the run directory and logs the figure as `test/confusion_matrix` where a logger has `log_image`.
    The counts of the last test run stay in `self.matrices` (one per member; `self.matrix` is the first's).
    """

    def __init__(self) -> None:
        self.matrices: list[torch.Tensor] = []
        self._metrics: list[MulticlassConfusionMatrix] = []

    @property
    def matrix(self) -> torch.Tensor | None:
        return self.matrices[0] if self.matrices else None

    def on_test_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        net = _net(pl_module)
        num_classes = net.linear_layers()[-1].out_features
        # Labels come from the datamodule; the argument checks would cost a host sync per batch.
        self._metrics = [MulticlassConfusionMatrix(num_classes, validate_args=False).to(pl_module.device)
                         for _ in range(net.members)]

    def on_test_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: tuple[torch.Tensor, torch.Tensor],
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        # test_step returns each member's logits, so the matrix costs no second forward pass.
        for metric, logits in zip(self._metrics, outputs):
            metric.update(logits, batch[1])

    def on_test_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # On every rank: compute() gathers across ranks
        self.matrices = [metric.compute().cpu() for metric in self._metrics]
        if not trainer.is_global_zero:
            return
        for member in members_of(trainer):
            matrix, folder = self.matrices[member.index], member.directory
            (folder / FIGURES_DIR).mkdir(parents=True, exist_ok=True)
            (folder / "confusion_matrix.json").write_text(json.dumps(matrix.tolist()) + "\n")
            path = folder / FIGURES_DIR / "confusion_matrix.png"
            confusion_matrix_figure(matrix).savefig(path)
            _log_image(trainer, member, "test/confusion_matrix", path)


class FitClock(Callback):
    """Seconds spent fitting and in all, kept in every checkpoint, so a resumed run's totals cover
    every segment up to the checkpoint it continues from.

    Lightning's `Timer` keeps its training time in checkpoints too, but counts from `on_train_start`
    (without the sanity check and set-up a fit pays), has no whole-process time, and restores its
    offset from any checkpoint it loads, so testing best.ckpt would rewind a resumed run's totals.
    """

    def __init__(self) -> None:
        self.started = time.perf_counter()  # this segment's start
        self.fit_before = self.wall_before = 0.0  # the earlier segments'
        self._fit_started: float | None = None

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._fit_started = time.perf_counter()

    @property
    def fit_seconds(self) -> float:
        return self.fit_before + (time.perf_counter() - self._fit_started if self._fit_started is not None else 0.0)

    @property
    def wall_seconds(self) -> float:
        return self.wall_before + time.perf_counter() - self.started

    def state_dict(self) -> dict[str, float]:
        return {"fit_seconds": self.fit_seconds, "wall_seconds": self.wall_seconds}

    def on_load_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict) -> None:
        # Only a resumed fit continues the totals; testing the best checkpoint must not rewind them.
        if trainer.state.fn == "fit":
            state = checkpoint.get("callbacks", {}).get(type(self).__name__, {})
            self.fit_before = float(state.get("fit_seconds", 0.0))
            self.wall_before = float(state.get("wall_seconds", 0.0))


class FlushLoggers(Callback):
    """Writes what the loggers hold at each epoch's start, so the curves on disk reach the last checkpoint.

    The CSV logger's own `flush_logs_every_n_steps` counts steps, not epochs: a run stopped after an
    epoch's checkpoint could have lost that epoch's rows, which a resume would then never write again.
    """

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        for logger in trainer.loggers:
            logger.save()
