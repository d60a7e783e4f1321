"""The members of a pack, each recorded as the run its seed would be alone.

`seed=[1,2,3]` trains one pack (one process, one batched model, `mlplab.core.model`) in the run
directory Hydra chose; each member gets a directory inside it, `seed-<S>/`, laid out exactly like a
single run's: `.hydra/config.yaml` with its own seed, status.json, metrics.json, run_info.json,
csv/metrics.csv, checkpoints/best.ckpt (what eval.py tests), figures. The pack's own directory holds
pack.json (its members), the process's status.json, checkpoints/last.ckpt (what a resume continues
from) and summary.json (each metric's mean, std and 95 % interval over the finished members).

A pack of one is a single run: its directory is its member's, and none of this is needed.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.loggers import Logger
from scipy import stats

from mlplab.errors import ConfigError
from mlplab.lightning_internals import checkpoint_contents
from mlplab.run.records import (BEST_CHECKPOINT, HYDRA_DIR, PACK_FILE, SUMMARY_FILE, checkpoint_path, read_json,
                                write_json, write_text)

SUMMARY_METRICS = ("test_acc", "test_loss", "val_acc_best")


@dataclass
class Member:
    """One member of a pack: its place on the member axis, its seed, its run directory and loggers."""

    index: int
    seed: int
    directory: Path
    loggers: list[Logger] = field(default_factory=list)


def member_dir(pack_dir: Path, seed: int) -> Path:
    return Path(pack_dir) / f"seed-{seed}"


def is_pack(cfg: DictConfig) -> bool:
    """Whether the config trains a pack: its `seed` is a list (of one or more seeds)."""
    return OmegaConf.is_list(cfg.get("seed"))


FULL_PRECISION = ("32", "32-true")


def _refuse(key: str, value: Any, why: str) -> None:
    raise ConfigError(f"{key}={value!r} is not allowed with seed=[...] (a pack): {why}.")


def check_pack(cfg: DictConfig) -> None:
    """What a pack cannot carry exactly, refused before any work: each member must equal its seed alone."""
    data_seed = cfg.data.get("seed") if cfg.get("data") is not None else None
    if not is_pack(cfg):
        if OmegaConf.is_list(data_seed):
            raise ConfigError(f"data.seed={OmegaConf.to_object(data_seed)!r} is not allowed: a list of seeds is "
                              "a pack, given as seed=[...] (data.seed follows it).")
        return
    data_seed = OmegaConf.to_object(data_seed) if OmegaConf.is_list(data_seed) else data_seed
    if data_seed is not None and data_seed != OmegaConf.to_object(cfg.seed):
        _refuse("data.seed", data_seed,
                "in a pack each member's data order and augmentation come from its own seed; leave data.seed out")
    trainer = cfg.get("trainer") or {}
    precision = trainer.get("precision", "32-true")
    if str(precision) not in FULL_PRECISION:
        _refuse("trainer.precision", precision, "mixed precision rounds a batch of members differently from one "
                "member alone; train in full precision, or each seed alone (seed=N)")
    if (cfg.get("fastpath") or {}).get("compile") is True:
        _refuse("fastpath.compile", True, "compiled kernels sum a pack in another order than a member alone; "
                "set fastpath.compile=false")
    devices, strategy = trainer.get("devices", 1), str(trainer.get("strategy", ""))
    several = (isinstance(devices, int) and devices > 1) or (OmegaConf.is_list(devices) and len(devices) > 1)
    if several or "ddp" in strategy:
        _refuse("trainer.devices", OmegaConf.to_object(devices) if OmegaConf.is_list(devices) else devices,
                "a pack trains in one process on one device; give each seed its own run (seed=N) to use several")


def member_config(cfg: DictConfig, seed: int, directory: Path | None = None) -> DictConfig:
    """The pack's config as the member's own run would have it: its seed; with `directory`, its
    directory (what its loggers write to); without, Hydra's, as a single run's config is saved, so
    that rerunning it writes a new run rather than over the member."""
    member = OmegaConf.create(OmegaConf.to_container(cfg, resolve=False))
    member.seed = seed
    if OmegaConf.is_list(member.data.get("seed")):
        member.data.seed = seed
    if directory is not None:
        member.paths.output_dir = str(directory)
    for spec in (member.get("logger") or {}).values():
        if spec is not None and "group" in spec:  # wandb groups a pack's members (mean and band)
            spec.group = Path(cfg.paths.output_dir).name
            spec.name = f"{cfg.name}-seed{seed}"
    return member


def member_overrides(overrides: list[str], seed: int) -> list[str]:
    """The pack's command-line overrides with its seed list replaced by the member's seed."""
    kept = [o for o in overrides if not o.lstrip("+~").startswith("seed=")]
    return [*kept, f"seed={seed}"]


def plan_members(cfg: DictConfig, seeds: list[int], overrides: list[str]) -> list[Member]:
    """The members' directories, each with the config its run would have (written at the pack's
    start, as Hydra writes a single run's; a resumed pack keeps them), and the pack's pack.json."""
    pack_dir = Path(cfg.paths.output_dir)
    members = []
    for index, seed in enumerate(seeds):
        directory = member_dir(pack_dir, seed)
        hydra_dir = directory / HYDRA_DIR
        hydra_dir.mkdir(parents=True, exist_ok=True)
        if not (hydra_dir / "config.yaml").is_file():
            write_text(hydra_dir / "config.yaml", OmegaConf.to_yaml(member_config(cfg, seed)))
            write_text(hydra_dir / "overrides.yaml", OmegaConf.to_yaml(member_overrides(overrides, seed)))
        members.append(Member(index, seed, directory))
    write_json(pack_dir / PACK_FILE, {"seeds": seeds, "members": [m.directory.name for m in members]})
    return members


class MemberLoggers(Logger):
    """Stands in the trainer's loggers for all members: each row Lightning (or the module) logs is
    written to every training member's own loggers, with that member's own values (the module's
    `member_values`) in place of the pack's means."""

    def __init__(self, members: list[Member], module: pl.LightningModule) -> None:
        super().__init__()
        self.members, self.module = members, module

    @property
    def name(self) -> str:
        return "members"

    @property
    def version(self) -> str:
        return ""

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        values = self.module.member_values
        for member in self.members:
            if member.index in self.module.failed_members:
                continue  # its record ends where its loss went non-finite
            row = {key: values[key][member.index] if key in values else value for key, value in metrics.items()}
            for logger in member.loggers:
                logger.log_metrics(row, step=step)

    def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
        pass  # each member's loggers got its own config (log_run)

    def save(self) -> None:
        for member in self.members:
            for logger in member.loggers:
                logger.save()

    def finalize(self, status: str) -> None:
        for member in self.members:
            for logger in member.loggers:
                logger.finalize(status)


