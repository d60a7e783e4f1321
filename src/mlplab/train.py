"""Build the datamodule, module, trainer and loggers from a composed config; fit, test, record.

`run(cfg)` is everything `train.py` does after Hydra has composed the config and the checks passed.
A run directory ends up holding `.hydra/` (config, overrides), `run_info.json` (seed, git, versions,
data MD5s, hardware, times), `metrics.json`, `checkpoints/` and the loggers' files.
"""

from __future__ import annotations

import json
import secrets
import shlex
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.callbacks import Callback, ModelCheckpoint, RichProgressBar
from pytorch_lightning.utilities import rank_zero_only
from rich.console import Console
from rich.syntax import Syntax
from rich.tree import Tree

from mlplab.callbacks import ActivationStats, ConfusionMatrix, GradientNorms, WeightImages
from mlplab.errors import UserError
from mlplab.guards import InterruptCheckpoint, NonFiniteLossGuard
from mlplab.loggers import build_loggers, finish_wandb, log_run
from mlplab.module import MLPClassifier
from mlplab.rundir import now, run_info

MODULE_GROUPS = ("model", "activation", "norm", "dropout", "l2", "optimizer", "scheduler")
# Keys a resumed run may change: more epochs, and where things are.
RESUMABLE_CHANGES = ("resume", "trainer.max_epochs", "data.root", "paths")


def print_config_tree(cfg: DictConfig, console: Console | None = None) -> None:
    """The resolved config, one branch per top-level key."""
    tree = Tree("config", guide_style="dim")
    for key, value in cfg.items():
        branch = tree.add(f"[bold]{key}[/bold]")
        text = OmegaConf.to_yaml(value, resolve=True) if OmegaConf.is_config(value) else str(value)
        branch.add(Syntax(text.rstrip(), "yaml", theme="ansi_dark", background_color="default"))
    (console or Console()).print(tree)


def build_module(cfg: DictConfig) -> MLPClassifier:
    groups = {name: OmegaConf.to_container(cfg[name], resolve=True) if cfg.get(name) is not None else {}
              for name in MODULE_GROUPS}
    return MLPClassifier(**groups)


def interactive() -> bool:
    return sys.stdout.isatty()


def build_trainer(cfg: DictConfig, callbacks: list[Callback], loggers: list) -> pl.Trainer:
    """Lightning's Trainer from cfg.trainer; `compile` is ours (see `maybe_compile`), not the Trainer's."""
    if interactive():
        callbacks = [*callbacks, RichProgressBar()]
    trainer_cfg = OmegaConf.to_container(cfg.trainer, resolve=True)
    trainer_cfg.pop("compile", None)
    return instantiate(trainer_cfg, callbacks=callbacks, logger=loggers or False, enable_progress_bar=interactive())


def maybe_compile(module: MLPClassifier, cfg: DictConfig) -> pl.LightningModule:
    """torch.compile the module when trainer.compile=true; Lightning saves the uncompiled weights."""
    return torch.compile(module) if cfg.trainer.get("compile", False) else module


def checkpoint_callback(output_dir: Path, validates: bool) -> ModelCheckpoint:
    """best.ckpt by validation accuracy (when there is a validation set) and last.ckpt."""
    return ModelCheckpoint(
        dirpath=output_dir / "checkpoints",
        filename="best",
        monitor="val/acc" if validates else None,
        mode="max",
        save_top_k=1 if validates else 0,
        save_last=True,
        auto_insert_metric_name=False,
    )


def insight_callbacks() -> list[Callback]:
    """What the dashboard shows: weight images, gradient norms, activation statistics, confusion matrix."""
    # Drawing the weight grid costs ~0.25 s, a fifth of an epoch of the reference model on a CPU.
    return [WeightImages(every_n_epochs=5), GradientNorms(), ActivationStats(), ConfusionMatrix()]


def write_json(path: Path, content: dict[str, Any]) -> Path:
    path.write_text(json.dumps(content, indent=2) + "\n")
    return path


def write_metrics(output_dir: Path, metrics: dict[str, Any]) -> Path:
    return write_json(output_dir / "metrics.json", metrics)


