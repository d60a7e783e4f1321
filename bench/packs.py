"""Packs as whole processes (issue #19): what training a configuration's seeds as one pack saves.

(a) wall time: a 5-seed pack, `python train.py +experiment=seed_pytorch 'seed=[1,2,3,4,5]'
    trainer.max_epochs=3`, as ONE process, against the five single runs `seed=1` ... `seed=5` one
    after another (five processes); the ratio singles/pack per pair (target >= 2.5x), and the pack
    against one single run alone (what the GPU's target compares: <= 1.5x there, bench/gpu_check.py);
(b) memory: the pack process's peak RSS against a single run's (target <= 1.3x), from the same runs
    (the kernel's accounting of each finished process: ru_maxrss of wait4, what /usr/bin/time -v prints);
(c) a sweep: sweeps/activations.yaml at its first 5 seeds (10 activations x 5 seeds, 50 trials), 3 epochs, 2 slots,
    offline, packed (`--pack 5`: each activation's 5 seeds one process) against `--pack 1` (one
    process per trial); whole-sweep wall time and the ratio.
(a) and (b) run in pairs, pack then singles, after one warm-up of each; (c) after a dry run.
Prints the machine, each run as it ends, then medians (min, max) and the ratios.

    MNIST_ROOT=../shared/data WANDB_MODE=offline python bench/packs.py [--epochs 3] [--runs 3] [--parts process sweep]
    # quick check of the script itself (not figures): 1 epoch of 40 steps, 2 activations in the sweep
    ... python bench/packs.py --epochs 1 --limit-train-batches 40 --runs 1 --sweep-activations 2

A bad argument, a sweep launcher without --pack, or a run that fails stops it with one `error:` line.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from minimal_train import MAX_EPOCHS, OneLineParser, bounded_int  # bench/ is this script's import path
from process import last_line, machine_facts
from mlplab.run.config_checks import MAX_MEMBERS  # what `seed=[...]` allows

REPO = Path(__file__).resolve().parents[1]
SWEEP_FILE = REPO / "sweeps" / "activations.yaml"
SWEEP_SEEDS = (1, 2, 3, 4, 5)  # the file's first five seeds: the figures in docs/performance.md
MAX_RUNS = 100
STEPS_PER_EPOCH = 550  # 55,000 training images in batches of 100


@dataclass(frozen=True)
class Measured:
    """One finished process: wall seconds (start to reaped), peak RSS in GiB, its run directory."""

    wall: float
    peak_rss_gib: float
    run_dir: Path | None


def measure(command: list[str], log: Path, run_dir: Path | None = None) -> Measured:
    """Run `command` from the repo root to its end; its wall time and the kernel's peak RSS of it (and of
    any child it waited for). A failure stops the benchmark in one line naming the log (kept: the scratch
    folder is removed only after a whole benchmark)."""
    with log.open("w") as output:
        began = time.perf_counter()
        process = subprocess.Popen(command, cwd=REPO, stdout=output, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(process.pid, 0)  # wait4: this child's own rusage, not all children's
        wall = time.perf_counter() - began
    process.returncode = code = os.waitstatus_to_exitcode(status)  # so Popen does not wait again
    if code != 0:
        sys.exit(f"error: {log.stem} failed (exit {code}): {reason(log.read_text())} (whole log: {log})")
    return Measured(wall, usage.ru_maxrss / 2**20, run_dir)  # ru_maxrss is in KiB on Linux


def reason(log: str) -> str:
    """Why a run failed: its last `error:` line (wandb prints its own lines after it), else its last line."""
    errors = [line.strip() for line in log.splitlines() if line.startswith("error:")]
    return errors[-1].removeprefix("error:").strip() if errors else last_line(log)


def fit_seconds(run_dir: Path) -> float | None:
    """The run's own fit time (metrics.json; a pack's is in each member's)."""
    for path in (run_dir / "metrics.json", run_dir / "seed-1" / "metrics.json"):
        if path.is_file():
            return json.loads(path.read_text()).get("fit_seconds")
    return None


def spread(values: list[float], unit: str, digits: int = 1) -> str:
    return (f"median {statistics.median(values):.{digits}f} {unit} "
            f"(min {min(values):.{digits}f}, max {max(values):.{digits}f}, {len(values)} runs)")


def scale_overrides(args: argparse.Namespace) -> list[str]:
    limit = [f"++trainer.limit_train_batches={args.limit_train_batches}"] if args.limit_train_batches else []
    return [f"trainer.max_epochs={args.epochs}", *limit]


