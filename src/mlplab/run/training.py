"""Build the datamodule, module, trainer and loggers from a composed config; fit, test, record.

`run(cfg)` is everything `train.py` does after Hydra has composed the config and the checks passed.
A run directory ends up holding `.hydra/` (config, overrides), `status.json` (running, finished,
failed or interrupted), `run_info.json` (seed, git, versions, data MD5s, hardware, times),
`metrics.json`, `checkpoints/` and the loggers' files. Every way a run can end leaves status.json
saying which one it was.
"""

from __future__ import annotations

import os
import secrets
import shlex
import signal
import socket
import sys
import traceback
import warnings
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from hydra.utils import get_class
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.callbacks import Checkpoint, ModelCheckpoint
from pytorch_lightning.loggers import CSVLogger
from pytorch_lightning.utilities import rank_zero_only
from rich.console import Console
from rich.syntax import Syntax
from rich.tree import Tree

from mlplab.core.classifier import MLPClassifier
from mlplab.core.data import MNISTDataModule, member_seeds
from mlplab.errors import ConfigError
from mlplab.run import resume
from mlplab.run.build import build_callbacks, build_datamodule, build_module, build_trainer, fast_path
from mlplab.run.callbacks import FitClock, FlushLoggers
from mlplab.run.loggers import build_loggers, finish_wandb, in_wandb_sweep, log_run
from mlplab.run.overrides import readable_override
from mlplab.run.provenance import run_info
from mlplab.run.records import (BEST_CHECKPOINT, CHECKPOINTS_DIR, ERROR_LOG, FAILED, FINISHED, INTERRUPTED,
                                INTERRUPTED_CHECKPOINT, LAST_CHECKPOINT, checkpoint_path, covers_all,
                                METRICS_FILE, RUN_INFO_FILE, RUNNING, now, read_json, release, slurm_job, write_json,
                                write_status, write_text)
from mlplab.run.members import SUMMARY_METRICS, is_pack
from mlplab.run.packs import PackRun
from mlplab.run.stops import NonFiniteLossGuard, RunInterrupted, StopOnSignal


def print_config_tree(cfg: DictConfig, console: Console | None = None) -> None:
    """The resolved config, one branch per top-level key."""
    tree = Tree("config", guide_style="dim")
    for key, value in cfg.items():
        branch = tree.add(f"[bold]{key}[/bold]")
        text = OmegaConf.to_yaml(value, resolve=True) if OmegaConf.is_config(value) else str(value)
        branch.add(Syntax(text.rstrip(), "yaml", theme="ansi_dark", background_color="default"))
    (console or Console()).print(tree)


def checkpoint_callback(output_dir: Path, validates: bool) -> ModelCheckpoint:
    """best.ckpt by validation accuracy (when there is a validation set), overwritten in place: a run
    directory never holds a stale `-v1` copy beside it."""
    return ModelCheckpoint(
        dirpath=output_dir / CHECKPOINTS_DIR,
        filename=BEST_CHECKPOINT.removesuffix(".ckpt"),
        monitor="val/acc" if validates else None,
        mode="max",
        save_top_k=1 if validates else 0,
        save_last=False,  # LastCheckpoint: Lightning writes last.ckpt only in epochs that saved a best one
        auto_insert_metric_name=False,
        enable_version_counter=False,
        save_on_train_epoch_end=True,
    )


class LastCheckpoint(Checkpoint):
    """checkpoints/last.ckpt at the end of every training epoch: what a resume continues from.

    A Checkpoint, so Lightning calls it after the module's own epoch-end logging: a checkpoint never
    predates its epoch's curves."""

    def __init__(self, output_dir: Path) -> None:
        self.path = checkpoint_path(output_dir, LAST_CHECKPOINT)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.fast_dev_run:  # as Lightning's own checkpoints: a smoke pass keeps none
            trainer.save_checkpoint(self.path)


def is_rank_zero() -> bool:
    """True in the process that owns the run directory (DDP's other ranks re-run train.py)."""
    return rank_zero_only.rank == 0


def start_info(cfg: DictConfig, output_dir: Path, data_md5s: dict[str, str]) -> dict[str, Any]:
    """run_info.json: written at the start; a resumed run keeps the original and notes the resume."""
    info = read_json(output_dir / RUN_INFO_FILE) if cfg.get("resume") else None
    if info is not None:
        info.setdefault("resumed", []).append(now())
    else:
        seeds = member_seeds(cfg.seed)
        info = {**run_info(seeds if is_pack(cfg) else seeds[0], data_md5s), "wandb_id": secrets.token_hex(4)}
    if is_rank_zero():
        write_json(output_dir / RUN_INFO_FILE, info)
    return info


