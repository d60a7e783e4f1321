"""Training throughput of the reference MLP (784-100-BN-ReLU-10, Adam, batch 100), several ways.

(a) the textbook pipeline: a Dataset of PIL images with per-sample ToTensor + flatten, a DataLoader;
(b) a minimal hand-written loop over uint8 tensors held on the device, batches cut by index
    (and the same with fused Adam);
(g) on CUDA, the floor: (b)'s step with fused Adam captured once as a CUDA graph and replayed per
    batch, the batch copied into its static input; nothing a Python training loop can beat;
(c) the project's own path: the real config, datamodule, module, Lightning Trainer and the callbacks
    of train.py (dashboard insights, NaN guard), CSV logging on, with its defaults (chunks of 8
    batches, the CUDA-graph step on a GPU); then with augment=affine; then one batch per Lightning
    batch and an eager step (fastpath.chunk=1 fastpath.cuda_graph=false), the path before chunks and graphs;
(p) the project's path trained as packs (`seed=[1,...,N]`: one batched model, each step N members' batches),
    by default of 1, 5 and 16 members on the CPU, 1, 5 and 32 on CUDA, in member-samples/s (samples/s
    times members) and as a ratio to (c), the single run.
Each runs the same number of steps after a warm-up, in this one process, on the same data.
Prints the machine, samples/s, the ratios, and the peak RSS of (c); --json also writes them to a file.

    MNIST_ROOT=../shared/data python bench/throughput.py [--steps 1500] [--warmup 100] [--device cpu] [--compile]
                                                         [--packs 1,5,16] [--json results.json]

A bad argument, a device this machine lacks or missing data is one `error:` line.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import sys
import tempfile
import time
from pathlib import Path

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_dir
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms import functional as TF

from minimal_train import OneLineParser, bounded_int  # bench/ is this script's import path
from process import machine_facts
from mlplab.core.data import load_split, member_seeds, verify_files
from mlplab.errors import UserError
from mlplab.run.config_checks import MAX_MEMBERS
from mlplab.run.loggers import build_loggers
from mlplab.run.stops import NonFiniteLossGuard
from mlplab.run.build import build_callbacks, build_datamodule, build_module, build_trainer, fast_path

CONF = Path(__file__).resolve().parents[1] / "conf"
BATCH = 100
# The project's path hands 8 steps at a time to Lightning (fastpath.chunk); the timer needs whole chunks
# on both sides of the warm-up to see a start and an end.
MIN_STEPS = 16
MAX_STEPS = 1_000_000  # 10^8 samples: minutes on an H200, hours on a CPU
MAX_WARMUP = 100_000
# The pack sizes: on a GPU a pack fills what one small model leaves idle, so it goes to 32;
# on the CPU 16 members already keep both cores busy and take a pack of 16 times a step's time.
DEFAULT_PACKS = {"cpu": (1, 5, 16), "cuda": (1, 5, 32)}
PACK_TARGETS = {("cpu", 5): ">= 1.8 on the CPU", ("cpu", 16): ">= 2.5 on the CPU", ("cuda", 32): ">= 10 on CUDA"}


def device_argument(text: str) -> torch.device:
    """An argparse type: cpu, cuda or cuda:N, and only a device this machine has."""
    if not re.fullmatch(r"cpu|cuda(:\d+)?", text):
        raise argparse.ArgumentTypeError(f"{text!r} is not allowed: cpu, cuda or cuda:N")
    device = torch.device(text)
    if device.type == "cuda":
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count or count == 0:
            raise argparse.ArgumentTypeError(f"{text!r} is not on this machine: it has {count} CUDA device(s); "
                                             "use --device cpu")
    return device


def pack_sizes(text: str) -> tuple[int, ...]:
    """An argparse type: pack sizes separated by commas (1,5,16), each once, each in [1, MAX_MEMBERS]
    (what `seed=[...]` allows)."""
    allowed = f"pack sizes in [1, {MAX_MEMBERS}] separated by commas, each once, e.g. 1,5,16"
    try:
        sizes = tuple(bounded_int(1, MAX_MEMBERS)(part) for part in text.split(","))
    except argparse.ArgumentTypeError:
        sizes = ()
    if not sizes or len(set(sizes)) != len(sizes):
        raise argparse.ArgumentTypeError(f"{text!r} is not allowed: {allowed}")
    return sizes


def reference_mlp() -> nn.Module:
    return nn.Sequential(nn.Linear(784, 100), nn.BatchNorm1d(100), nn.ReLU(), nn.Linear(100, 10))


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class TextbookMNIST(Dataset):
    """What torchvision's MNIST dataset does per sample: a PIL image, then the transform."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        self.images, self.labels = images.view(-1, 28, 28).numpy(), labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int):
        image = Image.fromarray(self.images[index], mode="L")
        return TF.to_tensor(image).flatten(), int(self.labels[index])


