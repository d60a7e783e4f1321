"""Online: wandb's server runs the sweep. `wandb.sweep` creates it (or `--sweep-id` joins one) and one
`wandb agent --forward-signals` per slot asks the server for trials, bayes included.

The agents run in their own process groups and die with the launcher (processes.py). Stopping the
launcher sends each agent SIGTERM; with --forward-signals the agent passes it on to its run (train.py
saves an interrupted checkpoint and exits) and kills the run after --term-timeout (our --grace).
"""

from __future__ import annotations

import math
import os
import shlex
import sys
import time
from pathlib import Path
from typing import Any

from mlplab.run.failures import error_in_text, read_tail
from mlplab.tools.sweep.processes import StopSignals, end_groups, start_process
from mlplab.tools.sweep.slots import Slot, slot_env
from mlplab.errors import SweepError
from mlplab.tools.sweep.trial_commands import default_sweep_dir

AGENT_MARGIN = 10.0  # seconds an agent gets beyond --grace to kill its run and report to the server


def offline_reason(forced: bool) -> str | None:
    """Why the sweep runs offline, or None when wandb's server can be used."""
    if forced:
        return "--offline"
    mode = os.environ.get("WANDB_MODE", "")
    if mode in ("offline", "disabled", "dryrun"):
        return f"WANDB_MODE={mode}"
    import wandb

    # silent: login's greeting asks the server who we are, which hangs when it cannot be reached.
    wandb.setup(wandb.Settings(silent=True))
    try:
        has_credentials = wandb.login(prompt=False, verify=False)
    except TypeError:  # wandb before `prompt=`: look the key up without prompting
        has_credentials = bool(wandb.api.api_key)
    return None if has_credentials else "no wandb credentials (run `wandb login` or set WANDB_API_KEY)"


def agent_command(sweep_id: str, project: str, entity: str | None, count: int | None, grace: float) -> list[str]:
    command = [sys.executable, "-m", "wandb", "agent", "--forward-signals", "--term-timeout", str(math.ceil(grace)),
               "--project", project]
    command += ["--entity", entity] if entity else []
    command += ["--count", str(count)] if count else []
    return [*command, sweep_id]


def run_online(config: dict[str, Any], sweep_file: Path, slots: list[Slot], program_root: Path, *,
               project: str | None, entity: str | None, sweep_id: str | None, sweep_dir: Path | None,
               count: int | None, stagger: float, grace: float) -> int:
    """Create (or join) the sweep; one agent per slot; the agents' worst exit code, or 128+N on signal N."""
    import wandb

    project = project or config.get("project") or "mlplab"
    entity = entity or config.get("entity")
    try:
        sweep_id = sweep_id or wandb.sweep(config, project=project, entity=entity)
    except (wandb.errors.Error, ValueError, TypeError) as error:  # wandb.sweep raises ValueError under WANDB_DEBUG
        raise SweepError(f"the wandb server refused or could not be reached ({error}): retry, or run with --offline") from None
    command = agent_command(sweep_id, project, entity, count, grace)
    log_dir = sweep_dir or default_sweep_dir(sweep_file, program_root, sweep_id.rsplit("/", 1)[-1])
    log_dir.mkdir(parents=True, exist_ok=True)
    print(f"sweep {sweep_id}: {len(slots)} agent(s) `{shlex.join(command)}`, logs in {log_dir}", flush=True)
    agents: dict[int, Any] = {}
    with StopSignals() as stop:
        for slot in slots:
            deadline = time.monotonic() + (stagger if slot.index else 0)
            while time.monotonic() < deadline and not stop.stopping:
                time.sleep(0.1)
            if stop.stopping:
                break
            env = slot_env(slot, len(slots))
            # The agent runs `python <program>`: put this interpreter first on PATH so that is ours.
            env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
            with agent_log(log_dir, slot.index).open("a") as log:
                agents[slot.index] = start_process(command, env, program_root, log)
            print(f"[slot {slot.index}] agent pid {agents[slot.index].pid}, "
                  f"CUDA_VISIBLE_DEVICES={env.get('CUDA_VISIBLE_DEVICES', '(not set)')}", flush=True)
        reported: set[int] = set()
        while not stop.stopping and any(agent.poll() is None for agent in agents.values()):
            report_ended_agents(agents, reported, log_dir)
            time.sleep(0.2)
        if stop.stopping:
            end_groups(agents.values(), grace + AGENT_MARGIN, stop)
        else:
            report_ended_agents(agents, reported, log_dir)
    if stop.exit_code() is not None:
        return stop.exit_code()
    return max((abs(agent.returncode or 0) for agent in agents.values()), default=0)


def agent_log(log_dir: Path, slot: int) -> Path:
    return log_dir / f"agent-{slot}.log"


def report_ended_agents(agents: dict[int, Any], reported: set[int], log_dir: Path) -> None:
    """One line for each agent that ended since the last call: a failure with its own error from its log."""
    for slot, agent in agents.items():
        if slot in reported or agent.poll() is None:
            continue
        reported.add(slot)
        log = agent_log(log_dir, slot)
        if agent.returncode == 0:
            print(f"[slot {slot}] agent done (log {log})", flush=True)
        else:
            reason = error_in_text(read_tail(log)) or "it wrote nothing"
            print(f"[slot {slot}] agent failed (exit {agent.returncode}): {reason} (log {log})", flush=True)
