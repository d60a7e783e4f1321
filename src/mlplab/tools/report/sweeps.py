"""The ranking a sweep asks for: the metric and goal of the sweep.yaml its launcher keeps in the
sweep dir, as the metrics.json key the runs record (val/acc is the best epoch's, val_acc_best).

`python -m mlplab.tools.report SWEEP_DIR` ranks by it unless --metric says otherwise.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from mlplab.tools.report.runs import read_yaml
from mlplab.tools.sweep.search import METRIC_KEYS

SWEEP_FILE = "sweep.yaml"  # written by mlplab.tools.sweep next to the trials


@dataclass(frozen=True)
class Ranking:
    """A metrics.json key, its direction, and where it came from (shown on the page)."""

    metric: str
    minimize: bool | None  # None: decided by the metric's name
    origin: str


def sweep_ranking(root: Path) -> Ranking | None:
    """The metric and goal of the sweep in `root`; None where root is no sweep dir or names none."""
    spec = read_yaml(root / SWEEP_FILE)
    metric = spec.get("metric") if isinstance(spec, dict) else None
    if not isinstance(metric, dict) or not isinstance(metric.get("name"), str):
        return None
    name, goal = metric["name"], metric.get("goal")
    minimize = {"minimize": True, "maximize": False}.get(goal)
    origin = f"the sweep's metric {name}" + (f", to {goal}" if minimize is not None else "")
    return Ranking(METRIC_KEYS.get(name, name), minimize, origin)


def default_ranking(roots: Sequence[Path], metric: str | None, minimize: bool | None) -> Ranking:
    """--metric and its direction when given, else the first sweep's among the roots, else test_acc."""
    if metric is not None:
        return Ranking(metric, minimize, f"--metric {metric}")
    for root in roots:
        if (ranking := sweep_ranking(root)) is not None:
            return Ranking(ranking.metric, ranking.minimize if minimize is None else minimize, ranking.origin)
    return Ranking("test_acc", minimize, "test_acc, the default (no sweep.yaml names a metric)")
