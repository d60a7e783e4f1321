"""The sweep dir: checked before anything is written, and spelt for Hydra in the trials' overrides.

Any folder the OS can hold works. A path it cannot (a name over NAME_MAX bytes, no room under
PATH_MAX for the run's own files, a file where a folder must be, bytes that are not UTF-8, which
Hydra's config files cannot hold) is refused in one line before any trial starts.

Every override the trials get is quoted by `mlplab.run.overrides`, but Hydra 1.3 itself copies a run's
directory into `hydra.runtime.output_dir` unescaped, where OmegaConf reads `${` as an interpolation:
such a run cannot start. A sweep dir whose path holds `${` is therefore given to its trials through
a link without it (`<temp dir>/mlplab-sweep-links/<hash of the path>` -> the sweep dir); the files
are the sweep dir's all the same.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

from mlplab.errors import SweepError

LINKS_DIR = "mlplab-sweep-links"
INTERPOLATION_START = "${"
# Bytes a trial's files need below the sweep dir: <trial id>/wandb/offline-run-<time>-<id>/files/...,
# .previous/<trial id>.<n>/.hydra/resumed-<time>/overrides.yaml and the like, with room to spare.
RUN_FILES_DEPTH = 200


def _limit(path: Path, name: str, default: int) -> int:
    """os.pathconf of the nearest folder that exists (limits differ between file systems)."""
    for parent in path.parents:  # not the path itself, which may be the name too long to stat
        try:
            if parent.is_dir():
                return os.pathconf(parent, name)
        except (OSError, ValueError):
            continue
    return default


def check_sweep_dir(sweep_dir: Path, option: str = "--sweep-dir") -> None:
    """Refuse, in one line, a sweep dir the OS (or Hydra's files) cannot hold; write nothing."""
    text = str(sweep_dir)
    try:
        encoded = text.encode()
    except UnicodeEncodeError:
        raise SweepError(f"{option} {text!r} is not valid UTF-8, which a run's config files cannot hold: "
                         "choose a folder whose name is text") from None
    name_max = _limit(sweep_dir, "PC_NAME_MAX", 255)
    for part in sweep_dir.parts:
        if len(part.encode()) > name_max:
            raise SweepError(f"{option}: the name {part[:40]!r}... is {len(part.encode())} bytes; this file system "
                             f"allows {name_max}: choose a shorter folder name")
    path_max = _limit(sweep_dir, "PC_PATH_MAX", 4096)
    if len(encoded) + RUN_FILES_DEPTH > path_max:
        raise SweepError(f"{option}: the path is {len(encoded)} bytes, which leaves no room under this system's "
                         f"{path_max} for the runs' files ({RUN_FILES_DEPTH} more): choose a shorter path")
    blocking = next((parent for parent in (sweep_dir, *sweep_dir.parents)
                     if parent.exists() and not parent.is_dir()), None)
    if blocking is not None:
        raise SweepError(f"{option} {sweep_dir}: {blocking} is a file, not a folder: choose another path")


def link_path(sweep_dir: Path) -> Path:
    """Where the link of a sweep dir whose path Hydra cannot take goes."""
    digest = hashlib.sha256(str(sweep_dir).encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / LINKS_DIR / digest


def run_root(sweep_dir: Path) -> Path:
    """The spelling of the sweep dir in the trials' `hydra.run.dir` and `resume` (see the docstring)."""
    return link_path(sweep_dir) if INTERPOLATION_START in str(sweep_dir) else sweep_dir


def make_run_root(sweep_dir: Path) -> Path:
    """Create the link `run_root` names, where there is one; the folder the trials' runs go to."""
    root = run_root(sweep_dir)
    if root == sweep_dir:
        return root
    if INTERPOLATION_START in str(root):
        raise SweepError(f"--sweep-dir {sweep_dir}: Hydra reads `${{` in a run's folder as an interpolation, and "
                         f"the temporary folder for a link without it, {root.parent}, holds it too: set TMPDIR "
                         "or choose a sweep dir without `${`")
    try:
        root.parent.mkdir(parents=True, exist_ok=True)
        if root.is_symlink() and Path(os.readlink(root)) != sweep_dir:
            root.unlink()
        if not root.is_symlink():
            root.symlink_to(sweep_dir, target_is_directory=True)
    except OSError as error:
        raise SweepError(f"cannot link {root} -> {sweep_dir} (Hydra cannot take `${{` in a run's folder): "
                         f"{error.strerror or error}") from None
    return root