def processes(args: argparse.Namespace, scratch: Path) -> None:
    """(a) and (b): the pack as one process against its seeds' single runs one after another."""
    seeds = list(range(1, args.members + 1))
    common = [sys.executable, "train.py", "+experiment=seed_pytorch", *scale_overrides(args)]

    def pack(name: str) -> Measured:
        run_dir = scratch / name
        return measure([*common, f"seed=[{','.join(map(str, seeds))}]", f"hydra.run.dir={run_dir}"],
                       scratch / f"{name}.log", run_dir)

    def single(name: str, seed: int) -> Measured:
        run_dir = scratch / f"{name}-seed{seed}"
        return measure([*common, f"seed={seed}", f"hydra.run.dir={run_dir}"], scratch / f"{name}-seed{seed}.log",
                       run_dir)

    print(f"\n(a, b) {args.epochs}-epoch seed_pytorch{limit_note(args)}: a pack of {args.members} as one process "
          f"vs seeds {seeds[0]}-{seeds[-1]} as single runs one after another; {args.runs} pair(s)", flush=True)
    pack("warmup-pack"), single("warmup", 1)  # file caches and compiled bytecode, for both sides
    packs, singles = [], []
    for index in range(args.runs):
        packs.append(pack(f"pack{index}"))
        singles.append([single(f"single{index}", seed) for seed in seeds])
        walls = [run.wall for run in singles[-1]]
        print(f"  pair {index + 1}: pack {packs[-1].wall:6.1f} s, {packs[-1].peak_rss_gib:.2f} GiB | singles "
              f"{sum(walls):6.1f} s ({', '.join(f'{w:.1f}' for w in walls)}), "
              f"{max(run.peak_rss_gib for run in singles[-1]):.2f} GiB at most", flush=True)
    one = [run for pair in singles for run in pair]
    print(f"{f'pack process ({args.members} members)':<28} wall {spread([p.wall for p in packs], 's')}")
    print(f"{f'{args.members} single runs in turn':<28} wall "
          f"{spread([sum(r.wall for r in pair) for pair in singles], 's')}")
    print(f"{'one single run':<28} wall {spread([r.wall for r in one], 's')}")
    pack_fits = [fit for fit in (fit_seconds(p.run_dir) for p in packs) if fit is not None]
    single_fits = [fit for fit in (fit_seconds(r.run_dir) for r in one) if fit is not None]
    if pack_fits and single_fits:
        print(f"in-process fit time: pack median {statistics.median(pack_fits):.1f} s, "
              f"single run median {statistics.median(single_fits):.1f} s")
    sequential = statistics.median(sum(r.wall for r in pair) / p.wall for p, pair in zip(packs, singles))
    against_one = statistics.median(p.wall / statistics.median(r.wall for r in pair) for p, pair in zip(packs, singles))
    print(f"(a) {args.members} singles in turn / one pack process (median per pair): {sequential:6.2f}x   "
          f"target >= 2.5")
    print(f"    pack process / one single run (median per pair):        {against_one:6.2f}x   "
          f"(GPU target <= 1.5 at 20 epochs)")
    pack_rss = statistics.median(p.peak_rss_gib for p in packs)
    single_rss = statistics.median(r.peak_rss_gib for r in one)
    print(f"(b) peak RSS: pack {pack_rss:.2f} GiB, single run {single_rss:.2f} GiB (medians): "
          f"{pack_rss / single_rss:6.2f}x   target <= 1.3", flush=True)


def limit_note(args: argparse.Namespace) -> str:
    return f", {args.limit_train_batches} steps per epoch (a check of the script, not figures)" \
        if args.limit_train_batches else ""


def sweep_file(args: argparse.Namespace, scratch: Path) -> Path:
    """The sweep's file, or a copy of it with only the first --sweep-activations activations (to check the script)."""
    if args.sweep_activations is None:
        return SWEEP_FILE
    spec = yaml.safe_load(SWEEP_FILE.read_text())
    values = spec["parameters"]["activation"]["values"]
    spec["parameters"]["activation"]["values"] = values[: args.sweep_activations]
    path = scratch / "activations_subset.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def launcher_has_pack() -> bool:
    """Whether `python -m mlplab.tools.sweep` takes --pack (its --help lists it)."""
    result = subprocess.run([sys.executable, "-m", "mlplab.tools.sweep", "--help"], cwd=REPO, capture_output=True,
                            text=True)
    return result.returncode == 0 and "--pack" in result.stdout


def finished_trials(sweep_dir: Path) -> int:
    # A packed sweep's trial records are links to the members' dirs; glob follows them.
    return len(list(sweep_dir.glob("*/metrics.json")))


