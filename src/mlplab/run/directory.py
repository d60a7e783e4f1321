"""The run directory, checked before Hydra writes anything into it: a folder that already holds
another run is refused, resuming a finished run changes nothing, one owner at a time (a flock on
`.owner`), and a folder that cannot be created is named in one line.
"""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback as HydraCallback
from omegaconf import DictConfig, open_dict, read_write

from mlplab.errors import UserError
from mlplab.run.overrides import readable_override
from mlplab.run.records import FINISHED, METRICS_FILE, SUMMARY_FILE, claim, holds_a_run, read_json, read_status, slurm_job
from mlplab.run.resume import check_same_settings




def _can_create(folder: Path) -> bool:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return False
    return os.access(folder, os.W_OK)




class RunDirectoryGuard(HydraCallback):
    """Checks the run directory before Hydra writes anything into it (conf/config.yaml enables it).

    A folder that already holds a run is never mixed with a new one; resuming a finished run
    changes nothing; a folder that cannot be created is named in one line.
    """

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        # Hydra turns a callback's exception into a warning and goes on: a guard that cannot check
        # must stop the run instead, or two writers could share a folder.
        try:
            self._guard(config)
        except Exception as error:  # noqa: BLE001 - whatever kept the guard from checking
            cause = error
            while cause is not None and not isinstance(cause, UserError):  # e.g. name=null, inside a resolver
                cause = cause.__cause__ or cause.__context__
            if cause is not None:
                sys.exit(f"error: {cause}")
            reason = " ".join(str(error).split()) or type(error).__name__
            sys.exit(f"error: the run directory could not be checked before the run ({reason[:300]}); "
                     "check hydra.run.dir and paths.output_root.")

    def _guard(self, config: DictConfig) -> None:
        if any(os.environ.get(name, "0") != "0" for name in ("LOCAL_RANK", "NODE_RANK", "RANK")):
            return  # DDP's other ranks re-run train.py in rank zero's run directory, which it owns
        folder = Path(str(config.hydra.run.dir))
        resume = config.get("resume")
        if resume is not None and not str(resume).strip():
            sys.exit("error: resume='' names no run directory: pass resume=outputs/<date>/<time>_<name> to "
                     "continue a run, or leave resume out to start a new one.")
        if not resume and self._requeued(folder):
            # SLURM requeued this job (preemption, or Lightning's auto-requeue): continue its run.
            print(f"SLURM job {slurm_job()} requeued: resuming {folder}", file=sys.stderr)
            with open_dict(config), read_write(config):
                config.resume = str(folder)
            resume = config.resume
        if resume and not Path(str(resume)).is_dir():
            sys.exit(f"error: resume={str(resume)!r} is not a directory: pass the directory of a run that "
                     "train.py started.")
        if not resume and not _can_create(folder):
            sys.exit(f"error: cannot create the run directory {folder}: point paths.output_root=... "
                     "(or hydra.run.dir=...) at a writable folder.")
        if resume:  # reads only: resuming a finished run must change nothing, the owner file included
            self._check_resume(Path(str(resume)), config)
        try:
            claim(folder)  # before anything is written there: one owner at a time
        except (UserError, OSError) as error:
            sys.exit(f"error: {error}")
        if not resume and holds_a_run(folder):
            status = read_status(folder).get("status", "unknown")
            sys.exit(f"error: {folder} already holds a run (status: {status}); choose another hydra.run.dir, "
                     f"or continue that run with {shlex.quote(readable_override('resume', str(folder)))}")

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        folder = Path(str(config.hydra.sweep.dir))
        if not _can_create(folder):
            sys.exit(f"error: cannot create the sweep directory {folder}: point paths.output_root=... "
                     "(or hydra.sweep.dir=...) at a writable folder.")

    @staticmethod
    def _requeued(folder: Path) -> bool:
        return bool(slurm_job()) and holds_a_run(folder) and read_status(folder).get("slurm_job") == slurm_job()

    @staticmethod
    def _check_resume(folder: Path, config: DictConfig) -> None:
        try:
            check_same_settings(config, folder)
        except UserError as error:
            sys.exit(f"error: {error}")
        metrics = read_json(folder / METRICS_FILE)
        summary = read_json(folder / SUMMARY_FILE)  # a pack's: the mean over its members
        if metrics is None and summary is not None:
            accuracy = summary.get("test_acc")
            metrics = {"epochs": summary.get("epochs", 0),
                       "test_acc": accuracy["mean"] if isinstance(accuracy, dict) else float("nan")}
        if read_status(folder).get("status") == FINISHED and metrics is not None:
            if config.trainer.max_epochs <= metrics.get("epochs", 0):
                print(f"{folder} finished all {metrics.get('epochs')} epochs (test accuracy "
                      f"{metrics.get('test_acc', float('nan')):.2%}); nothing to resume, nothing changed. "
                      "Raise trainer.max_epochs to train it further.")
                sys.exit(0)