def _is_member_tensor(value: Any, members: int) -> bool:
    return isinstance(value, torch.Tensor) and value.dim() > 0 and value.shape[0] == members


def _member_slice(value: Any, index: int, members: int) -> Any:
    """`value` with every tensor that has the member axis cut to member `index`'s (an axis of one)."""
    if _is_member_tensor(value, members):
        return value[index : index + 1].clone()
    if isinstance(value, dict):
        return {key: _member_slice(item, index, members) for key, item in value.items()}
    if isinstance(value, list):
        return [_member_slice(item, index, members) for item in value]
    return value


def member_optimizer_state(state: dict[str, Any], index: int, members: int) -> dict[str, Any]:
    """One member's part of the pack optimizer's state. The optimizer holds each parameter's members as
    tensors of their own (`MemberViews`), parameter by parameter: in each group, member m's views are
    every members-th from m; renumbered from 0 they are a single run's."""
    groups, kept, number = [], {}, 0
    for group in state["param_groups"]:
        own = group["params"][index::members]
        renumbered = []
        for old in own:
            if old in state["state"]:
                kept[number] = state["state"][old]
            renumbered.append(number)
            number += 1
        groups.append({**group, "params": renumbered})
    return {"state": kept, "param_groups": groups}


def member_checkpoint(checkpoint: dict[str, Any], member: Member, members: int) -> dict[str, Any]:
    """A pack checkpoint cut to one member: what a single run of its seed saves (weights, optimizer
    state, its dropout generators, its seed in the settings)."""
    result = {key: value for key, value in checkpoint.items() if key not in ("callbacks", "member_generators")}
    result["state_dict"] = _member_slice(checkpoint["state_dict"], member.index, members)
    result["optimizer_states"] = [member_optimizer_state(state, member.index, members)
                                  for state in checkpoint.get("optimizer_states", [])]
    result["member_generators"] = {device: [states[member.index]]
                                   for device, states in checkpoint.get("member_generators", {}).items()}
    result["failed_members"] = {}
    settings = dict(checkpoint["hyper_parameters"])
    settings["model"] = {**settings["model"], "seeds": [member.seed]}
    result["hyper_parameters"] = settings
    if "datamodule_hyper_parameters" in checkpoint:
        result["datamodule_hyper_parameters"] = {**checkpoint["datamodule_hyper_parameters"], "seed": member.seed}
    return result


