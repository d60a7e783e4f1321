"""Experiment loggers from the `logger` config group, and wandb's online/offline choice."""

from __future__ import annotations

import netrc
import os
from typing import Any

from hydra.utils import instantiate
from omegaconf import DictConfig
from pytorch_lightning.loggers import Logger, WandbLogger

WANDB_HOST = "api.wandb.ai"


def wandb_has_credentials() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        return netrc.netrc().authenticators(os.environ.get("WANDB_BASE_URL", WANDB_HOST).split("//")[-1]) is not None
    except (FileNotFoundError, netrc.NetrcParseError):
        return False


def wandb_mode() -> str:
    """WANDB_MODE if set; else online with credentials, offline without (wandb then prints the
    `wandb sync` command that uploads the run later)."""
    return os.environ.get("WANDB_MODE") or ("online" if wandb_has_credentials() else "offline")


def build_loggers(cfg: DictConfig, wandb_id: str | None = None) -> list[Logger]:
    """One logger per entry of cfg.logger; a wandb logger resumes run `wandb_id` if given."""
    loggers = []
    for spec in (cfg.get("logger") or {}).values():
        if spec._target_.endswith("WandbLogger"):
            # wandb.init itself honours WANDB_MODE=disabled/offline/online. Under a sweep agent the
            # agent names the run and owns its id; one shared name would make the trials unreadable.
            if os.environ.get("WANDB_SWEEP_ID"):
                loggers.append(instantiate(spec, name=None, group=None))
            else:
                loggers.append(instantiate(spec, id=wandb_id, resume="allow", offline=wandb_mode() == "offline"))
        else:
            loggers.append(instantiate(spec))
    return loggers


def log_run(loggers: list[Logger], config: dict[str, Any], info: dict[str, Any]) -> None:
    """The full resolved config and the run's description, for every logger."""
    for logger in loggers:
        logger.log_hyperparams({"config": config, "run": info})


def finish_wandb(loggers: list[Logger], metrics: dict[str, Any] | None, status: str, exit_code: int = 0) -> None:
    """Close the wandb run with the run's status (finished, failed, interrupted) in its summary and,
    when it finished, the final metrics. Any other status closes it with a non-zero exit code, so
    the dashboard never shows a stopped run as finished; a resumed run reopens the same run."""
    for logger in loggers:
        if not isinstance(logger, WandbLogger) or logger._experiment is None:
            continue
        run = logger.experiment
        run.summary["status"] = status
        if metrics:
            run.summary.update({f"final/{k}": v for k, v in metrics.items() if isinstance(v, (int, float))})
        # wandb prints the `wandb sync <dir>` line for offline runs itself when it finishes.
        run.finish(exit_code=exit_code)
