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

from mlplab.runfiles import now

PACKAGES = ("torch", "pytorch-lightning", "hydra-core", "omegaconf", "wandb", "torchmetrics", "torchvision")



def _git(*args: str) -> str | None:
    try:
        return subprocess.run(["git", *args], capture_output=True, text=True, check=True, timeout=10,
                              cwd=Path(__file__).resolve().parent).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None


def git_state() -> dict[str, Any]:
    commit = _git("rev-parse", "HEAD")
    status = _git("status", "--porcelain", "--untracked-files=no")
    return {"commit": commit, "dirty": bool(status) if status is not None else None}


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
