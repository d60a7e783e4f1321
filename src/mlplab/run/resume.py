"""A run continued in place on `resume=` (or a SLURM requeue) from the right checkpoint, with the
same settings and the curves of the earlier segments kept (`mlplab.run.directory` checks the folder
before Hydra writes into it).

A run resumes from `checkpoints/last.ckpt`, written at the end of each epoch: data order,
augmentation and the RNG states depend only on (seed, epoch) and the checkpoint, so the resumed run
ends bit-identical to an uninterrupted one. A run stopped before its first epoch ended has no such
checkpoint and starts over in the same directory.
"""

from __future__ import annotations

import csv
import shlex
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from mlplab.errors import UserError
from mlplab.fastpath import EARLIER_KEYS, RESUMABLE
from mlplab.lightning_internals import continue_csv_columns, logged_step
from mlplab.run.overrides import readable_override
from mlplab.run.records import HYDRA_DIR, LAST_CHECKPOINT, METRICS_CSV, checkpoint_path

# Keys a resumed run may change: more epochs, where things are, and how fast steps are run.
RESUMABLE_CHANGES = ("resume", "trainer.max_epochs", "data.root", "paths", *(f"fastpath.{key}" for key in RESUMABLE))


def _resumable(key: str) -> bool:
    return any(key == prefix or key.startswith(f"{prefix}.") for prefix in RESUMABLE_CHANGES)


def _earlier_layout(key: str, original: dict[str, Any], current: dict[str, Any]) -> bool:
    """Whether `key` differs only because the run was started by an earlier version of conf/: the fast
    path's settings then lived in data and model, the fastpath and callbacks groups did not exist, and
    the model group named no class (the same ones were built)."""
    if key in EARLIER_KEYS:
        return key not in current
    if key == "model._target_":
        return key not in original
    group = key.split(".")[0]
    return group in ("callbacks", "fastpath") and not any(name.startswith(f"{group}.") for name in original)


def _flatten(container: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(container, dict):
        return {k: v for key, value in container.items() for k, v in _flatten(value, f"{prefix}{key}.").items()}
    return {prefix.rstrip("."): container}


def last_checkpoint(run_dir: Path) -> Path | None:
    path = checkpoint_path(run_dir, LAST_CHECKPOINT)
    return path if path.is_file() else None


def check_same_settings(cfg: DictConfig, run_dir: Path) -> None:
    """Refuse to resume with settings other than the run's own (a different run would result)."""
    saved = run_dir / HYDRA_DIR / "config.yaml"
    if not saved.is_file():
        raise UserError(f"resume={str(run_dir)!r} has no {HYDRA_DIR}/config.yaml: pass the directory of a run "
                        "that train.py started.")
    original = _flatten(OmegaConf.to_container(OmegaConf.load(saved)))
    current = _flatten(OmegaConf.to_container(cfg))  # unresolved on both sides: the same text is the same setting
    changed = sorted(key for key in original.keys() | current.keys()
                     if original.get(key) != current.get(key) and not _resumable(key)
                     and not key.startswith("hydra.") and not _earlier_layout(key, original, current))
    if changed:
        overrides = OmegaConf.load(run_dir / HYDRA_DIR / "overrides.yaml")
        raise UserError(
            f"resume={str(run_dir)!r} was started with other settings ({', '.join(changed[:5])} differ); "
            "resume it with its own overrides: "
            + shlex.join(["python", "train.py", *overrides, readable_override("resume", str(run_dir))])
        )


def checkpoint_position(path: Path) -> tuple[int, int]:
    """(epoch, global step) stored in a Lightning checkpoint."""
    checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    return int(checkpoint["epoch"]), logged_step(checkpoint)


def continue_curves(logger: Any, run_dir: Path, epoch: int, step: int) -> int:
    """Let a CSVLogger of a resumed run append to the rows logged up to the checkpoint at
    (epoch, step); the rows after it are dropped, as the resumed run logs them again. Returns how
    many rows are kept.

    Lightning's CSV writer deletes an existing metrics.csv when it starts: the rows are read first
    and written back once, after which the writer appends (and rewrites the file whole, rows kept,
    when a new column appears).
    """
    path = run_dir / METRICS_CSV
    if not path.is_file():
        return 0
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        header, rows = list(reader.fieldnames or []), list(reader)

    def logged_before(row: dict[str, str]) -> bool:
        row_epoch = int(float(row["epoch"])) if row.get("epoch") else epoch
        row_step = int(float(row["step"])) if row.get("step") else step
        return row_epoch <= epoch and row_step <= step

    kept = [row for row in rows if logged_before(row)]
    writer = logger.experiment  # created now: this is where the old file is removed
    columns = continue_csv_columns(writer, header)
    with path.open("w", newline="") as handle:
        csv_writer = csv.DictWriter(handle, fieldnames=columns)
        csv_writer.writeheader()
        csv_writer.writerows(kept)
    return len(kept)