def sweep(args: argparse.Namespace, scratch: Path) -> None:
    """(c): the whole sweep, packed against --pack 1, in turn."""
    spec = sweep_file(args, scratch)
    launcher = [sys.executable, "-m", "mlplab.tools.sweep", str(spec), "--offline", "--agents", str(args.slots),
                "--stagger", "0", "--program-root", str(REPO)]
    trials = len(yaml.safe_load(spec.read_text())["parameters"]["activation"]["values"]) * len(SWEEP_SEEDS)
    print(f"\n(c) {spec.name}: {trials} trials x {args.epochs} epochs{limit_note(args)} on {args.slots} slots, "
          f"offline, --pack {args.members} vs --pack 1; {args.sweep_runs} run(s) each", flush=True)
    measure([*launcher, "--dry-run", "--sweep-dir", str(scratch / "sweep-dry"), *scale_overrides(args)],
            scratch / "sweep-dry.log")  # warm-up: the launcher's imports from the file cache

    def run(name: str, pack: int) -> Measured:
        sweep_dir = scratch / name
        measured = measure([*launcher, "--pack", str(pack), "--sweep-dir", str(sweep_dir), *scale_overrides(args),
                            f"seed={','.join(map(str, SWEEP_SEEDS))}"],
                           scratch / f"{name}.log", sweep_dir)
        if finished_trials(sweep_dir) != trials:
            sys.exit(f"error: the sweep {name} finished {finished_trials(sweep_dir)} of {trials} trials; "
                     f"see {scratch / name}.log")
        print(f"  {name + ':':<12} {measured.wall:6.1f} s", flush=True)
        return measured

    pairs = [(run(f"packed{index}", args.members), run(f"unpacked{index}", 1)) for index in range(args.sweep_runs)]
    print(f"{f'sweep, --pack {args.members}':<16} wall {spread([packed.wall for packed, _ in pairs], 's')}")
    print(f"{'sweep, --pack 1':<16} wall {spread([unpacked.wall for _, unpacked in pairs], 's')}")
    ratio = statistics.median(unpacked.wall / packed.wall for packed, unpacked in pairs)
    print(f"(c) sweep --pack 1 / --pack {args.members} (median per pair): {ratio:6.2f}x   target >= 2", flush=True)


def main() -> None:
    parser = OneLineParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=bounded_int(1, MAX_EPOCHS), default=3)
    parser.add_argument("--members", type=bounded_int(2, MAX_MEMBERS), default=5,
                        help="seeds of the pack, 1..N (default 5); also the sweep's --pack")
    parser.add_argument("--runs", type=bounded_int(1, MAX_RUNS), default=3, help="pairs for (a) and (b) (default 3)")
    parser.add_argument("--limit-train-batches", type=bounded_int(1, STEPS_PER_EPOCH), metavar="STEPS",
                        help="steps per epoch (default: the whole epoch, 550); fewer is a check of the script")
    parser.add_argument("--parts", nargs="+", choices=["process", "sweep"], default=["process", "sweep"],
                        help="process: (a) and (b); sweep: (c) (default both)")
    parser.add_argument("--slots", type=bounded_int(1, 64), default=2, help="the sweep's --agents (default 2)")
    parser.add_argument("--sweep-runs", type=bounded_int(1, MAX_RUNS), default=1,
                        help="whole sweeps of each kind (default 1)")
    parser.add_argument("--sweep-activations", type=bounded_int(1, 10), metavar="K",
                        help="only the first K activations of the sweep (default all 10); fewer is a check of "
                             "the script")
    args = parser.parse_args()
    # Refused here, before minutes of (a) and (b), rather than after them.
    if "sweep" in args.parts and not launcher_has_pack():
        sys.exit("error: the sweep launcher (python -m mlplab.tools.sweep) has no --pack option, so (c) cannot "
                 "be measured; run --parts process for (a) and (b)")
    os.environ.setdefault("WANDB_MODE", "offline")  # the runs' default loggers include wandb: never online here
    print(f"machine: {machine_facts()}", flush=True)
    began = time.perf_counter()
    scratch = Path(tempfile.mkdtemp(prefix="bench-packs-"))
    if "process" in args.parts:
        processes(args, scratch)
    if "sweep" in args.parts:
        sweep(args, scratch)
    shutil.rmtree(scratch, ignore_errors=True)
    print(f"\nbench/packs.py done in {time.perf_counter() - began:.0f} s")


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:  # the runs it started got the same Ctrl-C and stopped
        sys.exit("error: interrupted; no figures")
