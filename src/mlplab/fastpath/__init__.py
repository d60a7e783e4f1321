"""The fast path: the same training steps, with fewer launches and less per-batch machinery.

Everything that makes a step faster without changing its numbers lives here, and nowhere else:

- chunks (`batches.py`): one Lightning batch holds `chunk` batches, each its own optimizer step, so
  Lightning's per-batch cost is paid once per chunk;
- the CUDA-graph step (`cuda_graph.py`): on one CUDA device a step is replayed as one graph;
- step counting (`steps.py`): limits, `max_steps`, logging intervals and the logs' step column count
  optimizer steps, as without chunks;
- the progress bar in steps (`progress.py`);
- `torch.compile`, when asked for.

`FastPath` is what conf/fastpath/*.yaml configures; conf/fastpath/off.yaml trains through the plain
`MLPClassifier` and `MNISTDataModule` of `mlplab.core`, one Lightning batch per optimizer step.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import pytorch_lightning as pl
import torch

from mlplab.core.classifier import MLPClassifier
from mlplab.core.data import MNISTDataModule
from mlplab.errors import ConfigError
from mlplab.fastpath.batches import ChunkedMNIST
from mlplab.fastpath.progress import StepProgressBar
from mlplab.fastpath.steps import FastClassifier

SETTINGS = ("chunk", "cuda_graph", "compile")
# What a resumed run may change: the speed, never the numbers (torch.compile may change the last bits).
RESUMABLE = ("chunk", "cuda_graph")
# Where configs kept these settings before the fast path had a group of its own.
EARLIER_KEYS = ("data.chunk", "model.cuda_graph", "model.compile")


def _flag(name: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"fastpath.{name}={value!r} must be true or false.")
    return value


@dataclass(frozen=True)
class FastPath:
    """How training steps run. `chunk`: batches per Lightning batch (1: one, as Lightning does);
    `cuda_graph`: replay each step from a CUDA graph on one CUDA device; `compile`: torch.compile."""

    chunk: int = 1
    cuda_graph: bool = False
    compile: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.chunk, bool) or not isinstance(self.chunk, int) or self.chunk < 1:
            raise ConfigError(f"fastpath.chunk={self.chunk!r} must be a whole number of batches, 1 or more "
                              "(1: one optimizer step per Lightning batch).")
        _flag("cuda_graph", self.cuda_graph)
        _flag("compile", self.compile)

    @property
    def plain(self) -> bool:
        """Whether Lightning's own one-batch-one-step loop runs, through mlplab.core's classes."""
        return self.chunk == 1 and not self.cuda_graph

    def module_class(self) -> type[MLPClassifier]:
        return MLPClassifier if self.plain else FastClassifier

    def datamodule_class(self) -> type[MNISTDataModule]:
        return MNISTDataModule if self.plain else ChunkedMNIST

    # The fast classes get their settings as attributes, not hyperparameters: no checkpoint's
    # numbers depend on them, and a resumed run may change them.
    def attach_module(self, module: MLPClassifier) -> None:
        if isinstance(module, FastClassifier):
            module.graph_requested = self.cuda_graph and not self.compile

    def attach_datamodule(self, datamodule: MNISTDataModule) -> None:
        if isinstance(datamodule, ChunkedMNIST):
            datamodule.chunk = self.chunk

    def check_validation_interval(self, interval: int | float) -> None:
        """Refuse a `val_check_interval` within the epoch: Lightning would count it in chunks."""
        if self.chunk > 1:
            raise ConfigError(
                f"trainer.val_check_interval={interval} counts Lightning batches, which hold fastpath.chunk="
                f"{self.chunk} batches each: validate once per epoch (check_val_every_n_epoch), or set "
                "fastpath.chunk=1.")

    def train_batch_rows(self, batch_size: int, epoch_batches: int) -> int:
        """Images gathered per Lightning training batch (what the memory estimate weighs): a chunk
        never holds more than the epoch."""
        return batch_size * min(self.chunk, epoch_batches)

    def callbacks(self, interactive: bool) -> list[pl.Callback]:
        return [StepProgressBar()] if interactive else []

    def quiet_lightning(self) -> None:
        if self.chunk > 1:
            # Lightning compares its count of chunks with the logging interval, which counts steps.
            warnings.filterwarnings("ignore", message=r"The number of training batches .* is smaller than the logging")

    def prepared(self, module: MLPClassifier) -> pl.LightningModule:
        """What trainer.fit gets: the module, compiled when asked."""
        return torch.compile(module) if self.compile else module
