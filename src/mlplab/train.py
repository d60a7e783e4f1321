"""Build the datamodule, module, trainer and loggers from a composed config; fit, test, record.

`run(cfg)` is everything `train.py` does after Hydra has composed the config and the checks passed.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.callbacks import Callback, ModelCheckpoint, RichProgressBar
from rich.console import Console
from rich.syntax import Syntax
from rich.tree import Tree

from mlplab.module import MLPClassifier

MODULE_GROUPS = ("model", "activation", "norm", "dropout", "l2", "optimizer")


def print_config_tree(cfg: DictConfig, console: Console | None = None) -> None:
    """The resolved config, one branch per top-level key."""
    tree = Tree("config", guide_style="dim")
    for key, value in cfg.items():
        branch = tree.add(f"[bold]{key}[/bold]")
        text = OmegaConf.to_yaml(value, resolve=True) if OmegaConf.is_config(value) else str(value)
        branch.add(Syntax(text.rstrip(), "yaml", theme="ansi_dark", background_color="default"))
    (console or Console()).print(tree)


def build_module(cfg: DictConfig) -> MLPClassifier:
    groups = {name: OmegaConf.to_container(cfg[name], resolve=True) for name in MODULE_GROUPS}
    return MLPClassifier(**groups)


def build_loggers(cfg: DictConfig) -> list:
    return [instantiate(spec) for spec in (cfg.get("logger") or {}).values()]


def interactive() -> bool:
    return sys.stdout.isatty()


def build_trainer(cfg: DictConfig, callbacks: list[Callback], loggers: list) -> pl.Trainer:
    """Lightning's Trainer from cfg.trainer; `compile` is ours (see `maybe_compile`), not the Trainer's."""
    if interactive():
        callbacks = [*callbacks, RichProgressBar()]
    trainer_cfg = OmegaConf.to_container(cfg.trainer, resolve=True)
    trainer_cfg.pop("compile", None)
    return instantiate(
        trainer_cfg,
        callbacks=callbacks,
        logger=loggers or False,
        enable_progress_bar=interactive(),
    )


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


def write_metrics(output_dir: Path, metrics: dict[str, Any]) -> Path:
    path = output_dir / "metrics.json"
    path.write_text(json.dumps(metrics, indent=2) + "\n")
    return path


def run(cfg: DictConfig) -> dict[str, Any]:
    """Train and test one configuration; return (and write to metrics.json) its final metrics."""
    output_dir = Path(cfg.paths.output_dir)
    print_config_tree(cfg)
    pl.seed_everything(cfg.seed, workers=True)

    datamodule = instantiate(cfg.data, augment=instantiate(cfg.augment), _convert_="all")
    module = build_module(cfg)
    validates = cfg.data.val_size > 0
    checkpoints = checkpoint_callback(output_dir, validates)
    trainer = build_trainer(cfg, [checkpoints], build_loggers(cfg))

    started = time.perf_counter()
    trainer.fit(maybe_compile(module, cfg), datamodule=datamodule)
    fit_seconds = time.perf_counter() - started
    tested = "best" if validates and checkpoints.best_model_path else "last"
    results = trainer.test(module, datamodule=datamodule, ckpt_path=tested, verbose=False)[0]

    best_val = checkpoints.best_model_score
    metrics = {
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
    write_metrics(output_dir, metrics)
    Console(soft_wrap=True).print(
        f"[bold green]test accuracy {metrics['test_acc']:.2%}[/] (loss {metrics['test_loss']:.4f}, "
        f"{metrics['epochs']} epochs, {metrics['wall_seconds']:.0f} s) -> {output_dir}"
    )
    return metrics
