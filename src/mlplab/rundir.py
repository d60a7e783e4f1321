"""Run directories: unique names, resuming in place, and `run_info.json`, which makes a run describe itself.

The resolvers are registered on import; `train.py` imports this module before Hydra composes.
"""

from __future__ import annotations

import os
import platform
import socket
import subprocess
import sys
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

PACKAGES = ("torch", "pytorch-lightning", "hydra-core", "omegaconf", "wandb", "torchmetrics", "torchvision")
_chosen: dict[str, str] = {}
_STARTED = datetime.now()


def unique_dir(path: str) -> str:
    """`path`, or `path-1`, `path-2`... : the first that this process could create itself.

    Creating the directory claims the name atomically, so two runs started in the same second get
    two directories. The choice is remembered because Hydra resolves the run dir more than once.
    """
    if path not in _chosen:
        candidate, suffix = Path(path), 0
        while True:
            try:
                candidate.mkdir(parents=True, exist_ok=False)
                break
            except FileExistsError:
                suffix += 1
                candidate = Path(f"{path}-{suffix}")
            except OSError as error:
                # Raised inside Hydra's config resolution, where an exception would print a traceback.
                sys.exit(f"error: cannot create the run directory {path}: {error.strerror}. "
                         "Point paths.output_root=... (or hydra.run.dir=...) at a writable folder.")
        _chosen[path] = str(candidate)
    return _chosen[path]


def run_dir(resume: str | None, fresh: str) -> str:
    """The directory of a resumed run, or a new unique one."""
    return str(resume) if resume else unique_dir(fresh)


def hydra_subdir(resume: str | None) -> str:
    """Where Hydra saves the composed config; a resumed run keeps its original `.hydra/` untouched."""
    return f".hydra/resumed-{_STARTED:%Y%m%d-%H%M%S}" if resume else ".hydra"


OmegaConf.register_new_resolver("mlplab.run_dir", run_dir, replace=True)
OmegaConf.register_new_resolver("mlplab.hydra_subdir", hydra_subdir, replace=True)


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


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


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
