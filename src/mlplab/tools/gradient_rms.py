"""The gradient figure's numbers: each Linear layer's weight-gradient RMS as `GradientNorms` logged it
in a run's csv/metrics.csv, and the measures of it the figure's text is written from (how far the input
layer's is below the output layer's, how long it rises layer by layer from input to output).
"""

from __future__ import annotations

import csv
import math
import re
from dataclasses import dataclass
from pathlib import Path

from mlplab.errors import UserError
from mlplab.run.records import METRICS_CSV

INTERVAL_COLUMN = re.compile(r"grad_rms_interval/linear(\d+)")
EPOCH_COLUMN = re.compile(r"grad_rms/linear(\d+)")


@dataclass(frozen=True)
class GradientRMS:
    """One run's weight-gradient RMS per Linear layer (0 = the input side), as GradientNorms logged it."""
    steps: list[int]                     # the last optimizer step of each logging interval
    by_interval: dict[int, list[float]]  # layer -> mean RMS over each interval
    epochs: list[int]                    # from 1
    epoch_ends: list[int]                # each epoch's last interval step (to one logging interval)
    by_epoch: dict[int, list[float]]     # layer -> mean RMS over each epoch


def logged_columns(path: Path, column: re.Pattern[str], index: str) -> tuple[list[int], dict[int, list[float]]]:
    """The columns of csv/metrics.csv that `column` matches, by their layer number, and the `index` column
    ("step" or "epoch"), in the rows that hold them (Lightning writes sparse rows: a metric's cells
    are empty in the rows of other metrics)."""
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        names = {int(match.group(1)): name for name in reader.fieldnames or [] if (match := column.fullmatch(name))}
        if not names:
            raise UserError(f"{path} has no {column.pattern} columns; train the run with this version's callbacks")
        rows = [row for row in reader if row[names[min(names)]]]
    return ([int(float(row[index])) for row in rows],
            {layer: [float(row[name]) for row in rows] for layer, name in sorted(names.items())})


def gradient_rms(run_dir: Path) -> GradientRMS:
    """The run's `grad_rms_interval/linear{i}` and `grad_rms/linear{i}`, from its csv/metrics.csv."""
    path = run_dir / METRICS_CSV
    if not path.is_file():
        raise UserError(f"{run_dir}: no csv/metrics.csv; train with logger=csv or logger=default")
    steps, by_interval = logged_columns(path, INTERVAL_COLUMN, "step")
    interval_epochs, _ = logged_columns(path, INTERVAL_COLUMN, "epoch")
    epochs, by_epoch = logged_columns(path, EPOCH_COLUMN, "epoch")
    # An epoch ends at the step where its last logging interval ends.
    last_steps = dict(zip(interval_epochs, steps))  # rows in step order: each epoch's last interval wins
    epoch_ends = [last_steps[epoch] for epoch in epochs if epoch in last_steps]
    return GradientRMS(steps, by_interval, [epoch + 1 for epoch in epochs], epoch_ends, by_epoch)


def first_to_last_ratio(by_layer: dict[int, list[float]], index: int = -1) -> float:
    """The first Linear layer's gradient RMS over the last one's, at one interval or epoch (the last by default)."""
    return by_layer[min(by_layer)][index] / by_layer[max(by_layer)][index]


def profile(by_layer: dict[int, list[float]], index: int) -> list[float]:
    """Every layer's RMS at one interval or epoch, input side first."""
    return [values[index] for _, values in sorted(by_layer.items())]


def layer_factors(values: list[float]) -> list[float]:
    """Each layer's RMS over the one below it (input side first): above 1 where it rises towards the output."""
    return [upper / lower if lower else math.inf for lower, upper in zip(values, values[1:])]


def rising_until(gradients: GradientRMS) -> int | None:
    """How long the profile of a vanishing gradient lasts: the last step of the unbroken run of intervals,
    from the first, in which the RMS rises layer by layer from input to output (each layer's below the
    next one's). None when the first interval does not rise so."""
    last = None
    for position, step in enumerate(gradients.steps):
        values = profile(gradients.by_interval, position)
        if not all(lower < upper for lower, upper in zip(values, values[1:])):
            break
        last = step
    return last


def gradient_summary(label: str, gradients: GradientRMS, accuracy: float | None) -> str:
    """One line of numbers: the input / output layer RMS ratio first and per epoch, how long it rises layer by layer."""
    first, last = min(gradients.by_interval), max(gradients.by_interval)
    rising = rising_until(gradients)
    rising = (f"never (not in steps 1-{gradients.steps[0]})" if rising is None else
              "in every interval" if rising == gradients.steps[-1] else f"through step {rising}, then not")
    per_epoch = ", ".join(f"{first_to_last_ratio(gradients.by_epoch, index):.3g}"
                          for index in range(len(gradients.epochs)))
    accuracy = f"; test accuracy {accuracy:.2%}" if accuracy is not None else ""
    return (f"{label}: linear{first} / linear{last} RMS {first_to_last_ratio(gradients.by_interval, 0):.3g} in "
            f"steps 1-{gradients.steps[0]}; the same ratio of the epoch means, epochs {gradients.epochs[0]}-"
            f"{gradients.epochs[-1]}: {per_epoch}; RMS rising layer by layer from input to output {rising}{accuracy}")
