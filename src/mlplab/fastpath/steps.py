"""Several optimizer steps per Lightning batch, each possibly replayed from a CUDA graph.

`FastClassifier` is `MLPClassifier` with a training batch that is a list of batches (a chunk, see
`batches.py`): it takes one optimizer step per batch of the chunk, so global_step, logging intervals
and `max_steps` count optimizer steps exactly as the plain module's do. On one CUDA device, in full
precision, each step is replayed from a CUDA graph (`cuda_graph.py`).
"""

from __future__ import annotations

import inspect
from typing import Any

import torch

from mlplab.core.classifier import MLPClassifier, OptimizerFactory
from mlplab.fastpath.cuda_graph import GraphedStep
from mlplab.lightning_internals import count_extra_steps, step_outside_lightning


class FastClassifier(MLPClassifier):
    """MLPClassifier whose training batches are chunks of batches, each one optimizer step."""

    graph_requested = False  # set by FastPath.attach
    _graphed: GraphedStep | None = None

    def training_step(self, batch: list[tuple[torch.Tensor, torch.Tensor]], batch_idx: int) -> torch.Tensor | None:
        """One optimizer step per batch of the chunk; the steps' losses (the NaN guard reads them)."""
        losses = []
        for x, y in batch:
            if 0 <= self.trainer.max_steps <= self.global_step:  # max_steps counts optimizer steps
                break
            losses.append(self._one_step(x, y))
            self.count_step(y.shape[-1])
        count_extra_steps(self.trainer, len(losses))
        return torch.stack(losses) if losses else None

    def _one_step(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        optimizer = self.optimizers()
        if self._graphed is None:
            return self.optimizer_step_on(x, y, optimizer, self.manual_backward)
        # The graph runs the raw optimizer; Lightning's step count and hooks are kept around it, per step.
        key = tuple(group["lr"] for group in optimizer.param_groups)
        return step_outside_lightning(self.trainer, optimizer, lambda: self._graphed(x, y, key=key))

    def _captured_step(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.optimizer_step_on(x, y, self.optimizers().optimizer, torch.Tensor.backward)

    def uses_cuda_graph(self) -> bool:
        """Whether training steps are replayed from a CUDA graph: asked for, on one CUDA device, full precision."""
        trainer = self._trainer
        return (self.graph_requested and self.device.type == "cuda" and trainer is not None
                and trainer.world_size == 1 and trainer.precision == "32-true")

    def on_train_start(self) -> None:
        super().on_train_start()
        if self.uses_cuda_graph():
            # Dropout masks come from the members' own CUDA generators, which a graph must advance.
            self._graphed = GraphedStep(self._captured_step, generators=self.net.generators.on(self.device))
        else:
            self._graphed = None

    def optimizer_options(self, optimizer: OptimizerFactory) -> dict[str, Any]:
        options = super().optimizer_options(optimizer)
        takes = inspect.signature(getattr(optimizer, "func", optimizer)).parameters
        if self.uses_cuda_graph() and "capturable" in takes:
            options["capturable"] = True  # the step count stays on the GPU, where a graph can update it
        return options
