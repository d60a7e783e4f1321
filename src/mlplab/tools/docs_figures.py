"""The textbook chapter's figures, drawn with the project's own code: `python -m mlplab.tools.docs_figures`.

Writes PNGs into `docs/figures/` (or `--out`), and `PROVENANCE.md` beside them: the command, the git
commit and the training runs that made each figure, and the gradient figure's numbers. Each PNG
carries its command and commit in its metadata too.

- `activations.png`: every activation in conf/activation and its derivative (autograd).
- `sigmoid_squashing.png`: sigma, sigma∘sigma, sigma∘sigma∘sigma, and repeated sigma reaching its fixed point.
- `weights_reference.png`: the first-layer weights of a trained reference model (784-100-BN-ReLU-10).
- `gradient_norms.png`: the RMS per weight of each Linear layer's gradient over training, for
  deep_sigmoid with Adam, deep_sigmoid with SGD and deep_relu with Adam (one net, one init).
- `norm_axes.png`: which axis batch norm, layer norm and RMS norm normalize, on a small random matrix.

The first, second and last need no training (`draw_pure_figures`). The other two read run
directories written by `train.py` (`--reference-run`, `--sigmoid-run`, `--sigmoid-sgd-run`,
`--relu-run`); a run not given is trained here with `train.py ... trainer.max_epochs=N logger=csv`,
on MNIST from `MNIST_ROOT`, into a temporary folder that is kept and printed so that it can be
passed back in. Everything runs on one CPU thread (torch here, OMP_NUM_THREADS=1 in training):
sums over several threads add in another order, and the figures would change with the machine.
"""

from __future__ import annotations

import argparse
import csv
import os
import re
import shlex
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from hydra.utils import instantiate
from matplotlib.figure import Figure
from omegaconf import OmegaConf
from torch import nn

from mlplab.errors import UserError
from mlplab.run.overrides import readable_override
from mlplab.plots import DPI, chapter_figures as chapter, run_figures as run
from mlplab.run.records import (CHECKPOINTS_DIR, HYDRA_DIR, METRICS_CSV, METRICS_FILE, RUN_INFO_FILE, conf_dir,
                             project_root, read_json, write_text)
from mlplab.run.provenance import git_state

DEFAULT_EPOCHS = 5
THREADS = 1
PROVENANCE_FILE = "PROVENANCE.md"
COMMAND = "python -m mlplab.tools.docs_figures"


@dataclass(frozen=True)
class Training:
    """A run a figure needs: the `--NAME-run` flag that passes one in, and the train.py overrides that train it."""
    name: str
    overrides: tuple[str, ...]


REFERENCE = Training("reference", ("+experiment=seed_pytorch",))
# One net and one init (the experiments differ only in the activation; the SGD run only in the
# optimizer). The gradients are logged every 10 steps: the sigmoid's vanish in the first hundred.
GRADIENT_INTERVAL = 10
GRADIENT_RUNS = {
    "deep_sigmoid, Adam": Training("sigmoid", ("+experiment=deep_sigmoid",)),
    "deep_sigmoid, SGD": Training("sigmoid-sgd", ("+experiment=deep_sigmoid", "optimizer=sgd")),
    "deep_relu, Adam": Training("relu", ("+experiment=deep_relu",)),
}
# What gradient_norms.png shows, in words; tests/test_callbacks.py asserts the claims about the
# first 200 steps on the same runs, shortened.
GRADIENT_FINDINGS = """\
At the start, with either optimizer, each sigmoid layer's gradient RMS is more than 4x below the next
layer's (sigmoid' <= 1/4): the input layer gets a few millionths of the output layer's. Each ReLU
layer below the output one is within 3x of the next. With SGD the sigmoid's profile lasts through every
epoch and the net does not learn (test accuracy near 10 %). With Adam it lasts about a hundred
steps: then the input layer's RMS climbs more than a thousandfold within a hundred steps, it is no
longer the smallest, and by epoch 5 the input / output ratio is close to ReLU's. Epoch means hide
the vanishing phase (the sigmoid's ratio is about 1e-2 in epoch 1). Adam sizes each weight's step
by that weight's own gradient history, so the lower layers learn despite tiny gradients: the likely
cause, seen here only as the contrast with SGD (which also differs in learning rate and momentum).
The input layer's RMS also counts the weights of background pixels, 0 in most images and so without
gradient: part of why it sits below the hidden layers' in the ReLU net's first epochs too."""
# What the gradient runs must share for the figure to compare activations and optimizers alone.
SHARED_SETTINGS = ("model.hidden_sizes", "model.init", "norm._target_", "data.batch_size", "seed")
INTERVAL_COLUMN = re.compile(r"grad_rms_interval/linear(\d+)")
EPOCH_COLUMN = re.compile(r"grad_rms/linear(\d+)")


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


