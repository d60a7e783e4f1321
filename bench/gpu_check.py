"""Every GPU figure of docs/performance.md, on one fresh single-GPU machine, in about six minutes.

It fetches nothing: the project's dependencies must be installed (a machine with torch but without
hydra-core, omegaconf or wandb is refused in one line before anything runs; bring them along, e.g.
as wheels) and MNIST_ROOT must name the folder that holds MNIST/raw/. Runs, in order (timed parts
alone on the GPU):
  1. bench/throughput.py on CUDA: the project (chunks + CUDA graph), with augment=affine, eager, the
     minimal loop, the CUDA-graph floor, and packs of 1, 5 and 32 members (member-samples/s; a pack
     of 32 against the single run);
  2. one 20-epoch `+experiment=seed_pytorch` trial as a whole process: process wall vs fit time;
  3. the 5-seed cell of that trial, `seed=[1,2,3,4,5]`, as one process: its wall vs the trial's;
  4. an offline sweep of 12 trials x 3 epochs on 4 agents: sweep wall vs the trials' fit times / 4;
  5. side by side: the 20-epoch reference with the CUDA-graph step and eagerly, seeds 1-3 (accuracy,
     and how far the weights drift apart), two deterministic reruns and a resumed run (bit-identity).
Prints each figure beside its target and writes summary.json into --out.

    MNIST_ROOT=/path/to/data WANDB_MODE=offline python bench/gpu_check.py [--out outputs/gpu_check]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
# What train.py and the sweep launcher import beyond what a GPU image with torch and Lightning holds
# (import name: package name); wandb is imported whenever a WANDB_* variable is set, as here.
NEEDED = {"hydra": "hydra-core", "omegaconf": "omegaconf", "antlr4": "antlr4-python3-runtime", "wandb": "wandb",
          "yaml": "pyyaml"}
PACK_SEEDS = [1, 2, 3, 4, 5]


def start(args: list[str], log: Path) -> subprocess.Popen:
    return subprocess.Popen([PYTHON, *args], cwd=REPO, stdout=log.open("w"), stderr=subprocess.STDOUT)


def measured(args: list[str], log: Path) -> tuple[float, float]:
    """Run to the end; its wall seconds and peak RSS in GiB (the kernel's, as /usr/bin/time -v reports
    it). A failure stops the check, naming the log."""
    began = time.perf_counter()
    process = start(args, log)
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - began
    process.returncode = code = os.waitstatus_to_exitcode(status)
    if code != 0:
        sys.exit(f"failed (exit {code}): {' '.join(args)}; see {log}:\n" + log.read_text()[-3000:])
    return wall, usage.ru_maxrss / 2**20


def timed(args: list[str], log: Path) -> float:
    return measured(args, log)[0]


def missing_packages() -> list[str]:
    return [package for module, package in NEEDED.items() if importlib.util.find_spec(module) is None]


def one_trial_per_process() -> list[str]:
    """`--pack 1` where the sweep launcher packs a configuration's seeds (its --help lists --pack): the
    sweep and correctness figures are of one trial per process, as they were measured before packs."""
    shown = subprocess.run([PYTHON, "-m", "mlplab.tools.sweep", "--help"], cwd=REPO, capture_output=True, text=True)
    return ["--pack", "1"] if "--pack" in shown.stdout else []


def metrics(run_dir: Path) -> dict:
    return json.loads((run_dir / "metrics.json").read_text())


def weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)["state_dict"]


def max_difference(first: dict, second: dict) -> float:
    return max((a.double() - b.double()).abs().max().item() for a, b in zip(first.values(), second.values()))


def identical(first: dict, second: dict) -> bool:
    return all(torch.equal(a, b) for a, b in zip(first.values(), second.values()))


def trial_runs(sweep_dir: Path) -> list[tuple[list[str], dict, Path]]:
    """(overrides, metrics, run dir) of every finished trial of an offline sweep."""
    runs = []
    for found in sorted(sweep_dir.glob("*/metrics.json")):
        overrides = json.loads((found.parent / "trial.json").read_text()).get("overrides", [])
        runs.append((overrides, json.loads(found.read_text()), found.parent))
    return runs


def throughput(out: Path, summary: dict) -> None:
    # Its default packs on CUDA are 1, 5 and 32 members.
    timed(["bench/throughput.py", "--device", "cuda", "--steps", "3000", "--warmup", "200",
           "--json", str(out / "throughput.json")], out / "throughput.txt")
    print((out / "throughput.txt").read_text().split("machine:")[-1].rstrip(), flush=True)
    figures = json.loads((out / "throughput.json").read_text())
    summary["throughput"] = {"samples_per_second": figures["samples_per_second"], "pack_ratios": figures["pack_ratios"]}
    if "p_pack_32/c" in figures["pack_ratios"]:
        print(f"\npack of 32: {figures['samples_per_second']['p_pack_32']:,.0f} member-samples/s, "
              f"{figures['pack_ratios']['p_pack_32/c']:.1f}x the single run's samples/s (target >= 10)", flush=True)


def single_trial(out: Path, summary: dict) -> None:
    run_dir = out / "trial_seed1"
    wall, rss = measured(["train.py", "+experiment=seed_pytorch", "seed=1", f"hydra.run.dir={run_dir}"],
                         out / "trial_seed1.log")
    result = metrics(run_dir)
    summary["trial"] = {"process_wall_s": round(wall, 1), "fit_s": result["fit_seconds"],
                        "in_process_wall_s": result["wall_seconds"], "test_acc": result["test_acc"],
                        "peak_rss_gib": round(rss, 2)}
    print(f"\n20-epoch seed_pytorch trial: process wall {wall:.1f} s, fit {result['fit_seconds']:.1f} s, "
          f"wall/fit {wall / result['fit_seconds']:.2f}x (target <= 2); imports and start-up before the run "
          f"{wall - result['wall_seconds']:.1f} s; test accuracy {result['test_acc']:.2%}", flush=True)


def pack_cell(out: Path, summary: dict) -> None:
    """The trial's 5-seed cell as one pack process, against the trial (one seed alone) just before it."""
    if "trial" not in summary:  # --skip trial: the one seed alone is still what the pack is held to
        single_trial(out, summary)
    run_dir = out / "pack_seeds1-5"
    wall, rss = measured(["train.py", "+experiment=seed_pytorch", f"seed={PACK_SEEDS}".replace(" ", ""),
                          f"hydra.run.dir={run_dir}"], out / "pack_seeds1-5.log")
    members = [metrics(run_dir / f"seed-{seed}") for seed in PACK_SEEDS]
    accuracies = [member["test_acc"] for member in members]
    alone, alone_rss = summary["trial"]["process_wall_s"], summary["trial"]["peak_rss_gib"]
    summary["pack"] = {"seeds": PACK_SEEDS, "process_wall_s": round(wall, 1), "fit_s": members[0]["fit_seconds"],
                       "wall_over_one_seed": round(wall / alone, 2), "test_acc": accuracies,
                       "peak_rss_gib": round(rss, 2), "peak_rss_over_one_seed": round(rss / alone_rss, 2)}
    print(f"\n20-epoch 5-seed cell as one pack process: wall {wall:.1f} s (fit {members[0]['fit_seconds']:.1f} s) "
          f"against {alone:.1f} s for seed 1 alone: {wall / alone:.2f}x (target <= 1.5); peak RSS {rss:.2f} GiB, "
          f"{summary['pack']['peak_rss_over_one_seed']:.2f}x; test accuracy {sum(accuracies) / len(accuracies):.2%} "
          f"mean of seeds {PACK_SEEDS[0]}-{PACK_SEEDS[-1]}", flush=True)