class MemberBest(pl.Callback):
    """Each member's checkpoints/best.ckpt: saved when its own validation accuracy is its best so far."""

    def __init__(self, members: list[Member]) -> None:
        self.members = members
        self.best: dict[int, float] = {}
        self.best_epoch: dict[int, int] = {}

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or trainer.fast_dev_run or not trainer.is_global_zero:
            return  # as Lightning's own checkpoints: a smoke pass keeps none
        accuracy = pl_module.member_values.get("val/acc")
        improved = [m for m in self.members if m.index not in pl_module.failed_members and accuracy is not None
                    and math.isfinite(accuracy[m.index]) and accuracy[m.index] > self.best.get(m.index, -1.0)]
        if not improved:
            return
        contents = checkpoint_contents(trainer)
        for member in improved:
            self.best[member.index], self.best_epoch[member.index] = accuracy[member.index], trainer.current_epoch
            path = checkpoint_path(member.directory, BEST_CHECKPOINT)
            path.parent.mkdir(parents=True, exist_ok=True)
            torch.save(member_checkpoint(contents, member, len(self.members)), path)

    def state_dict(self) -> dict[str, Any]:
        return {"best": {str(k): v for k, v in self.best.items()},
                "best_epoch": {str(k): v for k, v in self.best_epoch.items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best = {int(k): v for k, v in state.get("best", {}).items()}
        self.best_epoch = {int(k): v for k, v in state.get("best_epoch", {}).items()}


def best_weights(module: pl.LightningModule, members: list[Member]) -> dict[str, torch.Tensor]:
    """The pack's state with each member's weights from its best.ckpt (a member without one keeps its own)."""
    current = module.state_dict()
    parts: dict[str, list[torch.Tensor]] = {key: [] for key in current}
    for member in members:
        path = checkpoint_path(member.directory, BEST_CHECKPOINT)
        saved = torch.load(path, map_location="cpu", weights_only=True)["state_dict"] if path.is_file() else None
        for key, value in current.items():
            if not _is_member_tensor(value, len(members)):
                continue
            part = saved[key] if saved is not None else value[member.index : member.index + 1]
            parts[key].append(part.to(value.device))
    return {key: torch.cat(parts[key]) if parts[key] else value for key, value in current.items()}


def summary(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Each metric's mean, std and 95 % t interval over the members that finished."""
    finished = [record for record in records if record.get("status") == "finished"]
    result: dict[str, Any] = {"members": len(records), "finished": len(finished),
                              "seeds": [record["seed"] for record in finished]}
    for name in SUMMARY_METRICS:
        values = [record[name] for record in finished if isinstance(record.get(name), (int, float))]
        if not values:
            continue
        count, mean = len(values), statistics.mean(values)
        std = statistics.stdev(values) if count > 1 else None
        half = stats.t.ppf(0.975, count - 1) * std / math.sqrt(count) if std is not None else None
        result[name] = {"mean": mean, "std": std, "ci95": [mean - half, mean + half] if half is not None else None,
                        "n": count, "values": values}
    return result


def write_summary(pack_dir: Path, records: list[dict[str, Any]], **fields: Any) -> dict[str, Any]:
    result = {**(read_json(Path(pack_dir) / PACK_FILE) or {}), **summary(records), **fields}
    write_json(Path(pack_dir) / SUMMARY_FILE, result)
    return result