def pure_figures() -> dict[str, Figure]:
    """The figures that need no training, by file name: activations, sigmoid squashing, norm axes."""
    activations = {name: config_option("activation", name)() for name in option_names("activation")}
    norms = {name: config_option("norm", name) for name in ("batch", "layer", "rms")}
    return {
        "activations.png": chapter.activations_figure(activations),
        "sigmoid_squashing.png": chapter.sigmoid_squashing_figure(activations["sigmoid"]),
        "norm_axes.png": chapter.norm_axes_figure(norms),
    }


# ---------------------------------------------------------------- training runs

def train(training: Training, epochs: int, run_dir: Path) -> Path:
    """Run `train.py OVERRIDES` as a user would, on one thread, with the CSV logger only; return its run directory."""
    root = project_root()
    command = [sys.executable, str(root / "train.py"), *training.overrides, f"trainer.max_epochs={epochs}",
               f"trainer.log_every_n_steps={GRADIENT_INTERVAL}", "logger=csv", readable_override("hydra.run.dir", str(run_dir))]
    print(f"training {' '.join(training.overrides)} for {epochs} epochs -> {run_dir}", flush=True)
    environment = {**os.environ, "OMP_NUM_THREADS": str(THREADS), "MKL_NUM_THREADS": str(THREADS)}
    result = subprocess.run(command, cwd=root, env=environment, capture_output=True, text=True)
    if result.returncode != 0:
        tail = "\n".join((result.stderr or result.stdout).strip().splitlines()[-15:])
        raise UserError(f"training {training.name} failed (exit {result.returncode}): {' '.join(command)}\n{tail}")
    return run_dir


def run_command(run_dir: Path, trained_here: bool) -> str:
    """How a run was made: `train.py OVERRIDES` and its commit, from its run_info.json; its thread
    count where it was trained here (run_info.json does not record it)."""
    info = read_json(run_dir / RUN_INFO_FILE) or {}
    arguments = [argument for argument in info.get("command", [])[1:] if not argument.startswith("hydra.run.dir=")]
    if not arguments:
        return f"the run {run_dir} (no run_info.json: command unknown)"
    arguments[0] = Path(arguments[0]).name
    threads = f"OMP_NUM_THREADS={THREADS} " if trained_here else ""
    given = "" if trained_here else f" (given: {run_dir}; threads not recorded)"
    return f"`{threads}{shlex.join(arguments)}` at {describe_commit(info.get('git') or {})}{given}"


def describe_commit(git: dict[str, Any]) -> str:
    """"commit abc.. (clean)" or "... with uncommitted changes to its code or configs", from runinfo.git_state()."""
    commit = git.get("commit") or "unknown"
    return f"commit {commit}" + {True: " with uncommitted changes to its code or configs", False: " (clean)"}.get(
        git.get("dirty"), "")


def run_settings(run_dir: Path) -> dict[str, Any]:
    """The SHARED_SETTINGS of a run, from its .hydra/config.yaml."""
    path = run_dir / HYDRA_DIR / "config.yaml"
    if not path.is_file():
        raise UserError(f"{run_dir} has no {HYDRA_DIR}/config.yaml; pass a run directory that train.py wrote")
    config = OmegaConf.load(path)
    settings = {key: OmegaConf.select(config, key) for key in SHARED_SETTINGS}
    return {key: OmegaConf.to_container(value) if OmegaConf.is_config(value) else value
            for key, value in settings.items()}


