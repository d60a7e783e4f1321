"""Whole-process time of a short reference run against a minimal script doing the same epochs.

A: `python train.py +experiment=seed_pytorch trainer.max_epochs=E` (start-up, validation, checkpoints,
   test, figures and loggers included; `--logger` picks the logger group);
B: `python bench/minimal_train.py --epochs E` (the same recipe with nothing but torch).
Runs them in turn, A B A B ..., after one warm-up each, and prints each one's median wall time and
the median of the pairwise speed ratios B/A (1.0: the project costs nothing over the bare script).

    MNIST_ROOT=../shared/data WANDB_MODE=offline python bench/process.py [--epochs 3] [--runs 5] [--logger default]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def wall(command: list[str]) -> float:
    began = time.perf_counter()
    result = subprocess.run(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if result.returncode != 0:
        sys.exit(f"failed (exit {result.returncode}): {' '.join(command)}\n{result.stderr[-2000:]}")
    return time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--logger", default="default", help="the run's logger group: default (csv + wandb), csv, none")
    args = parser.parse_args()
    if args.runs < 1 or args.epochs < 1:
        parser.error("--runs and --epochs must be 1 or more")
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
    print(f"{args.epochs}-epoch seed_pytorch, logger={args.logger}, {args.runs} runs each")
    print(f"A project process  median {a:6.2f} s  (min {min(r for r, _ in pairs):.2f}, max {max(r for r, _ in pairs):.2f})")
    print(f"B minimal script   median {b:6.2f} s  (min {min(m for _, m in pairs):.2f}, max {max(m for _, m in pairs):.2f})")
    print(f"speed of A relative to B (median of B/A per pair): {ratio:.2f}x   target >= 0.8")


if __name__ == "__main__":
    main()
