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
import re
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from hydra.utils import instantiate
from matplotlib.figure import Figure
from omegaconf import OmegaConf
from torch import nn

from mlplab import plots
from mlplab.plots import chapter, run
from mlplab.errors import UserError
from mlplab.runfiles import CHECKPOINTS_DIR, METRICS_CSV, METRICS_FILE, conf_dir, project_root, read_json

DEFAULT_EPOCHS = 5
# The experiments each figure needs when no run directory is given.
REFERENCE_EXPERIMENT = "seed_pytorch"
GRADIENT_EXPERIMENTS = {"sigmoid": "deep_sigmoid", "relu": "deep_relu"}
GRAD_NORM_COLUMN = re.compile(r"grad_norm/linear(\d+)")


# ---------------------------------------------------------------- the project's own building blocks

def config_option(group: str, name: str) -> Callable[..., nn.Module]:
    """The factory that `conf/<group>/<name>.yaml` builds (a partial, as the model receives it)."""
    path = conf_dir() / group / f"{name}.yaml"
    if not path.is_file():
        raise UserError(f"{group}={name!r} has no file {path}; the options are {option_names(group)}")
    return instantiate(OmegaConf.load(path))


def option_names(group: str) -> list[str]:
    """Every option of a config group, discovered from conf/<group>/*.yaml."""
    return sorted(path.stem for path in (conf_dir() / group).glob("*.yaml"))


def draw_pure_figures(out: Path) -> list[Path]:
    """The figures that need no training: activations, sigmoid squashing, norm axes."""
    activations = {name: config_option("activation", name)() for name in option_names("activation")}
    norms = {name: config_option("norm", name) for name in ("batch", "layer", "rms")}
    return [
        plots.save(chapter.activations_figure(activations), out / "activations.png"),
        plots.save(chapter.sigmoid_squashing_figure(activations["sigmoid"]), out / "sigmoid_squashing.png"),
        plots.save(chapter.norm_axes_figure(norms), out / "norm_axes.png"),
    ]


# ---------------------------------------------------------------- figures from training runs

def train(experiment: str, epochs: int, run_dir: Path) -> Path:
    """Run `train.py +experiment=NAME` as a user would, with the CSV logger only; return its run directory."""
    root = project_root()
    command = [sys.executable, str(root / "train.py"), f"+experiment={experiment}",
               f"trainer.max_epochs={epochs}", "logger=csv", f"hydra.run.dir={run_dir}"]
    print(f"training {experiment} for {epochs} epochs -> {run_dir}", flush=True)
    result = subprocess.run(command, cwd=root, capture_output=True, text=True)
    if result.returncode != 0:
        tail = "\n".join((result.stderr or result.stdout).strip().splitlines()[-15:])
        raise UserError(f"training {experiment} failed (exit {result.returncode}): {' '.join(command)}\n{tail}")
    return run_dir


def load_last_checkpoint(run_dir: Path) -> dict[str, Any]:
    """`<run>/checkpoints/last.ckpt`, on the CPU."""
    path = run_dir / CHECKPOINTS_DIR / "last.ckpt"
    if not path.is_file():
        raise UserError(f"{run_dir} has no checkpoints/last.ckpt; pass a run directory that train.py wrote")
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
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
    metrics = read_json(run_dir / METRICS_FILE) or {}
    accuracy = f", test accuracy {metrics['test_acc']:.2%}" if "test_acc" in metrics else ""
    return run.weight_grid_figure(weight, title=f"first-layer weights of {architecture(checkpoint['hyper_parameters'])}"
                                                  f"\none 28x28 tile per hidden unit, after {epochs} epochs{accuracy}")


def gradient_norms(run_dir: Path) -> tuple[list[int], dict[int, list[float]]]:
    """Epochs and `grad_norm/linear{i}` per Linear layer i, from the run's csv/metrics.csv (one row per epoch)."""
    path = run_dir / METRICS_CSV
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


# ---------------------------------------------------------------- command line

def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m mlplab.figures", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, help="folder for the PNGs (default docs/figures of the checkout)")
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
    created: list[Path] = []

    def runs_root() -> Path:
        # Made only when something is trained, and kept: its runs can be passed back in with --*-run.
        if not created:
            created.append(Path(tempfile.mkdtemp(prefix="mlplab-figures-")))
        return created[0]

    try:
        out = (args.out or project_root() / "docs" / "figures").resolve()
        # Before any drawing or training: a mistyped run directory should cost no minutes.
        for flag in ("reference_run", *(f"{kind}_run" for kind in GRADIENT_EXPERIMENTS)):
            given = getattr(args, flag)
            if given is not None and not given.is_dir():
                raise UserError(f"--{flag.replace('_', '-')}={given} is not a directory; pass one that train.py wrote")
        written = draw_pure_figures(out)
        reference = run_or_train(args.reference_run, REFERENCE_EXPERIMENT, args.epochs, runs_root)
        written.append(plots.save(weights_figure(reference), out / "weights_reference.png"))
        gradient_runs = {
            experiment: run_or_train(given, experiment, args.epochs, runs_root)
            for given, experiment in ((args.sigmoid_run, GRADIENT_EXPERIMENTS["sigmoid"]),
                                      (args.relu_run, GRADIENT_EXPERIMENTS["relu"]))
        }
        norms = {experiment: gradient_norms(run_dir) for experiment, run_dir in gradient_runs.items()}
        written.append(plots.save(chapter.gradient_norms_figure(norms), out / "gradient_norms.png"))
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    for experiment, (epochs, layer_norms) in norms.items():
        print(f"{experiment}: first / last layer gradient norm = {first_to_last_ratio(layer_norms, 0):.4g} in epoch "
              f"{epochs[0]}, {first_to_last_ratio(layer_norms):.4g} in epoch {epochs[-1]}")
    if created:
        print(f"trained runs kept in {created[0]} (pass them back with --reference-run / --sigmoid-run / --relu-run)")
    for path in written:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