def check_comparable(runs: dict[str, Path]) -> None:
    """The gradient runs share net, init, norm, batch size and seed: the figure compares activations and optimizers."""
    settings = {label: run_settings(run_dir) for label, run_dir in runs.items()}
    first_label, first = next(iter(settings.items()))
    for label, other in settings.items():
        for key in SHARED_SETTINGS:
            if other[key] != first[key]:
                raise UserError(f"the gradient runs differ in {key}: {first[key]!r} in {first_label} "
                                f"({runs[first_label]}), {other[key]!r} in {label} ({runs[label]}); train them "
                                f"with one {key} so that the figure compares the activations alone")


def load_last_checkpoint(run_dir: Path) -> dict[str, Any]:
    """`<run>/checkpoints/last.ckpt`, on the CPU."""
    path = run_dir / CHECKPOINTS_DIR / "last.ckpt"
    if not path.is_file():
        raise UserError(f"{run_dir} has no checkpoints/last.ckpt; pass a run directory that train.py wrote")
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    if "net.layers.0.weight" not in checkpoint["state_dict"]:
        raise UserError(f"{path} has no net.layers.0.weight; keys: {sorted(checkpoint['state_dict'])[:5]}...")
    return checkpoint


def test_accuracy(run_dir: Path) -> float | None:
    return (read_json(run_dir / METRICS_FILE) or {}).get("test_acc")


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
    accuracy = test_accuracy(run_dir)
    accuracy = f", test accuracy {accuracy:.2%}" if accuracy is not None else ""
    return run.weight_grid_figure(weight, title=f"first-layer weights of {architecture(checkpoint['hyper_parameters'])}"
                                                  f"\none 28x28 tile per hidden unit, after {epochs} epochs{accuracy}")


# ---------------------------------------------------------------- gradient RMS

@dataclass(frozen=True)
class GradientRMS:
    """One run's weight-gradient RMS per Linear layer (0 = the input side), as GradientNorms logged it."""
    steps: list[int]                     # the last optimizer step of each logging interval
    by_interval: dict[int, list[float]]  # layer -> mean RMS over each interval
    epochs: list[int]                    # from 1
    epoch_ends: list[int]                # each epoch's last interval step (to GRADIENT_INTERVAL steps)
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


def rising_until(gradients: GradientRMS) -> int | None:
    """How long the profile of a vanishing gradient lasts: the last step of the unbroken run of intervals,
    from the first, in which the RMS rises layer by layer from input to output (each layer's below the
    next one's). None when the first interval does not rise so."""
    last = None
    for position, step in enumerate(gradients.steps):
        profile = [values[position] for values in gradients.by_interval.values()]
        if not all(lower < upper for lower, upper in zip(profile, profile[1:])):
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


# ---------------------------------------------------------------- command line

def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=COMMAND, description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, help="folder for the PNGs (default docs/figures of the checkout)")
    parser.add_argument("--epochs", type=int, default=DEFAULT_EPOCHS,
                        help=f"epochs for the runs trained here (default {DEFAULT_EPOCHS})")
    for training in (REFERENCE, *GRADIENT_RUNS.values()):
        parser.add_argument(f"--{training.name}-run", type=Path,
                            help=f"a run directory of train.py {' '.join(training.overrides)} (default: train one)")
    args = parser.parse_args(argv)
    if args.epochs < 1:
        parser.error(f"--epochs={args.epochs} is not allowed: train at least 1 epoch")
    return args


def given_run(args: argparse.Namespace, training: Training) -> Path | None:
    return getattr(args, f"{training.name.replace('-', '_')}_run")


def save(figure: Figure, path: Path, made_by: str) -> Path:
    """Write the PNG with how it was made in its metadata (PNG text chunks "Source" and "Description")."""
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=DPI, metadata={"Source": made_by.splitlines()[0], "Description": made_by})
    return path


