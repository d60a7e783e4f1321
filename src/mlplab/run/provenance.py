"""What describes where and how a run ran, for its run_info.json: command, seed, git state,
package versions, hardware, what decides the last bits of its numbers, data MD5s."""

from __future__ import annotations

import os
import platform
import re
import socket
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

from mlplab.run.records import now

PACKAGES = ("torch", "pytorch-lightning", "hydra-core", "omegaconf", "wandb", "torchmetrics", "torchvision")
# Variables that change how kernels split or order their sums.
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "CUBLAS_WORKSPACE_CONFIG")
# Vector extensions whose presence changes which CPU kernels run (and so how floats are summed).
ISA_FLAGS = ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "amx_tile", "amx_bf16")
BUILD_LINE = re.compile(r"^\s*-\s*(Intel\(R\) oneAPI Math Kernel Library Version \S+|Intel\(R\) MKL-DNN v\S+|"
                        r"OpenMP \d+|CPU capability usage: \S+)", re.MULTILINE)


def _git(*args: str, cwd: Path | None = None) -> str | None:
    try:
        return subprocess.run(["git", *args], capture_output=True, text=True, check=True, timeout=10,
                              cwd=cwd or Path(__file__).resolve().parent).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None


# What decides a run: its code and its configs. A file added there but not committed (a new
# conf/experiment/*.yaml, say) makes the commit alone unable to rebuild the run, so it counts.
RUN_SOURCES = ("conf", "src", "train.py", "eval.py", "pyproject.toml")
MAX_LISTED = 20


def git_state(checkout: Path | None = None) -> dict[str, Any]:
    """The checkout's commit (this package's by default) and whether its code or configs differ
    from it, untracked files included."""
    commit = _git("rev-parse", "HEAD", cwd=checkout)
    root = _git("rev-parse", "--show-toplevel", cwd=checkout)
    status = _git("-C", root, "status", "--porcelain", "--untracked-files=all", "--", *RUN_SOURCES) if root else None
    changed = [line.split(maxsplit=1)[1] for line in status.splitlines() if line.strip()] if status else []
    return {"commit": commit, "dirty": bool(changed) if status is not None else None, "changed": changed[:MAX_LISTED]}


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_flags() -> list[str]:
    """The vector extensions of ISA_FLAGS this CPU has."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return []
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), [])
    return [flag for flag in ISA_FLAGS if flag in flags]


def numerics() -> dict[str, Any]:
    """What decides the last bits of a run's numbers beyond its config and seed: threads (each
    splits a sum another way), the CPU's vector extensions and the kernels torch picks for them, the
    BLAS and oneDNN builds, and the determinism switches. Runs that agree on all of it, on the same
    versions, agree bit for bit on the CPU; runs that differ in any may differ in the last bits."""
    import torch

    build = [match.group(1) for match in BUILD_LINE.finditer(torch.__config__.show())]
    record = {
        "torch_threads": torch.get_num_threads(),
        "torch_interop_threads": torch.get_num_interop_threads(),
        "env": {name: os.environ.get(name) for name in THREAD_VARIABLES},
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "cpu_flags": cpu_flags(),
        "builds": build,
        "mkl": torch.backends.mkl.is_available(),
        "mkldnn": torch.backends.mkldnn.is_available(),
        "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
        "float32_matmul_precision": torch.get_float32_matmul_precision(),
    }
    if torch.cuda.is_available():
        record["cuda"] = {"version": torch.version.cuda, "cudnn": torch.backends.cudnn.version(),
                          "cudnn_deterministic": torch.backends.cudnn.deterministic,
                          "cudnn_benchmark": torch.backends.cudnn.benchmark,
                          "matmul_tf32": torch.backends.cuda.matmul.allow_tf32,
                          "cudnn_tf32": torch.backends.cudnn.allow_tf32}
    return record


def hardware() -> dict[str, Any]:
    import torch

    gpus = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else []
    return {"host": socket.gethostname(), "cpu": cpu_model(), "cpu_count": os.cpu_count(), "gpus": gpus,
            "platform": platform.platform()}


def versions() -> dict[str, str]:
    found = {"python": sys.version.split()[0]}
    for name in PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "not installed"
    return found


def run_info(seed: int, data_md5s: dict[str, str]) -> dict[str, Any]:
    """Everything that describes where and how a run ran, beside its config."""
    return {
        "command": [sys.executable, *sys.argv],
        "seed": seed,
        "git": git_state(),
        "versions": versions(),
        "hardware": hardware(),
        "numerics": numerics(),
        "data_md5": data_md5s,
        "env": {"CUDA_VISIBLE_DEVICES": os.environ.get("CUDA_VISIBLE_DEVICES"),
                "WANDB_MODE": os.environ.get("WANDB_MODE")},
        "started": now(),
    }