def _flatten(container: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(container, dict):
        return {k: v for key, value in container.items() for k, v in _flatten(value, f"{prefix}{key}.").items()}
    return {prefix.rstrip("."): container}


def resume_checkpoint(cfg: DictConfig) -> Path:
    """The checkpoint to continue `cfg.resume` from, after checking the run's config matches this one."""
    run = Path(cfg.resume)
    last = run / "checkpoints" / "last.ckpt"
    if not last.is_file():
        raise UserError(f"resume={cfg.resume!r} has no checkpoints/last.ckpt: pass the directory of a run "
                        "that finished at least one epoch.")
    original = _flatten(OmegaConf.to_container(OmegaConf.load(run / ".hydra" / "config.yaml")))
    current = _flatten(OmegaConf.to_container(cfg))
    changed = sorted(
        key for key in original.keys() | current.keys()
        if original.get(key) != current.get(key) and not key.startswith(RESUMABLE_CHANGES)
    )
    if changed:
        overrides = OmegaConf.load(run / ".hydra" / "overrides.yaml")
        raise UserError(
            f"resume={cfg.resume!r} was started with other settings ({', '.join(changed[:5])} differ); "
            f"resume it with its own overrides: python train.py {' '.join(map(shlex.quote, overrides))} resume={cfg.resume}"
        )
    return last


def is_rank_zero() -> bool:
    """True in the process that owns the run directory (DDP's other ranks re-run train.py)."""
    return rank_zero_only.rank == 0


def start_info(cfg: DictConfig, output_dir: Path, data_md5s: dict[str, str]) -> dict[str, Any]:
    """run_info.json: written at the start; a resumed run keeps the original and notes the resume."""
    path = output_dir / "run_info.json"
    if cfg.get("resume") and path.is_file():
        info = json.loads(path.read_text())
        info.setdefault("resumed", []).append(now())
    else:
        info = {**run_info(cfg.seed, data_md5s), "wandb_id": secrets.token_hex(4)}
    if is_rank_zero():
        write_json(path, info)
    return info


def resume_command(cfg: DictConfig, output_dir: Path) -> str:
    from hydra.core.hydra_config import HydraConfig

    overrides = list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []
    overrides = [o for o in overrides if not o.startswith(("resume=", "hydra."))]
    return f"python train.py {' '.join(map(shlex.quote, overrides))} resume={output_dir}".replace("  ", " ")


def fit_and_test(cfg: DictConfig, output_dir: Path, trainer: pl.Trainer, module: MLPClassifier,
                 datamodule: pl.LightningDataModule, checkpoints: ModelCheckpoint, ckpt_path: Path | None) -> dict:
    started = time.perf_counter()
    trainer.fit(maybe_compile(module, cfg), datamodule=datamodule, ckpt_path=ckpt_path)
    fit_seconds = time.perf_counter() - started
    tested = "best" if checkpoints.monitor and checkpoints.best_model_path else "last"
    results = trainer.test(module, datamodule=datamodule, ckpt_path=tested, verbose=False)[0]
    best_val = checkpoints.best_model_score
    return {
        "name": cfg.name,
        "seed": cfg.seed,
        "test_acc": results["test/acc"],
        "test_loss": results["test/loss"],
        "val_acc_best": float(best_val) if best_val is not None else None,
        "tested_checkpoint": tested,
        "epochs": trainer.current_epoch,
        "global_steps": trainer.global_step,
        "fit_seconds": round(fit_seconds, 3),
        "wall_seconds": round(time.perf_counter() - started, 3),
        "output_dir": str(output_dir),
    }


def run(cfg: DictConfig) -> dict[str, Any]:
    """Train and test one configuration; return (and write to metrics.json) its final metrics."""
    output_dir = Path(cfg.paths.output_dir)
    ckpt_path = resume_checkpoint(cfg) if cfg.get("resume") else None
    if is_rank_zero():
        print_config_tree(cfg)
    pl.seed_everything(cfg.seed, workers=True)

    datamodule = instantiate(cfg.data, augment=instantiate(cfg.augment), _convert_="all")
    if is_rank_zero():  # where Lightning itself prepares data; the checked MD5s go into run_info.json
        datamodule.prepare_data()
    info = start_info(cfg, output_dir, datamodule.file_md5s)
    module = build_module(cfg)
    checkpoints = checkpoint_callback(output_dir, cfg.data.val_size > 0)
    loggers = build_loggers(cfg, wandb_id=info.get("wandb_id"))
    log_run(loggers, OmegaConf.to_container(cfg, resolve=True), info)
    guards = [NonFiniteLossGuard(), InterruptCheckpoint(resume_command(cfg, output_dir))]
    trainer = build_trainer(cfg, [checkpoints, *guards, *insight_callbacks()], loggers)
    try:
        metrics = fit_and_test(cfg, output_dir, trainer, module, datamodule, checkpoints, ckpt_path)
    except BaseException as error:
        if is_rank_zero():
            (output_dir / "error.log").write_text("".join(traceback.format_exception(error)))
        finish_wandb(loggers, None, failed=True)
        raise
    finish_wandb(loggers, metrics, failed=False)
    if trainer.is_global_zero:
        write_metrics(output_dir, metrics)
        write_json(output_dir / "run_info.json", {**info, "ended": now(), "metrics": metrics})
        Console(soft_wrap=True).print(
            f"[bold green]test accuracy {metrics['test_acc']:.2%}[/] (loss {metrics['test_loss']:.4f}, "
            f"{metrics['epochs']} epochs, {metrics['wall_seconds']:.0f} s) -> {output_dir}"
        )
    return metrics
