"""Experiment loggers from the `logger` config group, and wandb's online/offline choice.

wandb goes online when this machine has credentials and wandb's server answers; otherwise the run
logs offline into its run directory, and one line says why and gives the `wandb sync` command that
uploads it later. `check_wandb_environment` refuses, before any work, what wandb itself would refuse
at its start (a WANDB_* value, a logger setting) and WANDB_MODE=online without credentials; it reads
files and the environment only. The network is asked once, when the wandb logger is built.
"""

from __future__ import annotations

import netrc
import os
import ssl
import sys
import threading
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.loggers import Logger, WandbLogger
from pytorch_lightning.utilities import rank_zero_only

from mlplab.run.cli import one_line
from mlplab.errors import ConfigError

# wandb's names for a run that talks to its server, and for one that only writes files.
ONLINE_MODES = ("online", "run", "shared")
OFFLINE_MODES = ("offline", "dryrun")
# .netrc entries for wandb's own cloud are written for this host (wandb maps its default URL to it).
WANDB_CLOUD_HOST = "api.wandb.ai"
# A server that answers does so in well under a second; a firewall that drops packets never does.
PROBE_SECONDS = 5.0
# wandb's own default is 90 s (~112 s with its retries), then it stops the run. A server that answers
# starts a run in a few seconds; past this, logging offline loses nothing (`wandb sync` uploads it).
INIT_SECONDS = 10.0
# The logger group's keys that wandb checks itself at wandb.init, and the name of each in wandb.Settings.
SPEC_SETTINGS = {"project": "project", "entity": "entity", "name": "run_name", "group": "run_group",
                 "tags": "run_tags", "job_type": "run_job_type"}


def wandb_specs(cfg: DictConfig) -> dict[str, DictConfig]:
    """The entries of cfg.logger that build a WandbLogger, by their key in the group."""
    loggers = cfg.get("logger") or {}
    return {key: spec for key, spec in loggers.items()
            if OmegaConf.is_dict(spec) and str(spec.get("_target_", "")).endswith("WandbLogger")}


def _one_line(error: BaseException) -> str:
    """An error's message on one line; of pydantic's (wandb's settings), the first complaint only."""
    errors = getattr(error, "errors", None)
    if callable(errors):
        try:
            return " ".join(str(errors()[0]["msg"]).split())
        except (TypeError, IndexError, KeyError):
            pass
    return one_line(error)


def _wandb_refusal(apply) -> str | None:
    """Why wandb.Settings refuses what apply(settings) sets (None: accepted), by wandb's own rules."""
    import wandb

    try:
        apply(wandb.Settings())
    except (ValueError, TypeError, wandb.errors.Error) as error:  # pydantic's ValidationError is a ValueError
        return _one_line(error)
    return None


def _check_environment_variables(environ: dict[str, str]) -> None:
    for name in sorted(key for key in environ if key.startswith("WANDB_")):
        # wandb reads each WANDB_* variable into its settings at wandb.init and stops on a bad one.
        reason = _wandb_refusal(lambda settings: settings.update_from_env_vars({name: environ[name]}))
        if reason:
            raise ConfigError(f"environment variable {name}={environ[name]!r} is not allowed: wandb says "
                              f"{reason.rstrip('.')}; correct it or unset it.")
    timeout = environ.get("WANDB_INIT_TIMEOUT")
    if timeout is not None:
        try:
            seconds = float(timeout)
        except ValueError:
            seconds = float("nan")
        if not 0 < seconds < float("inf"):
            raise ConfigError(f"environment variable WANDB_INIT_TIMEOUT={timeout!r} is not allowed: a number of "
                              f"seconds > 0 (unset, runs give up on wandb's server after {INIT_SECONDS:g} s).")


def _check_logger_settings(specs: dict[str, DictConfig]) -> None:
    for key, spec in specs.items():
        for option, setting in SPEC_SETTINGS.items():
            value = spec.get(option)
            if value is None:
                continue
            value = OmegaConf.to_object(value) if OmegaConf.is_config(value) else value
            reason = _wandb_refusal(lambda settings: setattr(settings, setting, value))
            if reason:
                raise ConfigError(f"logger.{key}.{option}={value!r} is not allowed: wandb says {reason.rstrip('.')}.")


