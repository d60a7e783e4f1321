"""The report's charts: a metric against each swept value, and learning curves."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import matplotlib
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from mlplab.plots import new_figure


def _percent_axis(axis: Axes, metric: str) -> None:
    if "acc" in metric:
        axis.yaxis.set_major_formatter(matplotlib.ticker.PercentFormatter(xmax=1.0))


def parameter_figure(key: str, metric: str, labels: Sequence[str], scores: Sequence[Sequence[float]]) -> Figure:
    """The metric by value of one swept parameter (`labels[i]` scored `scores[i]`, one per run):
    each run a dot, mean ± std as a black bar."""
    figure = new_figure(max(4.0, 1.0 + 0.9 * len(labels)), 3.2)
    axis = figure.add_subplot()
    for position, values in enumerate(scores):
        if not values:
            continue
        # Spread the dots sideways so that runs with equal scores stay visible.
        offsets = [0.0] if len(values) == 1 else [-0.15 + 0.3 * i / (len(values) - 1) for i in range(len(values))]
        axis.scatter([position + offset for offset in offsets], values, s=18, color="tab:blue", alpha=0.7, zorder=2)
        mean = sum(values) / len(values)
        spread = math.sqrt(sum((value - mean) ** 2 for value in values) / (len(values) - 1)) if len(values) > 1 else 0.0
        axis.errorbar([position], [mean], yerr=[spread], fmt="_", markersize=22, color="black", capsize=6, zorder=3)
    axis.set_xticks(range(len(labels)), labels, rotation=30 if len(labels) > 5 else 0)
    axis.set_xlim(-0.6, len(labels) - 0.4)
    axis.set(xlabel=key, ylabel=metric)
    axis.set_title(f"{metric} by {key}\n(dots: runs; bar: mean ± std)", fontsize=9)
    axis.grid(axis="y", alpha=0.3)
    _percent_axis(axis, metric)
    return figure


def learning_curves_figure(curves: Sequence[Mapping[str, Sequence[tuple[float, float]]]], labels: Sequence[str],
                           groups: Sequence[str]) -> Figure:
    """val/acc per epoch and train/loss per step, one line per run, side by side.

    Runs of one configuration (`groups[i]`) share a colour; its seeds differ in line style.
    """
    figure = new_figure(12, 4)
    val_axis, loss_axis = figure.subplots(1, 2)
    colours: dict[str, str] = {}
    seen: dict[str, int] = {}
    for run_curves, label, group in zip(curves, labels, groups):
        colour = colours.setdefault(group, f"C{len(colours) % 10}")
        style = ("-", "--", ":", "-.")[seen.get(group, 0) % 4]
        seen[group] = seen.get(group, 0) + 1
        for axis, name in ((val_axis, "val/acc"), (loss_axis, "train/loss")):
            points = run_curves.get(name) or []
            if points:
                xs, ys = zip(*points)
                axis.plot(xs, ys, color=colour, linestyle=style, marker="o" if len(points) < 20 else None,
                          markersize=3, label=label)
    val_axis.set(xlabel="epoch", ylabel="val/acc", title="validation accuracy per epoch")
    loss_axis.set(xlabel="step", ylabel="train/loss", title="training loss")
    _percent_axis(val_axis, "val/acc")
    for axis in (val_axis, loss_axis):
        axis.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
        axis.grid(alpha=0.3)
    # Beyond 20 runs a legend hides more than it tells.
    if 0 < len(loss_axis.get_lines()) <= 20:
        # Outside the axes and inside the figure, so that the constrained layout makes room for it.
        figure.legend(*loss_axis.get_legend_handles_labels(), loc="outside right upper", fontsize=7, frameon=False)
    return figure