def task_overrides() -> list[str]:
    """The command line's overrides (none when the config was composed without Hydra's app)."""
    from hydra.core.hydra_config import HydraConfig

    return list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []


def resume_command(output_dir: Path) -> str:
    overrides = [o for o in task_overrides() if not o.startswith(("resume=", "hydra."))]
    return shlex.join(["python", "train.py", *overrides, readable_override("resume", str(output_dir))])


def prepare_resume(output_dir: Path, loggers: list) -> Path | None:
    """The checkpoint a resumed run continues from (None: start over in place), with the CSV curves
    continued from it. The settings were compared before Hydra wrote anything (mlplab.run.directory)."""
    # Lightning warns about a non-empty log and checkpoint folder; continuing in it is the point here.
    warnings.filterwarnings("ignore", message=r"(Experiment logs|Checkpoint) directory .* exists and is not empty")
    checkpoint = resume.last_checkpoint(output_dir)
    if checkpoint is not None and is_rank_zero():
        position = resume.checkpoint_position(checkpoint)
        for logger in loggers:
            if isinstance(logger, CSVLogger):
                resume.continue_curves(logger, output_dir, *position)
    return checkpoint


def stopped_early(cfg: DictConfig, trainer: pl.Trainer, best_val: Any) -> str | None:
    """Why a fit that was set up as a full run did not give one: it ended before its last epoch
    (max_time), or no epoch was validated although there is a validation set."""
    if trainer.current_epoch < cfg.trainer.max_epochs:
        return f"training ended after {trainer.current_epoch} of trainer.max_epochs={cfg.trainer.max_epochs} epochs"
    if cfg.data.val_size > 0 and best_val is None:
        return "no epoch was validated (see trainer.check_val_every_n_epoch), so no checkpoint was selected"
    return None


def smoke_reason(cfg: DictConfig) -> str | None:
    """Why a run is only a check that the pipeline works, not a result (None: it is a result).

    fast_dev_run trains and tests a batch or two; limits and overfit_batches leave out part of an
    epoch, of the validation set (which selects the tested checkpoint) or of the test set; a
    max_steps that ends before max_epochs cuts the training short.
    """
    trainer = cfg.trainer
    if trainer.get("fast_dev_run"):
        return f"trainer.fast_dev_run={trainer.fast_dev_run}"
    reasons = [f"trainer.{name}={value}" for name in ("limit_train_batches", "limit_val_batches", "limit_test_batches")
               if not covers_all(value := trainer.get(name))]
    if trainer.get("overfit_batches"):
        reasons.append(f"trainer.overfit_batches={trainer.overfit_batches}")
    max_steps = trainer.get("max_steps")
    epoch_steps = get_class(cfg.data._target_).train_batches(cfg.data.val_size, cfg.data.batch_size)
    if max_steps not in (None, -1) and max_steps < epoch_steps * trainer.max_epochs:
        reasons.append(f"trainer.max_steps={max_steps} ends before trainer.max_epochs={trainer.max_epochs}")
    return ", ".join(reasons) or None