def check_wandb_environment(cfg: DictConfig) -> None:
    """Raise ConfigError, in one line, at what would stop wandb when the run starts it: a WANDB_*
    variable wandb refuses (WANDB_MODE=bogus, a WANDB_BASE_URL that is no URL), a logger setting
    it refuses, or WANDB_MODE=online on a machine without credentials. No network; nothing when
    the config's logger group has no wandb logger."""
    specs = wandb_specs(cfg)
    if not specs:
        return
    _check_environment_variables(dict(os.environ))
    _check_logger_settings(specs)
    mode = os.environ.get("WANDB_MODE")
    # Under a sweep agent the agent itself logged in to fetch the trial.
    if mode in ONLINE_MODES and not os.environ.get("WANDB_SWEEP_ID") and not wandb_has_credentials():
        raise ConfigError(f"WANDB_MODE={mode} needs wandb credentials and this machine has none: run "
                          "`wandb login` or set WANDB_API_KEY, or set WANDB_MODE=offline.")


def wandb_base_url() -> str:
    """The server wandb would talk to: WANDB_BASE_URL, `wandb login --host`'s, or wandb's default."""
    import wandb

    return wandb.setup().settings.base_url


def _netrc_hosts(base_url: str) -> set[str]:
    import wandb

    hosts = {urlsplit(base_url).netloc}
    if base_url == wandb.Settings().base_url:
        hosts.add(WANDB_CLOUD_HOST)
    return hosts


def wandb_has_credentials() -> bool:
    """Whether wandb would find credentials for its server: WANDB_API_KEY, an identity token file, a
    key saved in wandb's settings, or a .netrc entry. Files and the environment only, no network."""
    if os.environ.get("WANDB_API_KEY") or os.environ.get("WANDB_IDENTITY_TOKEN_FILE"):
        return True
    import wandb

    if wandb.setup().settings.api_key:
        return True
    path = Path(os.environ.get("NETRC") or "~/.netrc").expanduser()
    try:
        entries = netrc.netrc(path)
    except (OSError, netrc.NetrcParseError):  # no file, unreadable or malformed: wandb finds nothing there either
        return False
    return any((entries.authenticators(host) or (None, None, None))[2] for host in _netrc_hosts(wandb_base_url()))


def wandb_mode() -> str:
    """WANDB_MODE if set; else online with credentials, offline without."""
    return os.environ.get("WANDB_MODE") or ("online" if wandb_has_credentials() else "offline")


def _answer_problem(url: str, opener: urllib.request.OpenerDirector, timeout: float) -> str | None:
    try:
        request = urllib.request.Request(url, data=b'{"query": "{ __typename }"}',
                                         headers={"Content-Type": "application/json"}, method="POST")
        opener.open(request, timeout=timeout).close()
    except urllib.error.HTTPError as error:
        # A refusal (401 without a key, 400 for an empty query) proves the way there; a 5xx is a
        # server in trouble, which wandb would retry for minutes.
        return f"it answered HTTP {error.code} {error.reason}" if error.code >= 500 else None
    except urllib.error.URLError as error:
        if isinstance(error.reason, ssl.SSLError):
            return None  # a server answered; wandb may trust certificates that urllib does not
        return _one_line(error.reason) if isinstance(error.reason, BaseException) else str(error.reason)
    except (OSError, ValueError) as error:
        return _one_line(error)
    return None


def wandb_server_problem(base_url: str, timeout: float = PROBE_SECONDS) -> str | None:
    """Why wandb's server at base_url cannot be used, found within `timeout` seconds; None when it answers.

    Asks its GraphQL endpoint, the first thing wandb.init asks, so that a server which takes a
    connection and then never answers is found here too. wandb's proxy settings and the
    environment's proxies are honoured. A thread bounds the name lookup, which socket timeouts do
    not cover.
    """
    import wandb

    settings = wandb.setup().settings
    proxies = {scheme: proxy for scheme, proxy in (("http", settings.http_proxy), ("https", settings.https_proxy))
               if proxy}
    opener = urllib.request.build_opener(urllib.request.ProxyHandler(proxies or None))
    url = f"{base_url.rstrip('/')}/graphql"
    outcome: list[str | None] = []
    thread = threading.Thread(target=lambda: outcome.append(_answer_problem(url, opener, timeout)),
                              name="wandb-server-probe", daemon=True)
    thread.start()
    thread.join(timeout)
    return outcome[0] if outcome else f"no answer within {timeout:g} s"


def _started(logger: WandbLogger) -> WandbLogger:
    # WandbLogger starts wandb at its first use of `experiment`; here, where a failure can be caught.
    _ = logger.experiment
    return logger


def _started_offline(spec: DictConfig, wandb_id: str | None) -> WandbLogger:
    import wandb

    # A half-started run still holds its id in wandb's service, and wandb's own usage statistics
    # follow the process's settings, not the run's: both would wait for the server again (~20 s at
    # exit where it takes connections and never answers). The whole process goes offline.
    if wandb.run is None:  # a pack's later members join the offline process its first member set up
        wandb.teardown()
        wandb.setup(wandb.Settings(mode="offline"))
    return _started(instantiate(spec, id=wandb_id, resume="allow", mode="offline"))


