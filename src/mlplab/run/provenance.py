"""What describes where and how a run ran, for its run_info.json: command, seed, git state,
package versions, hardware, data MD5s."""

from __future__ import annotations

import os
import platform
import socket
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

from mlplab.run.records import now

PACKAGES = ("torch", "pytorch-lightning", "hydra-core", "omegaconf", "wandb", "torchmetrics", "torchvision")



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
        "data_md5": data_md5s,
        "env": {"CUDA_VISIBLE_DEVICES": os.environ.get("CUDA_VISIBLE_DEVICES"),
                "WANDB_MODE": os.environ.get("WANDB_MODE")},
        "started": now(),
    }