def time_steps(batches, step, device: torch.device, steps: int, warmup: int) -> float:
    """samples/s over `steps` steps after `warmup` steps; cycles through `batches` as needed."""
    done, started = 0, None
    while True:
        for x, y in batches:
            if done == warmup:
                synchronize(device)
                started = time.perf_counter()
            step(x, y)
            done += 1
            if done == warmup + steps:
                synchronize(device)
                return steps * BATCH / (time.perf_counter() - started)


def make_step(device: torch.device, prepare, fused: bool | None = None):
    model = reference_mlp().to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, fused=fused)

    def step(x, y):
        x, y = prepare(x, y)
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def textbook(images, labels, device, steps, warmup) -> float:
    loader = DataLoader(TextbookMNIST(images, labels), batch_size=BATCH, shuffle=True)
    step = make_step(device, lambda x, y: (x.to(device), y.to(device)))
    return time_steps(loader, step, device, steps, warmup)


def minimal(images, labels, device, steps, warmup, fused: bool | None = None) -> float:
    images, labels = images.to(device), labels.to(device)

    def batches():
        order = torch.randperm(len(labels), device=device)
        for start in range(0, len(order), BATCH):
            index = order[start : start + BATCH]
            yield images[index], labels[index]

    class Epochs:
        def __iter__(self):
            return batches()

    step = make_step(device, lambda x, y: (x.float() / 255.0, y), fused)
    return time_steps(Epochs(), step, device, steps, warmup)


class StepTimer(pl.Callback):
    """Times the training steps after the warm-up (a Lightning batch may hold several steps)."""

    def __init__(self, warmup: int) -> None:
        self.warmup, self.started, self.finished = warmup, None, None
        self.first_step = self.last_step = 0

    def on_train_batch_start(self, trainer, module, batch, batch_idx) -> None:
        if trainer.global_step >= self.warmup and self.started is None:
            synchronize(module.device)
            self.started, self.first_step = time.perf_counter(), trainer.global_step

    def on_train_end(self, trainer, module) -> None:
        synchronize(module.device)
        self.finished, self.last_step = time.perf_counter(), trainer.global_step

    def samples_per_second(self) -> float:
        return (self.last_step - self.first_step) * BATCH / (self.finished - self.started)


def graph_floor(images, labels, device, steps, warmup) -> float:
    """(b)'s step with fused, capturable Adam, replayed from one CUDA graph per batch."""
    images, labels = images.to(device), labels.to(device)
    model = reference_mlp().to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, fused=True, capturable=True)
    static_x, static_y = torch.zeros(BATCH, 784, device=device), torch.zeros(BATCH, dtype=torch.long, device=device)

    def step():
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(model(static_x), static_y).backward()
        optimizer.step()

    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):
            step()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        step()

    def replay(x, y):
        static_x.copy_(x.float() / 255.0)
        static_y.copy_(y)
        graph.replay()

    def batches():
        order = torch.randperm(len(labels), device=device)
        for start in range(0, len(order) - BATCH + 1, BATCH):
            index = order[start : start + BATCH]
            yield images[index], labels[index]

    class Epochs:
        def __iter__(self):
            return batches()

    return time_steps(Epochs(), replay, device, steps, warmup)


def project(device: torch.device, steps: int, warmup: int, *overrides: str) -> float:
    with tempfile.TemporaryDirectory() as output_dir:
        with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
            cfg = compose("config", overrides=[
                f"trainer.accelerator={device.type}", f"++trainer.max_steps={warmup + steps}",
                "++trainer.limit_val_batches=0", "trainer.num_sanity_val_steps=0", "trainer.enable_model_summary=false",
                "++trainer.enable_checkpointing=false", "logger=csv", f"paths.output_dir={output_dir}", *overrides,
            ])
        seeds = member_seeds(cfg.seed)
        pl.seed_everything(seeds[0], workers=True)  # as train.py seeds a pack: each member draws from its own
        datamodule = build_datamodule(cfg)
        timer = StepTimer(warmup)
        trainer = build_trainer(cfg, [timer, NonFiniteLossGuard(), *build_callbacks(cfg)], build_loggers(cfg))
        module = build_module(cfg, datamodule)
        trainer.fit(fast_path(cfg).prepared(module), datamodule=datamodule)
        # A pack's step trains every member on its own batch: members x BATCH samples per step.
        return timer.samples_per_second() * len(seeds)


def pack(device: torch.device, steps: int, warmup: int, members: int) -> float:
    """(p): member-samples/s of the project's path with `seed=[1,...,members]` (a list even for one member)."""
    return project(device, steps, warmup, f"seed=[{','.join(str(seed) for seed in range(1, members + 1))}]")


