"""Slots: where trials (offline) or agents (online) run, one at a time each.

`--gpus 0,1 --agents-per-gpu 2` gives four slots pinned round robin (0, 1, 0, 1): each slot's
processes see only their GPU through CUDA_VISIBLE_DEVICES. `--agents N` gives N slots that are not
pinned: CUDA_VISIBLE_DEVICES stays as the launcher found it (set or unset). Every slot gets an equal
share of the CPU cores through OMP_NUM_THREADS unless the user set it: N trials that each use every
core run slower together than one at a time.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from mlplab.sweep.spec import SweepError


@dataclass(frozen=True)
class Slot:
    """One place to run: its index and the GPU ids it pins (None: not pinned)."""

    index: int
    gpus: str | None = None


def make_slots(gpus: str | None, agents_per_gpu: int | None, agents: int | None) -> list[Slot]:
    """The slots the options ask for; one not-pinned slot by default."""
    if gpus is not None and agents is not None:
        raise SweepError("--gpus and --agents exclude each other: --gpus 0,1 --agents-per-gpu 2, or --agents 2")
    if gpus is None:
        if agents_per_gpu is not None:
            raise SweepError("--agents-per-gpu needs --gpus, e.g. --gpus 0,1 --agents-per-gpu 2")
        return [Slot(index) for index in range(1 if agents is None else agents)]
    devices = [device.strip() for device in gpus.split(",")]
    if not all(devices) or len(set(devices)) != len(devices):
        raise SweepError(f"--gpus={gpus!r} is not allowed: distinct GPU ids separated by commas, e.g. --gpus 0,1,2,3 "
                         "(more than one agent per GPU: --agents-per-gpu)")
    per_gpu = 1 if agents_per_gpu is None else agents_per_gpu
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
