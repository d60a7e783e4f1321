"""The textbook chapter's figures, drawn with the project's own code: `python -m mlplab.figures`.

Writes PNGs into `docs/figures/` (or `--out`):

- `activations.png`: every activation in conf/activation and its derivative (autograd).
- `sigmoid_squashing.png`: sigma, sigma∘sigma, sigma∘sigma∘sigma, and repeated sigma reaching its fixed point.
- `weights_reference.png`: the first-layer weights of a trained reference model (784-100-BN-ReLU-10).
- `gradient_norms.png`: per-layer gradient norms over training, deep_sigmoid against deep_relu.
- `norm_axes.png`: which axis batch norm, layer norm and RMS norm normalize, on a small random matrix.

The first, second and last need no training (`draw_pure_figures`). The other two read run
directories written by `train.py` (`--reference-run`, `--sigmoid-run`, `--relu-run`); a run not
given is trained here with `train.py ... trainer.max_epochs=N logger=csv`, on MNIST from
`MNIST_ROOT`, into a temporary folder that is kept and printed so that it can be passed back in.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import matplotlib
import torch
from hydra.utils import instantiate
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from omegaconf import OmegaConf
from torch import nn

from mlplab.callbacks import weight_grid_figure
from mlplab.errors import UserError

REPO = Path(__file__).resolve().parents[2]
CONF = REPO / "conf"
DEFAULT_OUT = REPO / "docs" / "figures"
DEFAULT_EPOCHS = 5
DPI = 120
# The experiments each figure needs when no run directory is given.
REFERENCE_EXPERIMENT = "seed_pytorch"
GRADIENT_EXPERIMENTS = {"sigmoid": "deep_sigmoid", "relu": "deep_relu"}
GRAD_NORM_COLUMN = re.compile(r"grad_norm/linear(\d+)")


# ---------------------------------------------------------------- the project's own building blocks

def config_option(group: str, name: str) -> Callable[..., nn.Module]:
    """The factory that `conf/<group>/<name>.yaml` builds (a partial, as the model receives it)."""
    path = CONF / group / f"{name}.yaml"
    if not path.is_file():
        options = sorted(p.stem for p in (CONF / group).glob("*.yaml"))
        raise UserError(f"{group}={name!r} has no file {path}; the options are {options}")
    return instantiate(OmegaConf.load(path))


def activation_names() -> list[str]:
    """Every option of the activation group, discovered from conf/activation/*.yaml."""
    return sorted(path.stem for path in (CONF / "activation").glob("*.yaml"))


def value_and_derivative(function: Callable[[torch.Tensor], torch.Tensor],
                         x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """f(x) and f'(x) of an elementwise function; the derivative by autograd, not by a formula of ours."""
    x = x.detach().clone().requires_grad_(True)
    y = function(x)
    # Elementwise, so the gradient of the sum is the derivative at each point.
    (derivative,) = torch.autograd.grad(y.sum(), x)
    return y.detach(), derivative


def sigmoid_fixed_point(sigmoid: Callable[[torch.Tensor], torch.Tensor], tolerance: float = 1e-12) -> float:
    """The x with sigmoid(x) = x, by iterating sigmoid: a contraction, since sigmoid' <= 1/4."""
    x = torch.tensor(0.0, dtype=torch.float64)
    for _ in range(200):
        following = sigmoid(x)
        if abs(following - x) < tolerance:
            break
        x = following
    return float(x)


def _figure(width: float, height: float) -> Figure:
    # A Figure of its own rather than pyplot: no global backend and no figure registry to leak into.
    return Figure(figsize=(width, height), layout="constrained")


def save(figure: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=DPI)
    return path


# ---------------------------------------------------------------- figures that need no training

def activations_figure(x_limit: float = 5.0) -> Figure:
    """One panel per activation of conf/activation: f(x) and f'(x) on [-x_limit, x_limit].

    Learnable activations (prelu, swish) are drawn with the parameters they start training with.
    """
    names = activation_names()
    columns = min(5, len(names))
    rows = math.ceil(len(names) / columns)
    figure = _figure(3.2 * columns, 2.8 * rows + 0.4)
    axes = figure.subplots(rows, columns, sharex=True, squeeze=False).ravel()
    x = torch.linspace(-x_limit, x_limit, 1001)
    for axis, name in zip(axes, names):
        activation = config_option("activation", name)()
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


def sigmoid_squashing_figure(starts: Sequence[float] = (-10.0, -5.0, -2.0, 0.0, 2.0, 5.0, 10.0),
                             iterations: int = 10) -> Figure:
    """Left: sigma, sigma∘sigma, sigma∘sigma∘sigma. Right: sigma(x0), sigma(sigma(x0)), ... for each start x0."""
    sigmoid = config_option("activation", "sigmoid")()
    fixed_point = sigmoid_fixed_point(sigmoid)
    figure = _figure(12, 4.6)
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


def _mark_axis(axis: Axes, normalized: torch.Tensor, over: str) -> None:
    """Outline one group the layer normalizes together (a column for `over="batch"`, a row for "units")."""
    batch, units = normalized.shape
    if over == "batch":
        axis.add_patch(Rectangle((-0.5, -0.5), 1, batch, fill=False, edgecolor="black", linewidth=3))
    else:
        axis.add_patch(Rectangle((-0.5, -0.5), units, 1, fill=False, edgecolor="black", linewidth=3))


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


def norm_axes_figure(batch: int = 6, units: int = 8, seed: int = 0) -> Figure:
    """A batch x units matrix and its batch norm, layer norm and RMS norm, from conf/norm in training mode.

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
            layer = config_option("norm", name)(units).train()  # batch norm uses batch statistics only in training
            output = layer(inputs)
            groups = output if over == "batch" else output.T  # one group per column
            # Rounded first, so that float noise of -1e-8 does not print as "-0.00".
            means = [round(float(mean), 2) + 0.0 for mean in groups.mean(0)]
            # RMS norm fixes the root mean square, the other two the standard deviation.
            spread_name, spread = ("RMS", groups.pow(2).mean(0).sqrt()) if name == "rms" else \
                ("std", groups.std(0, unbiased=False))
            spread_text = f"{spread_name} {spread.min():.2f}..{spread.max():.2f}"
            where = "each column (over the batch)" if over == "batch" else "each row (over the units)"
            panels.append((f"{name} norm: {where}\nmeans {min(means):.2f}..{max(means):.2f}, {spread_text}",
                           output, over))

    figure = _figure(4.4 * len(panels), 4.3)
    for axis, (title, matrix, over) in zip(figure.subplots(1, len(panels)), panels):
        # One colour scale for the outputs, which are all about unit-sized; the input keeps its own.
        _heat_map(axis, matrix, title, float(inputs.abs().max()) if over is None else 2.5)
        if over is not None:
            _mark_axis(axis, matrix, over)
    figure.suptitle("Which axis each norm normalizes (black box: one group normalized together; "
                    "conf/norm layers in training mode)", fontsize=12)
    return figure


def draw_pure_figures(out: Path) -> list[Path]:
    """The figures that need no training: activations, sigmoid squashing, norm axes."""
    return [
        save(activations_figure(), out / "activations.png"),
        save(sigmoid_squashing_figure(), out / "sigmoid_squashing.png"),
        save(norm_axes_figure(), out / "norm_axes.png"),
    ]


# ---------------------------------------------------------------- figures from training runs

def train(experiment: str, epochs: int, run_dir: Path) -> Path:
    """Run `train.py +experiment=NAME` as a user would, with the CSV logger only; return its run directory."""
    command = [sys.executable, str(REPO / "train.py"), f"+experiment={experiment}",
               f"trainer.max_epochs={epochs}", "logger=csv", f"hydra.run.dir={run_dir}"]
    print(f"training {experiment} for {epochs} epochs -> {run_dir}", flush=True)
    result = subprocess.run(command, cwd=REPO, env=os.environ.copy(), capture_output=True, text=True)
    if result.returncode != 0:
        tail = "\n".join((result.stderr or result.stdout).strip().splitlines()[-15:])
        raise UserError(f"training {experiment} failed (exit {result.returncode}): {' '.join(command)}\n{tail}")
    return run_dir


def load_last_checkpoint(run_dir: Path) -> dict[str, Any]:
    """`<run>/checkpoints/last.ckpt`, on the CPU."""
    path = run_dir / "checkpoints" / "last.ckpt"
    if not path.is_file():
        raise UserError(f"{run_dir} has no checkpoints/last.ckpt; pass a run directory that train.py wrote")
    # weights_only=False: Lightning checkpoints hold the hyperparameters as plain Python objects.
    checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    if "net.layers.0.weight" not in checkpoint["state_dict"]:
        raise UserError(f"{path} has no net.layers.0.weight; keys: {sorted(checkpoint['state_dict'])[:5]}...")
    return checkpoint


def architecture(hyperparameters: dict[str, Any]) -> str:
    """E.g. "784-100-BatchNorm1d-ReLU-10", from the hyperparameters the module saved."""
    model = hyperparameters["model"]
    block = [hyperparameters[group]["_target_"].rsplit(".", 1)[-1] for group in ("norm", "activation")]
    block = [name for name in block if name != "Identity"]  # norm=none adds nothing to say
    sizes = [str(model["input_size"])]
    for width in model["hidden_sizes"]:
        sizes += [str(width), *block]
    return "-".join([*sizes, str(model["num_classes"])])


def weights_figure(run_dir: Path) -> Figure:
    """The project's weight grid of the run's first layer, titled with what the run is."""
    checkpoint = load_last_checkpoint(run_dir)
    weight, epochs = checkpoint["state_dict"]["net.layers.0.weight"], checkpoint["epoch"] + 1
    figure = weight_grid_figure(weight)
    metrics_path = run_dir / "metrics.json"
    accuracy = ""
    if metrics_path.is_file():
        accuracy = f", test accuracy {json.loads(metrics_path.read_text())['test_acc']:.2%}"
    figure.axes[0].set_title(f"first-layer weights of {architecture(checkpoint['hyper_parameters'])}"
                             f"\none 28x28 tile per hidden unit, after {epochs} epochs{accuracy}")
    return figure


def gradient_norms(run_dir: Path) -> tuple[list[int], dict[int, list[float]]]:
    """Epochs and `grad_norm/linear{i}` per Linear layer i, from the run's csv/metrics.csv (one row per epoch)."""
    path = run_dir / "csv" / "metrics.csv"
    if not path.is_file():
        raise UserError(f"{run_dir}: no csv/metrics.csv; train with logger=csv or logger=default")
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        layers = sorted(int(m.group(1)) for name in reader.fieldnames or [] if (m := GRAD_NORM_COLUMN.fullmatch(name)))
        if not layers:
            raise UserError(f"{path} has no grad_norm/linear* columns; was the run trained with mlplab's callbacks?")
        # Lightning writes sparse rows: the per-epoch gradient norms share a row with other epoch metrics only.
        rows = [row for row in reader if row[f"grad_norm/linear{layers[0]}"]]
    epochs = [int(row["epoch"]) + 1 for row in rows]
    return epochs, {layer: [float(row[f"grad_norm/linear{layer}"]) for row in rows] for layer in layers}


def first_to_last_ratio(norms: dict[int, list[float]], epoch_index: int = -1) -> float:
    """Gradient norm of the first Linear layer over that of the last, in one epoch (the last by default)."""
    return norms[min(norms)][epoch_index] / norms[max(norms)][epoch_index]


def gradient_norms_figure(runs: dict[str, Path]) -> Figure:
    """One panel per run: each Linear layer's mean weight-gradient norm per epoch, on a shared log scale."""
    figure = _figure(6 * len(runs), 4.8)
    axes = figure.subplots(1, len(runs), sharey=True, squeeze=False)[0]
    for axis, (label, run_dir) in zip(axes, runs.items()):
        epochs, norms = gradient_norms(run_dir)
        colours = matplotlib.colormaps["viridis"].resampled(len(norms))
        for position, (layer, values) in enumerate(norms.items()):
            role = " (input)" if layer == min(norms) else " (output)" if layer == max(norms) else ""
            axis.plot(epochs, values, marker="o", color=colours(position), label=f"linear{layer}{role}")
        axis.set_yscale("log")
        axis.set_xlabel("epoch")
        axis.set_xticks(epochs)
        axis.set_title(f"{label}: linear{min(norms)} / linear{max(norms)} = {first_to_last_ratio(norms, 0):.3g} "
                       f"in epoch {epochs[0]}, {first_to_last_ratio(norms):.3g} in epoch {epochs[-1]}", fontsize=11)
        axis.grid(alpha=0.3, which="both")
        axis.legend(fontsize=8, loc="best")
    axes[0].set_ylabel("mean ||dL/dW|| per epoch (log scale)")
    figure.suptitle("Vanishing gradients: each Linear layer's mean weight-gradient norm per epoch", fontsize=12)
    return figure


# ---------------------------------------------------------------- command line

def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m mlplab.figures", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"folder for the PNGs (default {DEFAULT_OUT})")
    parser.add_argument("--epochs", type=int, default=DEFAULT_EPOCHS,
                        help=f"epochs for the runs trained here (default {DEFAULT_EPOCHS})")
    parser.add_argument("--reference-run", type=Path,
                        help=f"a run directory of +experiment={REFERENCE_EXPERIMENT} (default: train one)")
    for kind, experiment in GRADIENT_EXPERIMENTS.items():
        parser.add_argument(f"--{kind}-run", type=Path,
                            help=f"a run directory of +experiment={experiment} (default: train one)")
    args = parser.parse_args(argv)
    if args.epochs < 1:
        parser.error(f"--epochs={args.epochs} is not allowed: train at least 1 epoch")
    return args


def run_or_train(given: Path | None, experiment: str, epochs: int, runs_root: Callable[[], Path]) -> Path:
    return given.resolve() if given is not None else train(experiment, epochs, runs_root() / experiment)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    out = args.out.resolve()
    created: list[Path] = []

    def runs_root() -> Path:
        # Made only when something is trained, and kept: its runs can be passed back in with --*-run.
        if not created:
            created.append(Path(tempfile.mkdtemp(prefix="mlplab-figures-")))
        return created[0]

    try:
        # Before any drawing or training: a mistyped run directory should cost no minutes.
        for flag in ("reference_run", *(f"{kind}_run" for kind in GRADIENT_EXPERIMENTS)):
            given = getattr(args, flag)
            if given is not None and not given.is_dir():
                raise UserError(f"--{flag.replace('_', '-')}={given} is not a directory; pass one that train.py wrote")
        written = draw_pure_figures(out)
        reference = run_or_train(args.reference_run, REFERENCE_EXPERIMENT, args.epochs, runs_root)
        written.append(save(weights_figure(reference), out / "weights_reference.png"))
        gradient_runs = {
            experiment: run_or_train(given, experiment, args.epochs, runs_root)
            for given, experiment in ((args.sigmoid_run, GRADIENT_EXPERIMENTS["sigmoid"]),
                                      (args.relu_run, GRADIENT_EXPERIMENTS["relu"]))
        }
        written.append(save(gradient_norms_figure(gradient_runs), out / "gradient_norms.png"))
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    for experiment, run_dir in gradient_runs.items():
        epochs, norms = gradient_norms(run_dir)
        print(f"{experiment}: first / last layer gradient norm = {first_to_last_ratio(norms, 0):.4g} in epoch "
              f"{epochs[0]}, {first_to_last_ratio(norms):.4g} in epoch {epochs[-1]}")
    if created:
        print(f"trained runs kept in {created[0]} (pass them back with --reference-run / --sigmoid-run / --relu-run)")
    for path in written:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