def main() -> None:
    parser = OneLineParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=bounded_int(MIN_STEPS, MAX_STEPS, ", two chunks of 8 at least"), default=1500)
    parser.add_argument("--warmup", type=bounded_int(0, MAX_WARMUP), default=100)
    parser.add_argument("--device", type=device_argument, default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--compile", action="store_true", help="also time (c) with fastpath.compile=true")
    parser.add_argument("--packs", type=pack_sizes, help="pack sizes of (p), e.g. 1,5,16 (default: "
                        + "; ".join(f"{','.join(map(str, sizes))} on {kind}" for kind, sizes in DEFAULT_PACKS.items())
                        + ")")
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write the figures to FILE (bench/gpu_check.py)")
    args = parser.parse_args()
    device = args.device
    packs = args.packs or DEFAULT_PACKS[device.type]
    machine = machine_facts()  # before the timing: its load average is the others' on this machine, not ours
    if args.json is not None and (args.json.is_dir() or not args.json.parent.is_dir()):  # found before the timing
        parser.error(f"argument --json: {str(args.json)!r} is not allowed: a file name in an existing folder")

    root = os.environ.get("MNIST_ROOT", "./data")
    try:
        verify_files(root)
    except UserError as error:
        sys.exit(f"error: {error}")
    images, labels = load_split(root, train=True)

    results = {"c_project": project(device, args.steps, args.warmup)}
    peak_rss_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    results["c_project_affine"] = project(device, args.steps, args.warmup, "augment=affine")
    results["c_project_unchunked_eager"] = project(device, args.steps, args.warmup, "fastpath.chunk=1",
                                                   "fastpath.cuda_graph=false")
    if device.type == "cuda":
        results["c_project_chunked_eager"] = project(device, args.steps, args.warmup, "fastpath.cuda_graph=false")
    if args.compile:
        results["c_project_compiled"] = project(device, args.steps, args.warmup, "fastpath.compile=true")
    for members in packs:
        results[f"p_pack_{members}"] = pack(device, args.steps, args.warmup, members)
    results["b_minimal"] = minimal(images, labels, device, args.steps, args.warmup)
    results["b_minimal_fused"] = minimal(images, labels, device, args.steps, args.warmup, fused=True)
    if device.type == "cuda":
        results["g_graph_floor"] = graph_floor(images, labels, device, args.steps, args.warmup)
    results["a_textbook"] = textbook(images, labels, device, min(args.steps, 1000), args.warmup)

    print(f"\nmachine: {machine}, device {device}"
          + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else ""))
    print(f"steps: {args.steps} after {args.warmup} warm-up, batch {BATCH}\n")
    for name, value in results.items():
        print(f"{name:<26} {value:>10,.0f} {'member-samples/s' if name.startswith('p_') else 'samples/s'}")
    a, b, c, c_aff = results["a_textbook"], results["b_minimal"], results["c_project"], results["c_project_affine"]
    print()
    print(f"c/a (project / textbook)                 {c / a:6.2f}x")
    print(f"c/b (project / minimal loop)             {c / b:6.2f}x   target >= 0.9 on the CPU")
    print(f"c_affine/b (augmented / minimal)         {c_aff / b:6.2f}x")
    print(f"c/b_fused (project / minimal, fused Adam) {c / results['b_minimal_fused']:6.2f}x")
    print(f"c/c_unchunked_eager (chunks, graphs)     {c / results['c_project_unchunked_eager']:6.2f}x")
    if "g_graph_floor" in results:
        floor = results["g_graph_floor"]
        print(f"c/floor (project / CUDA-graph floor)     {c / floor:6.2f}x   target >= 0.4 and c >= 150k samples/s")
        print(f"c_affine/floor                           {c_aff / floor:6.2f}x   target >= 0.3")
    print(f"peak RSS of (c)                          {peak_rss_gib:6.2f} GiB")
    ratios = {f"p_pack_{members}/c": results[f"p_pack_{members}"] / c for members in packs}
    print("\npacks: member-samples/s (samples/s x members) / the single run's samples/s (c)")
    for members in packs:
        target = "   about 1: the same path" if members == 1 else ""
        target = f"   target {PACK_TARGETS[device.type, members]}" if (device.type, members) in PACK_TARGETS else target
        label = f"p_pack_{members}/c (pack of {members} / single run)"
        print(f"{label:<41}{ratios[f'p_pack_{members}/c']:6.2f}x{target}")
    if 1 in packs:
        # (c) ran minutes before the packs; the pack of one ran beside them, so this ratio drifts less
        # with the machine's load. (c) and the pack of one are the same code path.
        if not 0.8 <= ratios["p_pack_1/c"] <= 1.25:
            print(f"the pack of one ran at {ratios['p_pack_1/c']:.2f}x (c), its own path: the machine's speed "
                  "changed during the run, so these ratios are not figures; run again on a quiet machine")
        print("the same over the pack of one, timed next to the packs:")
        for members in (size for size in packs if size != 1):
            ratios[f"p_pack_{members}/p_pack_1"] = results[f"p_pack_{members}"] / results["p_pack_1"]
            print(f"{f'p_pack_{members}/p_pack_1':<41}{ratios[f'p_pack_{members}/p_pack_1']:6.2f}x")
    if args.json is not None:
        figures = {"machine": machine, "device": str(device), "steps": args.steps, "warmup": args.warmup,
                   "batch": BATCH, "samples_per_second": results, "pack_ratios": ratios, "peak_rss_c_gib": peak_rss_gib}
        try:
            args.json.write_text(json.dumps(figures, indent=2) + "\n")
        except OSError as error:
            sys.exit(f"error: cannot write {args.json}: {error.strerror or error}")


if __name__ == "__main__":
    main()
