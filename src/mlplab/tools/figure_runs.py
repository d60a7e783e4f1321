"""The training runs the chapter's figures read: which runs (`Training`), how they are trained here (as a user
would, on one CPU thread, with the CSV logger), how each was made (its command and commit, for
PROVENANCE.md), and the check that the gradient runs differ only in what the figure compares.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from mlplab.errors import UserError
from mlplab.run.overrides import readable_override
from mlplab.run.records import HYDRA_DIR, RUN_INFO_FILE, project_root, read_json

# Sums over several threads add in another order, and the figures would change with the machine.
THREADS = 1


@dataclass(frozen=True)
class Training:
    """A run a figure needs: the `--NAME-run` flag that passes one in, and the train.py overrides that train it."""
    name: str
    overrides: tuple[str, ...]


REFERENCE = Training("reference", ("+experiment=seed_pytorch",))
# One net and one init (the experiments differ only in the activation; the SGD run only in the
# optimizer). The gradients are logged every 10 steps: the sigmoid's vanish in the first hundred.
GRADIENT_INTERVAL = 10
SIGMOID_ADAM = Training("sigmoid", ("+experiment=deep_sigmoid",))
SIGMOID_SGD = Training("sigmoid-sgd", ("+experiment=deep_sigmoid", "optimizer=sgd"))
RELU_ADAM = Training("relu", ("+experiment=deep_relu",))
GRADIENT_RUNS = {"deep_sigmoid, Adam": SIGMOID_ADAM, "deep_sigmoid, SGD": SIGMOID_SGD, "deep_relu, Adam": RELU_ADAM}
TRAININGS = (REFERENCE, *GRADIENT_RUNS.values())  # every run the figures read, each with its --NAME-run
# What the gradient runs must share for the figure to compare activations and optimizers alone.
SHARED_SETTINGS = ("model.hidden_sizes", "model.init", "norm._target_", "data.batch_size", "seed")


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


def runs_needed(given: dict[Training, Path | None], epochs: int) -> tuple[dict[str, tuple[Path, str]], Path | None]:
    """Each Training's run directory and how it was made (given, or trained here for `epochs`), and the
    folder of the runs trained here (None when every run was given)."""
    # Before any training: a mistyped run directory should cost no minutes.
    for training, run_dir in given.items():
        if run_dir is not None and not run_dir.is_dir():
            raise UserError(f"--{training.name}-run={run_dir} is not a directory; pass one that train.py wrote")
    runs, folder = {}, None
    for training, run_dir in given.items():
        if run_dir is not None:
            runs[training.name] = run_dir.resolve(), run_command(run_dir.resolve(), trained_here=False)
            continue
        if folder is None:  # made only when something is trained, and kept: its runs can be passed back in
            folder = Path(tempfile.mkdtemp(prefix="mlplab-figures-"))
        trained = train(training, epochs, folder / training.name)
        runs[training.name] = trained, run_command(trained, trained_here=True)
    return runs, folder