def provenance_text(command: str, commit: str, made: dict[str, str], summaries: Sequence[str]) -> str:
    lines = ["# How the figures in this folder were made", "",
             f"Written by `{command}` at {commit}, with {THREADS} CPU thread (torch and OMP_NUM_THREADS). "
             "Run the same command from the repository's root to make them again.", "",
             "| figure | made from |", "|---|---|"]
    lines += [f"| `{name}` | {source} |" for name, source in made.items()]
    lines += ["", "## gradient_norms.png in numbers", "",
              f"The gradient's RMS per weight, ||dL/dW|| / sqrt(entries), of each Linear layer (linear0 = the "
              f"input side), as `GradientNorms` logs it: the mean over every {GRADIENT_INTERVAL} optimizer steps "
              "and over every epoch.", ""]
    lines += [f"- {summary}" for summary in summaries]
    lines += ["", f"What the runs of the default {DEFAULT_EPOCHS} epochs show:", "", GRADIENT_FINDINGS]
    return "\n".join(lines) + "\n"


def runs_needed(args: argparse.Namespace) -> tuple[dict[str, tuple[Path, str]], Path | None]:
    """Each Training's run directory and how it was made (given, or trained here), and the folder of
    the runs trained here (None when every run was given)."""
    # Before any training: a mistyped run directory should cost no minutes.
    for training in (REFERENCE, *GRADIENT_RUNS.values()):
        given = given_run(args, training)
        if given is not None and not given.is_dir():
            raise UserError(f"--{training.name}-run={given} is not a directory; pass one that train.py wrote")
    runs, folder = {}, None
    for training in (REFERENCE, *GRADIENT_RUNS.values()):
        given = given_run(args, training)
        if given is not None:
            runs[training.name] = given.resolve(), run_command(given.resolve(), trained_here=False)
            continue
        if folder is None:  # made only when something is trained, and kept: its runs can be passed back in
            folder = Path(tempfile.mkdtemp(prefix="mlplab-figures-"))
        run_dir = train(training, args.epochs, folder / training.name)
        runs[training.name] = run_dir, run_command(run_dir, trained_here=True)
    return runs, folder


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(THREADS)
    command = shlex.join([*COMMAND.split(), *(sys.argv[1:] if argv is None else argv)])
    commit = describe_commit(git_state())
    made_by = f"{command} at {commit}"
    try:
        out = (args.out or project_root() / "docs" / "figures").resolve()
        # Every run before any figure: a failed run leaves the old figures alone, and the runs record
        # the checkout before its figures change (clean, where it was).
        runs, trained_folder = runs_needed(args)
        gradient_runs = {label: runs[training.name][0] for label, training in GRADIENT_RUNS.items()}
        check_comparable(gradient_runs)
        gradients = {label: gradient_rms(run_dir) for label, run_dir in gradient_runs.items()}
        summaries = [gradient_summary(label, gradients[label], test_accuracy(run_dir))
                     for label, run_dir in gradient_runs.items()]

        pure = pure_figures()
        made = dict.fromkeys(pure, "no training: conf/activation, conf/norm")
        written = [save(figure, out / name, made_by) for name, figure in pure.items()]
        reference, made["weights_reference.png"] = runs[REFERENCE.name]
        written.append(save(weights_figure(reference), out / "weights_reference.png",
                            f"{made_by}\nfrom the run {made['weights_reference.png']}"))
        made["gradient_norms.png"] = "<br>".join(f"{label}: {runs[training.name][1]}"
                                                 for label, training in GRADIENT_RUNS.items())
        figure = chapter.gradient_rms_figure(
            {label: (series.steps, series.by_interval) for label, series in gradients.items()},
            epoch_ends=next(iter(gradients.values())).epoch_ends)
        written.append(save(figure, out / "gradient_norms.png", "\n".join([made_by, *summaries])))
        provenance = write_text(out / PROVENANCE_FILE, provenance_text(command, commit, made, summaries))
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    for summary in summaries:
        print(summary)
    if trained_folder is not None:
        flags = " / ".join(f"--{training.name}-run" for training in (REFERENCE, *GRADIENT_RUNS.values()))
        print(f"trained runs kept in {trained_folder} (pass them back with {flags})")
    print(f"made by {made_by}")
    for path in written:
        print(f"{path}: {made.get(path.name, '').replace('<br>', '; ')}")
    print(provenance)
    return 0


if __name__ == "__main__":
    sys.exit(main())
