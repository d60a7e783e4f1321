"""Slots: where trials (offline) or agents (online) run, one at a time each.

`--gpus 0,1 --agents-per-gpu 2` gives four slots pinned round robin (0, 1, 0, 1): each slot's
processes see only their GPU through CUDA_VISIBLE_DEVICES. The ids count the GPUs this launcher
sees, as torch numbers them: with CUDA_VISIBLE_DEVICES=2,3 inherited (a share of a node), `--gpus 0,1`
pins slots to physical GPUs 2 and 3. An id that is not a visible GPU is refused before anything runs.
`--agents N` gives N slots that are not pinned: CUDA_VISIBLE_DEVICES stays as the launcher found it
(set or unset). Every slot gets an equal share of the CPU cores through OMP_NUM_THREADS unless the user
set it: N trials that each use every core run slower together than one at a time.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from mlplab.errors import SweepError

# torch counts the GPUs in a process of its own: CUDA initialised in the launcher would make forking
# its trials unsafe (warm.py).
COUNT_GPUS = "import torch; print(torch.cuda.device_count())"
COUNT_TIMEOUT = 120.0


@dataclass(frozen=True)
class Slot:
    """One place to run: its index and the GPU ids it pins (None: not pinned)."""

    index: int
    gpus: str | None = None


def visible_gpu_count() -> int:
    """How many GPUs this launcher's processes see (torch.cuda.device_count(), CUDA_VISIBLE_DEVICES applied)."""
    try:
        counted = subprocess.run([sys.executable, "-c", COUNT_GPUS], capture_output=True, text=True,
                                 timeout=COUNT_TIMEOUT, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as error:
        raise SweepError(f"--gpus: cannot count the GPUs with torch ({error}): use --agents N instead") from None
    if counted.returncode != 0 or not counted.stdout.strip().isdigit():
        reason = (counted.stderr.strip().splitlines() or ["no answer"])[-1]
        raise SweepError(f"--gpus: cannot count the GPUs with torch ({reason}): use --agents N instead")
    return int(counted.stdout.strip())


def visible_gpus(environ: Mapping[str, str] | None = None, count: int | None = None) -> list[str]:
    """The device names a slot's CUDA_VISIBLE_DEVICES takes, by the index --gpus gives: entries of an
    inherited CUDA_VISIBLE_DEVICES (physical ids, UUIDs or MIG names), else 0..count-1."""
    environ = os.environ if environ is None else environ
    count = visible_gpu_count() if count is None else count
    inherited = environ.get("CUDA_VISIBLE_DEVICES")
    if inherited is None:
        return [str(index) for index in range(count)]
    return [name.strip() for name in inherited.split(",")][:count]


def make_slots(gpus: str | None, agents_per_gpu: int | None, agents: int | None,
               visible: Sequence[str] | None = None) -> list[Slot]:
    """The slots the options ask for; one not-pinned slot by default. `visible`: see visible_gpus."""
    if gpus is not None and agents is not None:
        raise SweepError("--gpus and --agents exclude each other: --gpus 0,1 --agents-per-gpu 2, or --agents 2")
    if gpus is None:
        if agents_per_gpu is not None:
            raise SweepError("--agents-per-gpu needs --gpus, e.g. --gpus 0,1 --agents-per-gpu 2")
        return [Slot(index) for index in range(1 if agents is None else agents)]
    ids = [device.strip() for device in gpus.split(",")]
    if not all(device.isdigit() and device.isascii() for device in ids) or len(set(map(int, ids))) != len(ids):
        raise SweepError(f"--gpus={gpus!r} is not allowed: distinct GPU indices separated by commas, e.g. "
                         "--gpus 0,1,2,3 (more than one agent per GPU: --agents-per-gpu)")
    visible = visible_gpus() if visible is None else list(visible)
    if missing := [device for device in ids if int(device) >= len(visible)]:
        seen = (f"{len(visible)} GPU(s), 0..{len(visible) - 1}" if visible else "no GPU")
        inherited = os.environ.get("CUDA_VISIBLE_DEVICES")
        within = f" (CUDA_VISIBLE_DEVICES={inherited!r})" if inherited is not None else ""
        raise SweepError(f"--gpus={gpus!r}: GPU {missing[0]} is not visible here; this machine shows {seen}{within}: "
                         "pass indices of those, or --agents N to run without pinning")
    per_gpu = 1 if agents_per_gpu is None else agents_per_gpu
    devices = [visible[int(device)] for device in ids]
    return [Slot(index, device) for index, device in enumerate(device for _ in range(per_gpu) for device in devices)]


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))  # the cores this process may use (a container's share)
    except AttributeError:
        return os.cpu_count() or 1


def slot_env(slot: Slot, slot_count: int, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a process started in `slot`: pinned to its GPU, with its share of the cores."""
    env = dict(os.environ if base is None else base)
    if slot.gpus is not None:
        env["CUDA_VISIBLE_DEVICES"] = slot.gpus
    env.setdefault("OMP_NUM_THREADS", str(max(1, usable_cores() // slot_count)))
    return env
