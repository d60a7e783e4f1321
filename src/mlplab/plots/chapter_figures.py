"""The textbook chapter's figures: activations and their derivatives, repeated sigmoid, which
axis each norm normalizes, and per-layer gradients over training."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence

import matplotlib
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from torch import nn

from mlplab.plots import new_figure


def value_and_derivative(function: Callable[[torch.Tensor], torch.Tensor],
                         x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """f(x) and f'(x) by autograd, elementwise."""
    x = x.detach().clone().requires_grad_(True)
    value = function(x)
    (derivative,) = torch.autograd.grad(value.sum(), x)
    return value.detach(), derivative.detach()


def sigmoid_fixed_point(sigmoid: Callable[[torch.Tensor], torch.Tensor], tolerance: float = 1e-12) -> float:
    """x* with sigmoid(x*) = x*, by iterating from 0 (sigmoid is a contraction: |sigmoid'| <= 1/4)."""
    x = torch.tensor(0.0, dtype=torch.float64)
    for _ in range(200):
        following = sigmoid(x)
        if abs(float(following - x)) < tolerance:
            break
        x = following
    return float(x)


def activations_figure(activations: Mapping[str, nn.Module], x_limit: float = 5.0) -> Figure:
    """One panel per activation: f(x) and f'(x) on [-x_limit, x_limit]."""
    names = list(activations)
    columns = min(5, len(names))
    rows = math.ceil(len(names) / columns)
    figure = new_figure(3.2 * columns, 2.8 * rows + 0.4)
    axes = figure.subplots(rows, columns, sharex=True, squeeze=False).ravel()
    x = torch.linspace(-x_limit, x_limit, 1001)
    for axis, name in zip(axes, names):
        activation = activations[name]
        value, derivative = value_and_derivative(activation, x)
        axis.axhline(0, color="0.7", linewidth=0.8)
        axis.axvline(0, color="0.7", linewidth=0.8)
        axis.plot(x, value, label="f(x)", linewidth=2)
        axis.plot(x, derivative, label="f'(x)", linewidth=1.5, linestyle="--")
        axis.set_title(f"{name}: {type(activation).__name__}", fontsize=11)
        axis.set_ylim(-2.0, 3.0)  # one range for all panels, so slopes and kinks compare at a glance
        axis.grid(alpha=0.3)
    for axis in axes[len(names):]:
        axis.set_visible(False)
    for axis in axes[-columns:]:
        axis.set_xlabel("x")
    axes[0].legend(loc="upper left", fontsize=9)
    figure.suptitle("Activations of conf/activation and their derivatives (autograd), y clipped to [-2, 3]; "
                    "prelu and swish at their initial parameters", fontsize=12)
    return figure


def sigmoid_squashing_figure(sigmoid: nn.Module, starts: Sequence[float] = (-10.0, -5.0, -2.0, 0.0, 2.0, 5.0, 10.0),
                             iterations: int = 10) -> Figure:
    """Left: sigma, sigma∘sigma, sigma∘sigma∘sigma. Right: sigma(x0), sigma(sigma(x0)), ... for each start x0."""
    fixed_point = sigmoid_fixed_point(sigmoid)
    figure = new_figure(12, 4.6)
    compositions, iterates = figure.subplots(1, 2)

    x = torch.linspace(-10, 10, 801)
    value = x
    for depth in range(1, 4):
        value = sigmoid(value)
        compositions.plot(x, value, linewidth=2, label=" ∘ ".join(["σ"] * depth) + "(x)")
    compositions.axhline(fixed_point, color="black", linestyle=":", label=f"fixed point σ(x) = x: {fixed_point:.4f}")
    compositions.set_xlabel("x")
    compositions.set_ylabel("output")
    compositions.set_title("Each sigmoid squashes the range further")
    compositions.legend(loc="upper left", fontsize=9)
    compositions.grid(alpha=0.3)

    # From the first sigmoid on: sigma(x0) is already in (0, 1), so all starts share one readable scale.
    steps = range(1, iterations + 1)
    for start in starts:
        value = torch.tensor(start, dtype=torch.float64)
        trajectory = []
        for _ in steps:
            value = sigmoid(value)
            trajectory.append(float(value))
        iterates.plot(steps, trajectory, marker="o", markersize=3, label=f"x₀ = {start:g}")
    iterates.axhline(fixed_point, color="black", linestyle=":")
    iterates.set_ylim(-0.02, 1.02)
    iterates.set_xticks(list(steps))
    iterates.set_xlabel("number of sigmoids applied to x₀")
    iterates.set_ylabel("value")
    iterates.set_title(f"Repeated sigmoid forgets its input: every start ends at {fixed_point:.4f}")
    iterates.legend(loc="lower right", fontsize=8, ncols=2)
    iterates.grid(alpha=0.3)
    return figure


def _heat_map(axis: Axes, matrix: torch.Tensor, title: str, limit: float) -> None:
    axis.imshow(matrix.numpy(), cmap="RdBu_r", vmin=-limit, vmax=limit)
    for row, values in enumerate(matrix.tolist()):
        for column, value in enumerate(values):
            # White on the darkest cells, where black would not be readable.
            colour = "white" if abs(value) > 0.7 * limit else "black"
            axis.text(column, row, f"{value:.1f}", ha="center", va="center", fontsize=7, color=colour)
    axis.set_xticks(range(matrix.shape[1]))
    axis.set_yticks(range(matrix.shape[0]))
    axis.set_xlabel("unit")
    axis.set_ylabel("sample in the batch")
    axis.set_title(title, fontsize=10)


