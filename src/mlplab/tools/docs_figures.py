"""The textbook chapter's figures, drawn with the project's own code: `python -m mlplab.tools.docs_figures`.

Writes PNGs into `docs/figures/` (or `--out`), and `PROVENANCE.md` beside them: the command, the git
commit and the training runs that made each figure, and the gradient figure's numbers with what they
show in words written from them. Each PNG carries its command and commit in its metadata too.

- `activations.png`: every activation in conf/activation and its derivative (autograd).
- `sigmoid_squashing.png`: sigma, sigma∘sigma, sigma∘sigma∘sigma, and repeated sigma reaching its fixed point.
- `weights_reference.png`: the first-layer weights of a trained reference model (784-100-BN-ReLU-10).
- `gradient_norms.png`: the RMS per weight of each Linear layer's gradient over training, for
  deep_sigmoid with Adam, deep_sigmoid with SGD and deep_relu with Adam (one net, one init).
- `norm_axes.png`: which axis batch norm, layer norm and RMS norm normalize, on a small random matrix.

The first, second and last need no training (`pure_figures`). The other two read run
directories written by `train.py` (`--reference-run`, `--sigmoid-run`, `--sigmoid-sgd-run`,
`--relu-run`); a run not given is trained here with `train.py ... trainer.max_epochs=N logger=csv`,
on MNIST from `MNIST_ROOT`, into a temporary folder that is kept and printed so that it can be
passed back in. Everything runs on one CPU thread (torch here, OMP_NUM_THREADS=1 in training):
sums over several threads add in another order, and the figures would change with the machine.

The runs are figure_runs.py's, the gradient measures gradient_rms.py's, their words gradient_findings.py's.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from hydra.utils import instantiate
from matplotlib.figure import Figure
from omegaconf import OmegaConf
from torch import nn

from mlplab.errors import UserError
from mlplab import plots
from mlplab.plots import DPI, chapter_figures as chapter, run_figures as run
from mlplab.run.provenance import git_state
from mlplab.run.records import (LAST_CHECKPOINT, METRICS_FILE, checkpoint_path, conf_dir, option_names, project_root,
                                read_json, write_text)
from mlplab.tools.figure_runs import (GRADIENT_INTERVAL, GRADIENT_RUNS, REFERENCE, RELU_ADAM, SIGMOID_ADAM, SIGMOID_SGD,
                                      THREADS, TRAININGS, Training, check_comparable, describe_commit, runs_needed)
from mlplab.tools.gradient_findings import gradient_findings
from mlplab.tools.gradient_rms import gradient_rms, gradient_summary

DEFAULT_EPOCHS = 5
PROVENANCE_FILE = "PROVENANCE.md"
COMMAND = "python -m mlplab.tools.docs_figures"


# ---------------------------------------------------------------- the project's own building blocks

def config_option(group: str, name: str) -> Callable[..., nn.Module]:
    """The factory that `conf/<group>/<name>.yaml` builds (a partial, as the model receives it)."""
    path = conf_dir() / group / f"{name}.yaml"
    if not path.is_file():
        raise UserError(f"{group}={name!r} has no file {path}; the options are {option_names(group)}")
    return instantiate(OmegaConf.load(path))


def pure_figures() -> dict[str, Figure]:
    """The figures that need no training, by file name: activations, sigmoid squashing, norm axes."""
    activations = {name: config_option("activation", name)() for name in option_names("activation")}
    norms = {name: config_option("norm", name) for name in ("batch", "layer", "rms")}
    return {
        "activations.png": chapter.activations_figure(activations),
        "sigmoid_squashing.png": chapter.sigmoid_squashing_figure(activations["sigmoid"]),
        "norm_axes.png": chapter.norm_axes_figure(norms),
    }


def load_last_checkpoint(run_dir: Path) -> dict[str, Any]:
    """The run's last checkpoint, on the CPU."""
    path = checkpoint_path(run_dir, LAST_CHECKPOINT)
    if not path.is_file():
        raise UserError(f"{run_dir} has no {path.relative_to(run_dir)}; pass a run directory that train.py wrote")
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


# ---------------------------------------------------------------- command line

def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=COMMAND, description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, help="folder for the PNGs (default docs/figures of the checkout)")
    parser.add_argument("--epochs", type=int, default=DEFAULT_EPOCHS,
                        help=f"epochs for the runs trained here (default {DEFAULT_EPOCHS})")
    for training in TRAININGS:
        parser.add_argument(f"--{training.name}-run", type=Path,
                            help=f"a run directory of train.py {' '.join(training.overrides)} (default: train one)")
    args = parser.parse_args(argv)
    if args.epochs < 1:
        parser.error(f"--epochs={args.epochs} is not allowed: train at least 1 epoch")
    return args


def given_run(args: argparse.Namespace, training: Training) -> Path | None:
    return getattr(args, f"{training.name.replace('-', '_')}_run")


def save(figure: Figure, path: Path, made_by: str) -> Path:
    """Write the PNG with how it was made in its metadata: the command as Source, all of it as Description."""
    return plots.save(figure, path, DPI, metadata={"Source": made_by.splitlines()[0], "Description": made_by})


def provenance_text(command: str, commit: str, made: dict[str, str], summaries: Sequence[str], findings: str) -> str:
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
    lines += ["", "What these runs show, in words written from the same numbers:", "", findings]
    return "\n".join(lines) + "\n"


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
        runs, trained_folder = runs_needed({training: given_run(args, training) for training in TRAININGS}, args.epochs)
        gradient_runs = {label: runs[training.name][0] for label, training in GRADIENT_RUNS.items()}
        check_comparable(gradient_runs)
        gradients = {label: gradient_rms(run_dir) for label, run_dir in gradient_runs.items()}
        summaries = [gradient_summary(label, gradients[label], test_accuracy(run_dir))
                     for label, run_dir in gradient_runs.items()]
        measured = {training: gradients[label] for label, training in GRADIENT_RUNS.items()}
        findings = gradient_findings(measured[SIGMOID_ADAM], measured[SIGMOID_SGD], measured[RELU_ADAM],
                                     test_accuracy(runs[SIGMOID_SGD.name][0]))

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
        provenance = write_text(out / PROVENANCE_FILE, provenance_text(command, commit, made, summaries, findings))
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    for summary in summaries:
        print(summary)
    if trained_folder is not None:
        flags = " / ".join(f"--{training.name}-run" for training in TRAININGS)
        print(f"trained runs kept in {trained_folder} (pass them back with {flags})")
    print(f"made by {made_by}")
    for path in written:
        print(f"{path}: {made.get(path.name, '').replace('<br>', '; ')}")
    print(provenance)
    return 0


if __name__ == "__main__":
    sys.exit(main())
