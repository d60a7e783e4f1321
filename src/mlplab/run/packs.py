"""The life of a pack of more than one member, beside the pack's own (`mlplab.run.training`).

The pack's process writes its own records in its directory as a single run does (status.json,
checkpoints/last.ckpt, its loggers' files with the members' means); `PackRun` adds each member's:
it starts their records, gives them their own loggers, saves their best checkpoints, tests each
member's best weights in one pass, and ends each member's record the way that member ended.
"""

from __future__ import annotations

import os
import secrets
import socket
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.callbacks import Checkpoint
from pytorch_lightning.loggers import CSVLogger, Logger

from mlplab.core.data import member_seeds
from mlplab.run import resume
from mlplab.run.loggers import build_loggers, finish_wandb, in_wandb_sweep, log_run
from mlplab.run.members import Member, MemberBest, MemberLoggers, best_weights, member_checkpoint, member_config, \
    plan_members, write_summary
from mlplab.run.provenance import run_info
from mlplab.run.records import (ERROR_LOG, FAILED, FINISHED, INTERRUPTED, LAST_CHECKPOINT, METRICS_FILE,
                                RUN_INFO_FILE, RUNNING, checkpoint_path, claim, now, read_json, release, write_json,
                                write_status, write_text)
from mlplab.lightning_internals import checkpoint_contents


class MemberLast(Checkpoint):
    """Each training member's checkpoints/last.ckpt at every epoch's end, as a single run's (what eval.py
    tests without validation). A Checkpoint, so Lightning calls it after the module's epoch-end logging."""

    def __init__(self, members: list[Member]) -> None:
        self.members = members

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.is_global_zero or trainer.fast_dev_run:
            return
        contents = checkpoint_contents(trainer)
        for member in self.members:
            if member.index in pl_module.failed_members:
                continue  # its last good state is its best.ckpt
            path = checkpoint_path(member.directory, LAST_CHECKPOINT)
            path.parent.mkdir(parents=True, exist_ok=True)
            torch.save(member_checkpoint(contents, member, len(self.members)), path)


class PackRun:
    """The members' records of one pack run (rank zero writes them)."""

    def __init__(self, cfg: DictConfig, overrides: list[str]) -> None:
        self.cfg, self.pack_dir = cfg, Path(cfg.paths.output_dir)
        self.members = plan_members(cfg, member_seeds(cfg.seed), overrides)
        self.best = MemberBest(self.members)
        self.module: pl.LightningModule | None = None

    def callbacks(self) -> list[pl.Callback]:
        return [self.best, MemberLast(self.members)]

    def start(self, data_md5s: dict[str, str]) -> None:
        """Each member's status (running) and run_info.json (a resumed pack keeps each member's own)."""
        for member in self.members:
            claim(member.directory)  # one owner: a resume of the member alone is refused meanwhile
            path = member.directory / RUN_INFO_FILE
            info = read_json(path) if self.cfg.get("resume") else None
            if info is not None:
                info.setdefault("resumed", []).append(now())
            else:
                info = {**run_info(member.seed, data_md5s), "wandb_id": secrets.token_hex(4),
                        "pack": str(self.pack_dir)}
            write_json(path, info)
            # A resumed member has no final metrics until it finishes again (an earlier segment's are stale).
            (member.directory / METRICS_FILE).unlink(missing_ok=True)
            write_status(member.directory, RUNNING, pid=os.getpid(), host=socket.gethostname(), started=now(),
                         ended=None, signal=None, error=None, pack=str(self.pack_dir))

    def loggers(self, module: pl.LightningModule, checkpoint: Path | None) -> list[Logger]:
        """The logger that writes every member's rows to its own loggers (started here, curves continued
        from `checkpoint` on a resume)."""
        self.module = module
        position = resume.checkpoint_position(checkpoint) if checkpoint is not None else None
        for member in self.members:
            config = member_config(self.cfg, member.seed, member.directory)
            info = read_json(member.directory / RUN_INFO_FILE) or {}
            # Under a sweep agent the pack reports to the agent's run; its members keep their files.
            member.loggers = build_loggers(config, wandb_id=info.get("wandb_id"), wandb=not in_wandb_sweep(),
                                           group_runs=True)
            if position is not None:
                for logger in member.loggers:
                    if isinstance(logger, CSVLogger):
                        resume.continue_curves(logger, member.directory, *position)
            log_run(member.loggers, OmegaConf.to_container(config, resolve=True), info)
        return [MemberLoggers(self.members, module)]

    def test(self, trainer: pl.Trainer, datamodule: pl.LightningDataModule) -> dict[str, list[float]]:
        """Each member's test metrics, on its best weights (its last where nothing was validated)."""
        module = self.module
        module.load_state_dict(best_weights(module, self.members))
        trainer.test(module, datamodule=datamodule, verbose=False, weights_only=True)
        return {name: list(values) for name, values in module.member_values.items() if name.startswith("test/")}

    def member_metrics(self, pack: dict[str, Any], tested: dict[str, list[float]]) -> list[dict[str, Any]]:
        """Each member's metrics.json: the pack's fit, with the member's own numbers."""
        records = []
        for member in self.members:
            best = self.best.best.get(member.index)
            records.append({**pack, "seed": member.seed, "test_acc": tested["test/acc"][member.index],
                            "test_loss": tested["test/loss"][member.index], "val_acc_best": best,
                            "tested_checkpoint": "best" if best is not None else "last",
                            "output_dir": str(member.directory), "pack": str(self.pack_dir)})
        return records

    def finish(self, records: list[dict[str, Any]]) -> dict[str, Any]:
        """End each member's record as it ended (finished, or failed at its step); the pack's summary."""
        ended = []
        for member, record in zip(self.members, records):
            failure = self.module.failed_members.get(member.index) if self.module is not None else None
            if failure is not None:
                self._failed(member, failure)
                ended.append({"seed": member.seed, "status": FAILED})
                continue
            finish_wandb(member.loggers, record, FINISHED)
            write_json(member.directory / METRICS_FILE, record)
            info = read_json(member.directory / RUN_INFO_FILE) or {}
            write_json(member.directory / RUN_INFO_FILE, {**info, "ended": now(), "metrics": record})
            write_status(member.directory, FINISHED, ended=now(), smoke=record["smoke"])
            ended.append({**record, "status": FINISHED})
        epochs = records[0]["epochs"] if records else 0
        return write_summary(self.pack_dir, ended, epochs=epochs)

    def release(self) -> None:
        for member in self.members:
            release(member.directory)

    def _failed(self, member: Member, error: str) -> None:
        finish_wandb(member.loggers, None, FAILED, exit_code=1)
        write_text(member.directory / ERROR_LOG, f"{error}\n")
        write_status(member.directory, FAILED, error=error, ended=now())

    def stopped(self, status: str, error: str | None = None, signal: str | None = None) -> None:
        """The pack stopped (a signal, an error): members still training end with its status."""
        failed = self.module.failed_members if self.module is not None else {}
        for member in self.members:
            if member.index in failed:
                self._failed(member, failed[member.index])
            elif status == INTERRUPTED:
                finish_wandb(member.loggers, None, INTERRUPTED, exit_code=1)
                write_status(member.directory, INTERRUPTED, signal=signal, ended=now())
            else:
                self._failed(member, error or "the pack failed (see the pack's error.log)")