def short_sweep(out: Path, summary: dict, agents: int = 4) -> None:
    sweep_dir = out / "short_trials"
    wall = timed(["-m", "mlplab.tools.sweep", "bench/sweeps/short_trials.yaml", "--offline", "--agents", str(agents),
                  "--stagger", "0", *one_trial_per_process(), "--sweep-dir", str(sweep_dir)], out / "short_trials.log")
    fits = [result["fit_seconds"] for _, result, _ in trial_runs(sweep_dir)]
    bound = sum(fits) / agents
    summary["sweep"] = {"trials": len(fits), "agents": agents, "wall_s": round(wall, 1), "sum_fit_s": round(sum(fits), 1)}
    print(f"\nsweep of {len(fits)} trials x 3 epochs on {agents} agents: wall {wall:.1f} s, sum of fit times "
          f"{sum(fits):.1f} s, wall / (sum of fits / {agents}) = {wall / bound:.2f}x (target <= 1.3)", flush=True)


def correctness(out: Path, summary: dict) -> None:
    """Graph vs eager over 3 seeds, deterministic reruns and a resume: started together, checked after."""
    common = ["+experiment=seed_pytorch", "seed=7", "trainer.deterministic=true"]
    pairs = {name: out / name for name in ("det_a", "det_b", "resumed")}
    started = [
        start(["-m", "mlplab.tools.sweep", "bench/sweeps/graph_vs_eager.yaml", "--offline", "--agents", "6", "--stagger", "0",
               *one_trial_per_process(), "--sweep-dir", str(out / "graph_vs_eager")], out / "graph_vs_eager.log"),
        start(["train.py", *common, "trainer.max_epochs=2", f"hydra.run.dir={pairs['det_a']}"], out / "det_a.log"),
        start(["train.py", *common, "trainer.max_epochs=2", f"hydra.run.dir={pairs['det_b']}"], out / "det_b.log"),
    ]
    timed(["train.py", *common, "trainer.max_epochs=1", f"hydra.run.dir={pairs['resumed']}"], out / "resumed1.log")
    timed(["train.py", *common, "trainer.max_epochs=2", f"resume={pairs['resumed']}"], out / "resumed2.log")
    for process in started:
        process.wait()
    det_a, det_b, resumed = (weights(path) for path in pairs.values())
    summary["deterministic_rerun_identical"] = identical(det_a, det_b)
    summary["resume_identical"] = identical(det_a, resumed)
    print(f"\ntrainer.deterministic=true, CUDA graph: rerun bit-identical {summary['deterministic_rerun_identical']}; "
          f"stopped after epoch 1 and resumed, bit-identical to the uninterrupted run {summary['resume_identical']}")
    by_mode: dict[str, dict[str, tuple[dict, Path]]] = {"true": {}, "false": {}}
    for overrides, result, run_dir in trial_runs(out / "graph_vs_eager"):
        settings = dict(item.split("=", 1) for item in overrides if "=" in item)
        by_mode[settings["fastpath.cuda_graph"].lower()][settings["seed"]] = (result, run_dir)
    for mode, label in (("true", "CUDA graph"), ("false", "eager")):
        accuracies = [result["test_acc"] for result, _ in by_mode[mode].values()]
        summary[f"test_acc_{label}"] = accuracies
        if accuracies:
            print(f"20 epochs, {label}: test accuracy {sum(accuracies) / len(accuracies):.2%} over seeds "
                  f"{sorted(by_mode[mode])} ({', '.join(f'{a:.2%}' for a in accuracies)}); target >= 97.5 %")
    for seed in sorted(by_mode["true"].keys() & by_mode["false"].keys()):
        drift = max_difference(weights(by_mode["true"][seed][1]), weights(by_mode["false"][seed][1]))
        summary.setdefault("graph_vs_eager_max_weight_difference", {})[seed] = drift
        print(f"seed {seed}: largest weight difference between the graph and eager runs after 20 epochs: {drift:.3g}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=REPO / "outputs" / "gpu_check")
    parser.add_argument("--skip", nargs="*", default=[],
                        choices=["throughput", "trial", "pack", "sweep", "correctness"])
    args = parser.parse_args()
    if not torch.cuda.is_available():
        sys.exit("no CUDA device: this check measures the GPU path (bench/throughput.py runs on the CPU)")
    if missing_packages():  # refused before any GPU time is spent on a run that cannot start
        sys.exit(f"error: missing Python packages {', '.join(missing_packages())}: train.py and the sweep launcher "
                 "import them; install the project's dependencies (requirements/lock.txt), on a machine without "
                 "a network from wheels brought along")
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("WANDB_MODE", "offline")
    os.environ["PYTHONUNBUFFERED"] = "1"
    print(f"{torch.cuda.get_device_name()}, torch {torch.__version__}, Python {sys.version.split()[0]}", flush=True)
    summary: dict = {"device": torch.cuda.get_device_name(), "torch": torch.__version__}
    began = time.perf_counter()
    steps = {"throughput": lambda: throughput(out, summary), "trial": lambda: single_trial(out, summary),
             "pack": lambda: pack_cell(out, summary), "sweep": lambda: short_sweep(out, summary),
             "correctness": lambda: correctness(out, summary)}
    for name, step in steps.items():
        if name not in args.skip:
            step()
            (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"\ngpu_check done in {time.perf_counter() - began:.0f} s -> {out}")


if __name__ == "__main__":
    main()
