"""Whole-process time of a short reference run against a minimal script doing the same epochs.

A: `python train.py +experiment=seed_pytorch trainer.max_epochs=E` (start-up, validation, checkpoints,
   test, figures and loggers included; `--logger` picks the logger group);
B: `python bench/minimal_train.py --epochs E` (the same recipe with nothing but torch).
Runs them in turn, A B A B ..., after one warm-up each, and prints the machine, each one's median wall
time and the median of the pairwise speed ratios B/A (1.0: the project costs nothing over the bare script).

    MNIST_ROOT=../shared/data WANDB_MODE=offline python bench/process.py [--epochs 3] [--runs 5] [--logger default]

A bad argument, or a run that fails, stops it with one `error:` line.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from minimal_train import MAX_EPOCHS, OneLineParser, bounded_int  # bench/ is this script's import path
from mlplab.run.provenance import cpu_model

REPO = Path(__file__).resolve().parents[1]
MAX_RUNS = 100


def machine_facts() -> str:
    """One line of what the figures depend on: CPU, cores this process may use, load, torch and its threads.
    The load average says whether others shared the machine while it was measured."""
    import torch  # here, not at the top: process.py itself only starts processes

    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    threads = ", ".join(f"{name}={os.environ[name]}" for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")
                        if name in os.environ)
    return (f"{cpu_model()}, {os.cpu_count()} CPUs ({usable} usable), load average {os.getloadavg()[0]:.2f}, "
            f"torch {torch.__version__} with {torch.get_num_threads()} threads" + (f" ({threads})" if threads else ""))


def logger_options() -> list[str]:
    """The options of the `logger` config group: one yaml each in conf/logger/."""
    return sorted(path.stem for path in (REPO / "conf" / "logger").glob("*.yaml"))


def last_line(text: str) -> str:
    """The last line a failed run printed: its one-line `error:` (or the end of a traceback)."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else "(it printed nothing)"


def wall(command: list[str]) -> float:
    began = time.perf_counter()
    result = subprocess.run(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if result.returncode != 0:
        sys.exit(f"error: {' '.join(command[1:3])} ... failed (exit {result.returncode}): {last_line(result.stderr)}")
    return time.perf_counter() - began


def main() -> None:
    parser = OneLineParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=bounded_int(1, MAX_EPOCHS), default=3)
    parser.add_argument("--runs", type=bounded_int(1, MAX_RUNS), default=5)
    parser.add_argument("--logger", default="default", choices=logger_options(),
                        help="the run's logger group (conf/logger/): default is csv + wandb")
    args = parser.parse_args()
    machine = machine_facts()  # before the runs: the load average is the machine's, not theirs
    with tempfile.TemporaryDirectory() as scratch:
        def project(index: int) -> list[str]:
            return [sys.executable, "train.py", "+experiment=seed_pytorch", f"trainer.max_epochs={args.epochs}",
                    f"logger={args.logger}", f"hydra.run.dir={scratch}/run{index}"]

        minimal = [sys.executable, "bench/minimal_train.py", f"--epochs={args.epochs}"]
        wall(project(-1)), wall(minimal)  # warm-up: file caches, compiled bytecode
        pairs = [(wall(project(index)), wall(minimal)) for index in range(args.runs)]
    a = statistics.median(run for run, _ in pairs)
    b = statistics.median(bare for _, bare in pairs)
    ratio = statistics.median(bare / run for run, bare in pairs)
    print(f"machine: {machine}")
    print(f"{args.epochs}-epoch seed_pytorch, logger={args.logger}, {args.runs} runs each")
    print(f"A project process  median {a:6.2f} s  (min {min(r for r, _ in pairs):.2f}, max {max(r for r, _ in pairs):.2f})")
    print(f"B minimal script   median {b:6.2f} s  (min {min(m for _, m in pairs):.2f}, max {max(m for _, m in pairs):.2f})")
    print(f"speed of A relative to B (median of B/A per pair): {ratio:.2f}x   target >= 0.8")


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:  # the runs it started got the same Ctrl-C and stopped
        sys.exit("error: interrupted; no figures")