def _outline_group(axis: Axes, shape: tuple[int, int], over: str) -> None:
    """Outline one group normalized together (a column for `over="batch"`, a row for "units")."""
    batch, units = shape
    size = (1, batch) if over == "batch" else (units, 1)
    axis.add_patch(Rectangle((-0.5, -0.5), *size, fill=False, edgecolor="black", linewidth=3))


def norm_axes_figure(norms: Mapping[str, Callable[[int], nn.Module]], batch: int = 6, units: int = 8,
                     seed: int = 0) -> Figure:
    """A batch x units matrix and its batch, layer and RMS norm (`norms` with keys batch, layer, rms).

    The input gets a different offset per unit (positive on average) and a different scale per
    sample, so each output shows what its layer removes: batch norm evens out the columns, layer
    norm the rows, and RMS norm rescales the rows but leaves them off-centre (mostly red).
    """
    generator = torch.Generator().manual_seed(seed)
    unit_offsets = torch.linspace(-2, 4, units)
    sample_scales = torch.linspace(0.5, 3, batch)
    inputs = torch.randn(batch, units, generator=generator) * sample_scales[:, None] + unit_offsets[None, :]

    panels: list[tuple[str, torch.Tensor, str | None]] = [("input: offset per unit, scale per sample", inputs, None)]
    with torch.no_grad():
        for name, over in (("batch", "batch"), ("layer", "units"), ("rms", "units")):
            output = norms[name](units).train()(inputs)  # batch norm uses batch statistics only in training
            groups = output if over == "batch" else output.T  # one group per column
            # Rounded first, so that float noise of -1e-8 does not print as "-0.00".
            means = [round(float(mean), 2) + 0.0 for mean in groups.mean(0)]
            # RMS norm fixes the root mean square, the other two the standard deviation.
            spread_name, spread = ("RMS", groups.pow(2).mean(0).sqrt()) if name == "rms" else \
                ("std", groups.std(0, unbiased=False))
            where = "each column (over the batch)" if over == "batch" else "each row (over the units)"
            panels.append((f"{name} norm: {where}\nmeans {min(means):.2f}..{max(means):.2f}, "
                           f"{spread_name} {spread.min():.2f}..{spread.max():.2f}", output, over))

    figure = new_figure(4.4 * len(panels), 4.3)
    for axis, (title, matrix, over) in zip(figure.subplots(1, len(panels)), panels):
        # One colour scale for the outputs, which are all about unit-sized; the input keeps its own.
        _heat_map(axis, matrix, title, float(inputs.abs().max()) if over is None else 2.5)
        if over is not None:
            _outline_group(axis, tuple(matrix.shape), over)
    figure.suptitle("Which axis each norm normalizes (black box: one group normalized together; "
                    "conf/norm layers in training mode)", fontsize=12)
    return figure


def gradient_rms_figure(runs: Mapping[str, tuple[Sequence[int], Mapping[int, Sequence[float]]]],
                        epoch_ends: Sequence[int] = ()) -> Figure:
    """Per run (label -> (steps, {layer: values})): each Linear layer's gradient RMS per interval of
    optimizer steps, on shared log scales; and a last panel with the first / last layer ratio of every run.

    Log steps, so that the first hundred steps, where a sigmoid net's gradients change most, are as
    wide as the last thousand. `epoch_ends`: the steps at which epochs ended, drawn as dotted lines.
    """
    columns = 2
    rows = math.ceil((len(runs) + 1) / columns)
    figure = new_figure(6.5 * columns, 4.4 * rows)
    axes = figure.subplots(rows, columns, sharex=True, squeeze=False).ravel()
    run_axes, ratio_axis = axes[: len(runs)], axes[len(runs)]
    for axis in axes[len(runs) + 1:]:
        axis.set_visible(False)
    for axis in run_axes[1:]:
        axis.sharey(run_axes[0])
    for axis, (label, (steps, by_layer)) in zip(run_axes, runs.items()):
        colours = matplotlib.colormaps["viridis"].resampled(len(by_layer))
        first, last = min(by_layer), max(by_layer)
        for position, (layer, values) in enumerate(sorted(by_layer.items())):
            role = " (input)" if layer == first else " (output)" if layer == last else ""
            axis.plot(steps, values, color=colours(position), linewidth=1.3, label=f"linear{layer}{role}")
        ratios = [low / high for low, high in zip(by_layer[first], by_layer[last])]
        axis.set_title(f"{label}\nlinear{first} / linear{last}: {ratios[0]:.2g} in steps 1-{steps[0]}, "
                       f"{ratios[-1]:.2g} in steps {steps[-2] + 1 if len(steps) > 1 else 1}-{steps[-1]}", fontsize=10)
        axis.set_ylabel("gradient RMS per weight")
        ratio_axis.plot(steps, ratios, linewidth=1.5, label=label)
    ratio_axis.axhline(1, color="0.5", linewidth=0.8)
    ratio_axis.set_title(f"input / output layer: linear{first} / linear{last} RMS", fontsize=10)
    ratio_axis.set_ylabel("ratio")
    ratio_axis.legend(fontsize=8, loc="upper left")
    run_axes[0].legend(fontsize=8, loc="lower right", ncols=2)
    for axis in axes[: len(runs) + 1]:
        axis.set_xscale("log")
        axis.set_yscale("log")
        for end in epoch_ends:
            axis.axvline(end, color="0.6", linestyle=":", linewidth=0.8)
        axis.grid(alpha=0.3, which="major")
    for axis in axes[-columns:]:
        axis.set_xlabel("optimizer step (dotted: end of an epoch)")
    figure.suptitle("Weight-gradient RMS, ||dL/dW|| / sqrt(entries), of each Linear layer: "
                    "the mean over each logging interval", fontsize=12)
    return figure