def fit_and_test(cfg: DictConfig, trainer: pl.Trainer, module: MLPClassifier, datamodule: MNISTDataModule,
                 checkpoints: ModelCheckpoint, clock: FitClock, ckpt_path: Path | None,
                 pack: PackRun | None = None) -> dict[str, Any] | list[dict[str, Any]]:
    """The run's metrics.json (a pack: each member's)."""
    trainer.fit(fast_path(cfg).prepared(module), datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
    fit_seconds = clock.fit_seconds
    if pack is not None:
        tested = pack.test(trainer, datamodule)
        best_val = max(pack.best.best.values()) if pack.best.best else None
    else:
        tested_checkpoint = "best" if checkpoints.monitor and checkpoints.best_model_path else "last"
        last = checkpoint_path(trainer.default_root_dir, LAST_CHECKPOINT)
        tested_path = "best" if tested_checkpoint == "best" else last if last.is_file() else None
        results = trainer.test(module, datamodule=datamodule, ckpt_path=tested_path, verbose=False,
                               weights_only=True)[0]
        best_val = checkpoints.best_model_score
    fit = {
        "name": cfg.name,
        "epochs": trainer.current_epoch,
        "global_steps": trainer.global_step,
        "fit_seconds": round(fit_seconds, 3),
        "wall_seconds": round(clock.wall_seconds, 3),
        "smoke": smoke_reason(cfg) or stopped_early(cfg, trainer, best_val),
    }
    if pack is not None:
        return pack.member_metrics(fit, tested)
    return {"name": cfg.name, "seed": cfg.seed, "test_acc": results["test/acc"], "test_loss": results["test/loss"],
            "val_acc_best": float(best_val) if best_val is not None else None, "tested_checkpoint": tested_checkpoint,
            **fit}


def record_stop(output_dir: Path, stop: StopOnSignal, pack: PackRun | None = None) -> int:
    """Say how an interrupted run continues; its exit status (128 + the signal's number)."""
    name = signal.Signals(stop.signum).name
    if pack is not None:
        pack.stopped(INTERRUPTED, signal=name)
    saved = f"; state saved to {stop.checkpoint}" if stop.checkpoint else ""
    last = resume.last_checkpoint(output_dir)
    start = "from the last completed epoch (checkpoints/last.ckpt)" if last else "from the start (no epoch had finished)"
    write_status(output_dir, INTERRUPTED, signal=name, ended=now())
    print(f"\nInterrupted by {name}{saved}.\nResume {start} with:\n  {resume_command(output_dir)}", file=sys.stderr)
    return 128 + int(stop.signum)


def run(cfg: DictConfig) -> dict[str, Any]:
    """Train and test one configuration; return (and write to metrics.json) its final metrics.

    Raises SystemExit(128 + N) when signal N stopped the run.
    """
    output_dir = Path(cfg.paths.output_dir)
    pack = PackRun(cfg, task_overrides()) if is_pack(cfg) and is_rank_zero() else None
    stop = StopOnSignal()
    stop.install()
    try:
        return _run(cfg, output_dir, stop, pack)
    except (RunInterrupted, SystemExit) as error:
        if stop.signum is None:
            raise
        if is_rank_zero():
            raise SystemExit(record_stop(output_dir, stop, pack)) from None
        raise SystemExit(128 + stop.signum) from error
    finally:
        stop.uninstall()
        release(output_dir)
        if pack is not None:
            pack.release()


def _run(cfg: DictConfig, output_dir: Path, stop: StopOnSignal, pack: PackRun | None) -> dict[str, Any]:
    if is_rank_zero():
        write_status(output_dir, RUNNING, pid=os.getpid(), host=socket.gethostname(), slurm_job=slurm_job(),
                     started=now(), ended=None, signal=None, error=None)
        print_config_tree(cfg)
    loggers: list = []
    try:
        metrics = _train(cfg, output_dir, stop, loggers, pack)
    except BaseException as error:
        if stop.signum is not None:
            finish_wandb(loggers, None, INTERRUPTED, exit_code=128 + stop.signum)
            raise
        finish_wandb(loggers, None, FAILED, exit_code=1)
        if is_rank_zero():
            reason = str(error).splitlines()[0] if str(error) else type(error).__name__
            write_text(output_dir / ERROR_LOG, "".join(traceback.format_exception(error)))
            write_status(output_dir, FAILED, error=reason, ended=now())
            if pack is not None:
                pack.stopped(FAILED, error=reason)
        raise
    if pack is not None:
        result = _finish_pack(cfg, output_dir, pack, metrics)
        means = {name: result[name]["mean"] for name in SUMMARY_METRICS if isinstance(result.get(name), dict)}
        finish_wandb(loggers, means, FINISHED)  # the agent's run, where a sweep started the pack
        return result
    finish_wandb(loggers, metrics, FINISHED)
    if is_rank_zero():
        write_json(output_dir / METRICS_FILE, metrics)
        write_json(output_dir / RUN_INFO_FILE, {**(read_json(output_dir / RUN_INFO_FILE) or {}), "ended": now(),
                                                "metrics": metrics})
        # A stop's checkpoint from an earlier segment is stale once the run has finished.
        checkpoint_path(output_dir, INTERRUPTED_CHECKPOINT).unlink(missing_ok=True)
        write_status(output_dir, FINISHED, ended=now(), smoke=metrics["smoke"])
        summary = (f"test accuracy {metrics['test_acc']:.2%}[/] (loss {metrics['test_loss']:.4f}, "
                   f"{metrics['epochs']} epochs, {metrics['wall_seconds']:.0f} s) -> {output_dir}")
        if metrics["smoke"]:
            summary = f"[bold yellow]smoke check only ({metrics['smoke']}), not a result: {summary}"
        Console(soft_wrap=True).print(f"[bold green]{summary}" if not metrics["smoke"] else summary)
    return metrics


def _finish_pack(cfg: DictConfig, output_dir: Path, pack: PackRun, records: list[dict[str, Any]]) -> dict[str, Any]:
    """End the members' records and the pack's: summary.json, run_info.json, status.json."""
    result = pack.finish(records)
    smoke = records[0]["smoke"] if records else None
    write_json(output_dir / RUN_INFO_FILE, {**(read_json(output_dir / RUN_INFO_FILE) or {}), "ended": now(),
                                            "summary": result})
    checkpoint_path(output_dir, INTERRUPTED_CHECKPOINT).unlink(missing_ok=True)
    write_status(output_dir, FINISHED, ended=now(), smoke=smoke, members=result["members"],
                 finished=result["finished"])
    accuracy = result.get("test_acc")
    told = (f"test accuracy {accuracy['mean']:.2%} mean of {accuracy['n']} members"
            + (f" (95 % interval {accuracy['ci95'][0]:.2%} to {accuracy['ci95'][1]:.2%})" if accuracy["ci95"] else "")
            if accuracy else "no member finished")
    line = f"pack of {result['members']}, {result['finished']} finished: {told} -> {output_dir}"
    Console(soft_wrap=True).print(f"[bold yellow]smoke check only ({smoke}), not a result: {line}" if smoke
                                  else f"[bold green]{line}")
    # What train.py returns (a Hydra sweeper's objective): the members' mean, as a single run's value.
    best = result.get("val_acc_best")
    return {**result, "output_dir": str(output_dir), "smoke": smoke,
            "val_acc_best": best["mean"] if isinstance(best, dict) else None}


def _train(cfg: DictConfig, output_dir: Path, stop: StopOnSignal, loggers: list,
           pack: PackRun | None = None) -> dict[str, Any] | list[dict[str, Any]]:
    """Everything between the first status and the last: each step may fail or be stopped."""
    checkpoints, clock = checkpoint_callback(output_dir, cfg.data.val_size > 0 and pack is None), FitClock()
    # What the run's records depend on (its checkpoints, stops, times and curves on disk) is not an
    # option; what it measures besides (conf/callbacks) is.
    callbacks = [checkpoints, LastCheckpoint(output_dir), clock, stop, NonFiniteLossGuard(), FlushLoggers(),
                 *(pack.callbacks() if pack else []),
                 *build_callbacks(cfg)]
    trainer = build_trainer(cfg, callbacks, [])  # before any data is read: Lightning checks its own arguments
    if is_pack(cfg) and trainer.world_size > 1:
        raise ConfigError(f"seed={list(member_seeds(cfg.seed))} trains a pack in one process; on "
                          f"{trainer.world_size} devices give each seed its own run (seed=N), or use one device.")
    pl.seed_everything(member_seeds(cfg.seed)[0], workers=True)  # each member draws from its own seed
    datamodule = build_datamodule(cfg)
    if is_rank_zero():  # where Lightning itself prepares data
        datamodule.prepare_data()
    datamodule.setup("fit")  # checks the MD5s, which go into run_info.json
    info = start_info(cfg, output_dir, datamodule.file_md5s)
    module = build_module(cfg, datamodule)
    # A pack's members are its wandb runs, grouped; under a sweep agent the agent's one run is the pack's.
    loggers += build_loggers(cfg, wandb_id=info.get("wandb_id"), wandb=pack is None or in_wandb_sweep())
    ckpt_path = prepare_resume(output_dir, loggers) if cfg.get("resume") else None
    log_run(loggers, OmegaConf.to_container(cfg, resolve=True), info)
    if pack is not None:
        pack.start(datamodule.file_md5s)
        loggers += pack.loggers(module, ckpt_path)
    trainer.loggers = loggers
    metrics = fit_and_test(cfg, trainer, module, datamodule, checkpoints, clock, ckpt_path, pack)
    return metrics if pack is not None else {**metrics, "output_dir": str(output_dir)}