def _offline_notice(base_url: str, problem: str, logger: WandbLogger) -> str:
    run_dir = Path(logger.experiment.dir).parent  # the run's folder; `dir` is its files/ inside it
    return (f"warning: wandb's server {base_url} cannot be used ({problem}); this run logs offline to "
            f"{run_dir}: upload it later with `wandb sync {run_dir}`")


def _online_or_offline(spec: DictConfig, wandb_id: str | None) -> WandbLogger:
    """Online when the server answers and wandb starts within INIT_SECONDS; else the same run
    (id, name, group, tags) offline, said in one line with the `wandb sync` command."""
    import wandb

    base_url = wandb_base_url()
    problem = wandb_server_problem(base_url)
    if problem is None:
        # A user's WANDB_INIT_TIMEOUT is theirs to keep; settings given to wandb.init would override it.
        timeout = {} if "WANDB_INIT_TIMEOUT" in os.environ else {"settings": wandb.Settings(init_timeout=INIT_SECONDS)}
        try:
            return _started(instantiate(spec, id=wandb_id, resume="allow", **timeout))
        except wandb.errors.Error as error:  # the server timed out, or refused the key, entity or project
            problem = _one_line(error).split(" Consider increasing")[0]
    logger = _started_offline(spec, wandb_id)
    print(_offline_notice(base_url, problem, logger), file=sys.stderr, flush=True)
    return logger


def build_wandb_logger(spec: DictConfig, wandb_id: str | None = None) -> WandbLogger:
    """The wandb logger of one logger entry, its run started on the process that logs."""
    if not rank_zero_only.rank == 0:
        return instantiate(spec, id=wandb_id, resume="allow")  # DDP's other ranks never start wandb
    if in_wandb_sweep():
        # The sweep agent names the run and owns its id; one shared name would make the trials unreadable.
        return _started(instantiate(spec, name=None, group=None))
    if wandb_mode() in ONLINE_MODES:
        return _online_or_offline(spec, wandb_id)
    if os.environ.get("WANDB_MODE"):  # offline, dryrun or disabled: wandb's to honour
        return _started(instantiate(spec, id=wandb_id, resume="allow"))
    return _started_offline(spec, wandb_id)  # no credentials; wandb prints the `wandb sync` command at the end


def in_wandb_sweep() -> bool:
    """Whether a wandb sweep agent started this process (it owns the run's id, name and config)."""
    return bool(os.environ.get("WANDB_SWEEP_ID"))


def build_loggers(cfg: DictConfig, wandb_id: str | None = None, wandb: bool = True,
                  group_runs: bool = False) -> list[Logger]:
    """One logger per entry of cfg.logger; a wandb logger resumes run `wandb_id` if given. Without
    `wandb`, the wandb entries are left out (a pack's own records: its members are the wandb runs);
    with `group_runs`, each wandb logger starts a run beside the process's others (a pack's members)."""
    wandb_keys = wandb_specs(cfg).keys()
    loggers = []
    for key, spec in (cfg.get("logger") or {}).items():
        if key not in wandb_keys:
            loggers.append(instantiate(spec))
        elif wandb:
            loggers.append(build_wandb_logger(OmegaConf.merge(spec, {"reinit": "create_new"}) if group_runs else spec,
                                              wandb_id))
    return loggers


def log_run(loggers: list[Logger], config: dict[str, Any], info: dict[str, Any]) -> None:
    """The full resolved config and the run's description, for every logger."""
    for logger in loggers:
        logger.log_hyperparams({"config": config, "run": info})


def finish_wandb(loggers: list[Logger], metrics: dict[str, Any] | None, status: str, exit_code: int = 0) -> None:
    """Close the wandb run with the run's status (finished, failed, interrupted) in its summary and,
    when it finished, the final metrics. Any other status closes it with a non-zero exit code, so
    the dashboard never shows a stopped run as finished; a resumed run reopens the same run."""
    if not rank_zero_only.rank == 0:  # the other DDP ranks never started wandb (build_wandb_logger)
        return
    for logger in loggers:
        if not isinstance(logger, WandbLogger):
            continue
        run = logger.experiment  # started by build_wandb_logger, so this starts nothing new
        run.summary["status"] = status
        if metrics:
            run.summary.update({f"final/{k}": v for k, v in metrics.items() if isinstance(v, (int, float))})
        # wandb prints the `wandb sync <dir>` line for offline runs itself when it finishes.
        run.finish(exit_code=exit_code)
