"""The curves each run logged to csv/metrics.csv, thinned for the page, and their mean over seeds.

Every numeric column but `epoch` and `step` is a curve (train/loss, val/acc, grad_rms/linear0,
activation/layer0/dead_frac, ...); test/* are one value at the end, shown in the runs table instead.
A curve logged once an epoch is drawn against the epoch, any other against the step. The page holds
at most `max_points` points per curve, so that 500 runs' curves open in a browser in seconds.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from mlplab.run.records import METRICS_CSV
from mlplab.tools.report import MAX_POINTS

X_COLUMNS = ("epoch", "step")
ONE_VALUE_PREFIXES = ("test/",)


@dataclass(frozen=True)
class Curve:
    """One logged metric of one run: y against x (`x_name` is epoch or step)."""

    x: np.ndarray
    y: np.ndarray
    x_name: str


def read_curves(run_dir: Path) -> dict[str, Curve]:
    """Every curve of the run's csv/metrics.csv; {} while it has none (not started, no CSV logger)."""
    try:
        logged = pd.read_csv(Path(run_dir) / METRICS_CSV)
    except (OSError, ValueError):  # missing, empty, or cut inside a line while the run writes it
        return {}
    if "step" not in logged:
        return {}
    logged = logged.apply(pd.to_numeric, errors="coerce")
    curves = {}
    for column in logged.columns:
        if column in X_COLUMNS or column.startswith(ONE_VALUE_PREFIXES):
            continue
        rows = logged[logged[column].notna() & logged["step"].notna()]
        if rows.empty:
            continue
        epochs = rows["epoch"] if "epoch" in rows else pd.Series(dtype=float)
        per_epoch = len(epochs) and epochs.notna().all() and epochs.is_unique
        x_name = "epoch" if per_epoch else "step"
        curves[column] = Curve(rows[x_name].to_numpy(float), rows[column].to_numpy(float), x_name)
    return curves


def thin(curve: Curve, max_points: int = MAX_POINTS) -> Curve:
    """At most `max_points` points, evenly spread, the first and the last kept."""
    if len(curve.x) <= max_points:
        return curve
    keep = np.unique(np.linspace(0, len(curve.x) - 1, max_points).round().astype(int))
    return Curve(curve.x[keep], curve.y[keep], curve.x_name)


@dataclass(frozen=True)
class Band:
    """A configuration's curve over its seeds: mean and std at each x that any member logged."""

    x: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    members: int
    x_name: str


def mean_band(curves: Sequence[Curve], max_points: int = MAX_POINTS) -> Band:
    """Mean ± std over the members at each x; where only some members reached an x (one still runs),
    over those. Thinned after averaging, so that the mean is that of the full curves."""
    series = [pd.Series(curve.y, index=curve.x).groupby(level=0).last() for curve in curves]
    table = pd.concat(series, axis=1).sort_index()
    mean, std = table.mean(axis=1), table.std(axis=1, ddof=1).fillna(0.0)
    x = table.index.to_numpy(float)
    keep = np.unique(np.linspace(0, len(x) - 1, min(len(x), max_points)).round().astype(int))
    return Band(x[keep], mean.to_numpy()[keep], std.to_numpy()[keep], len(curves), curves[0].x_name)


def metric_names(curves: Sequence[dict[str, Curve]]) -> list[str]:
    """Every metric any run logged, in a reading order: val/ and train/ first, then the rest by name."""
    names = {name for run in curves for name in run}
    return sorted(names, key=lambda name: (not name.startswith("val/"), not name.startswith("train/"), name))
