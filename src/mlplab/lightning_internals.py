"""The only module that touches Lightning's private names.

The fast path takes several optimizer steps per Lightning batch and may replay them from a CUDA
graph, and a resumed run continues its CSV curves; Lightning has no public API for any of this. Each
name below is pinned by tests/test_lightning_internals.py, which fails if a Lightning release
changes it, and pyproject.toml caps pytorch-lightning at the minor version those tests pass on.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import pytorch_lightning as pl
from pytorch_lightning.core.optimizer import LightningOptimizer
from pytorch_lightning.trainer import call

Result = TypeVar("Result")

# Where a checkpoint keeps the count of batches that stepped, which Lightning logs epoch-level values at.
FIT_LOOP_KEY, EPOCH_LOOP_KEY, STEPPED_KEY = "fit_loop", "epoch_loop.state_dict", "_batches_that_stepped"


def count_extra_steps(trainer: pl.Trainer, steps: int) -> None:
    """Tell Lightning that the batch it is running took `steps` optimizer steps, not one.

    Lightning logs epoch-level values at its count of batches that stepped, which it raises by one
    after each batch; raised here by the rest, every row of the logs counts optimizer steps.
    """
    trainer.fit_loop.epoch_loop._batches_that_stepped += steps - 1


def logged_step(checkpoint: Mapping[str, Any]) -> int:
    """The step a checkpoint's run had logged its last rows at (its global step where it has no loops)."""
    loops = checkpoint.get("loops", {}).get(FIT_LOOP_KEY, {})
    return int(loops.get(EPOCH_LOOP_KEY, {}).get(STEPPED_KEY, checkpoint.get("global_step", 0)))


def step_outside_lightning(trainer: pl.Trainer, optimizer: LightningOptimizer, step: Callable[[], Result]) -> Result:
    """Run `step`, which updates the raw optimizer itself (a replayed CUDA graph), with the step
    counting and the `on_before_optimizer_step` callbacks Lightning's `optimizer.step()` would run."""
    optimizer._on_before_step()
    result = step()
    call._call_callback_hooks(trainer, "on_before_optimizer_step", optimizer.optimizer)
    optimizer._on_after_step()
    return result


def continue_csv_columns(writer: Any, columns: list[str]) -> list[str]:
    """Make Lightning's CSV writer (a fresh one) treat `columns` as the columns already in its file,
    so that it appends to rows written back there instead of starting a file of its own columns."""
    # The writer keeps its columns sorted; the file gets the same order.
    writer.metrics_keys = sorted(columns)
    return writer.metrics_keys


def checkpoint_contents(trainer: pl.Trainer) -> dict[str, Any]:
    """What `trainer.save_checkpoint` would write now, in memory (a pack cuts it into its members')."""
    return trainer._checkpoint_connector.dump_checkpoint(weights_only=False)
