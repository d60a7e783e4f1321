"""Run a wandb sweep file: `wandb agent`s pinned to GPUs when the wandb server is reachable, or the
same trials on this machine without it.

    python -m mlplab.sweep sweeps/activations.yaml --gpus 0,1 --agents-per-gpu 2   # online
    python -m mlplab.sweep sweeps/activations.yaml --offline --agents 2             # no server
    python -m mlplab.sweep sweeps/activations.yaml --dry-run                        # print the trials

Online, wandb does everything: `wandb.sweep` creates the sweep and one `wandb agent` process per slot
asks the server for trials. Offline, this module expands the file's parameters itself (grid: every
combination; random, and bayes, which needs the server: `--count` seeded draws) and runs each trial
through the file's own `command:`, with the macros filled in as the agent fills them, plus
`hydra.run.dir=<sweep dir>/<trial id>`. Each trial directory gets `status.json` and `trial.log`;
a rerun skips the trials whose status is `finished` and runs the rest again.
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import itertools
import json
import math
import os
import queue
import random
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO, Any

import yaml

from mlplab.errors import UserError

METHODS = ("grid", "random", "bayes")
# The macros that hand the parameters over as Hydra overrides (key=value, +key=value, ++key=value);
# wandb's default `${args}` gives --key=value, which Hydra rejects.
HYDRA_ARG_MACROS = ("${args_no_hyphens}", "${args_append_hydra}", "${args_override_hydra}")
DISTRIBUTIONS = (
    "constant", "categorical", "int_uniform", "uniform", "q_uniform", "log_uniform", "q_log_uniform",
    "log_uniform_values", "q_log_uniform_values", "normal", "q_normal", "log_normal", "q_log_normal",
)
FINISHED, FAILED, CRASHED, INTERRUPTED, RUNNING = "finished", "failed", "crashed", "interrupted", "running"
STATUS_FILE, LOG_FILE, LOCK_FILE = "status.json", "trial.log", "launcher.lock"


class SweepError(UserError):
    """The sweep file or the launcher's options cannot work; the message says what to change."""


# ---------------------------------------------------------------------------------------------
# The sweep file


def load_sweep(path: Path) -> dict[str, Any]:
    """The sweep file as a dict, validated."""
    try:
        config = yaml.safe_load(path.read_text())
    except OSError as error:
        raise SweepError(f"cannot read the sweep file {path}: {error.strerror}") from None
    except yaml.YAMLError as error:
        raise SweepError(f"{path} is not valid YAML: {error}") from None
    validate_sweep(config, path)
    return config


def validate_sweep(config: Any, path: Path | str = "sweep file") -> None:
    """Check what the launcher relies on, before anything starts; wandb checks the rest online."""
    if not isinstance(config, dict):
        raise SweepError(f"{path}: expected a mapping with program, method, parameters, command")
    program = config.get("program")
    if not isinstance(program, str) or not program:
        raise SweepError(f"{path}: program={program!r} is not allowed: the script to run, e.g. program: train.py")
    method = config.get("method")
    if method not in METHODS:
        raise SweepError(f"{path}: method={method!r} is not allowed: one of {', '.join(METHODS)}")
    metric = config.get("metric")
    if metric is not None or method == "bayes":
        if not isinstance(metric, dict) or not isinstance(metric.get("name"), str):
            raise SweepError(f"{path}: metric={metric!r} is not allowed: "
                             "e.g. metric: {name: val/acc, goal: maximize}")
        if metric.get("goal", "minimize") not in ("minimize", "maximize"):
            raise SweepError(f"{path}: metric.goal={metric.get('goal')!r} is not allowed: minimize or maximize")
    parameters = config.get("parameters")
    if not isinstance(parameters, dict) or not parameters:
        raise SweepError(f"{path}: parameters={parameters!r} is not allowed: "
                         "a mapping of Hydra keys to value/values/distribution")
    for name, spec in parameters.items():
        validate_parameter(str(name), spec, method, path)
    command = config.get("command")
    if not isinstance(command, list) or "${program}" not in command:
        raise SweepError(
            f"{path}: command={command!r} is not allowed: a list like "
            "[${env}, ${interpreter}, ${program}, trainer.max_epochs=10, ${args_no_hyphens}]"
        )
    if not any(macro in command for macro in HYDRA_ARG_MACROS):
        raise SweepError(
            f"{path}: the command passes no parameters Hydra can read: end it with ${{args_no_hyphens}} "
            "(wandb's default ${args} gives --key=value, which Hydra rejects)"
        )


def distribution_of(spec: dict[str, Any]) -> str:
    """The distribution a parameter spec names, inferred as wandb infers it when not named."""
    if "distribution" in spec:
        return spec["distribution"]
    if "value" in spec:
        return "constant"
    if "values" in spec:
        return "categorical"
    if "mu" in spec or "sigma" in spec:
        return "normal"
    low, high = spec.get("min"), spec.get("max")
    both_int = isinstance(low, int) and isinstance(high, int) and not isinstance(low, bool)
    return "int_uniform" if both_int else "uniform"


def validate_parameter(name: str, spec: Any, method: str, path: Path | str) -> None:
    """One parameter: a fixed value, a non-empty list of values, or a distribution with numeric bounds."""
    where = f"{path}: parameters.{name}"
    if not isinstance(spec, dict):
        raise SweepError(f"{where}={spec!r} is not allowed: a mapping with value, values or a distribution")
    if "parameters" in spec:
        raise SweepError(f"{where}: nested parameters become one dict-valued argument; "
                         "use a dotted key (e.g. l2.weight)")
    distribution = distribution_of(spec)
    if distribution not in DISTRIBUTIONS:
        raise SweepError(f"{where}.distribution={distribution!r} is not allowed: one of {', '.join(DISTRIBUTIONS)}")
    if distribution == "categorical" and (not isinstance(spec.get("values"), list) or not spec["values"]):
        raise SweepError(f"{where}.values={spec.get('values')!r} is not allowed: a non-empty list")
    if distribution == "constant" and "value" not in spec:
        raise SweepError(f"{where}: distribution constant needs value:")
    if method == "grid" and distribution not in ("constant", "categorical"):
        raise SweepError(f"{where}: a grid needs value: or values: for every parameter, "
                         f"not distribution {distribution}")
    if distribution in ("constant", "categorical"):
        return
    bounds = ("mu", "sigma") if distribution.endswith("normal") else ("min", "max")
    for key in bounds:
        value = spec.get(key)
        if key in ("min", "max") and value is None:
            raise SweepError(f"{where}: distribution {distribution} needs min and max")
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise SweepError(f"{where}.{key}={value!r} is not allowed: a number (in YAML write 1.0e-5, not 1e-5)")
    if distribution.endswith("log_uniform_values") and spec["min"] <= 0:
        raise SweepError(f"{where}.min={spec['min']!r} is not allowed: log_uniform_values needs min > 0")


# ---------------------------------------------------------------------------------------------
# Trials: parameter assignments, and the command line for each


def grid_assignments(parameters: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Every combination of the parameters' values, in file order (the last parameter varies fastest)."""
    names = list(parameters)
    choices = [[spec["value"]] if "value" in spec else spec["values"] for spec in parameters.values()]
    return [dict(zip(names, combination)) for combination in itertools.product(*choices)]


def _quantize(value: float, spec: dict[str, Any]) -> float:
    q = spec.get("q", 1)
    rounded = round(value / q) * q
    return int(rounded) if isinstance(q, int) else rounded


def sample_parameter(spec: dict[str, Any], rng: random.Random) -> Any:
    """One draw from a parameter spec, as wandb's random search defines its distributions."""
    distribution = distribution_of(spec)
    if distribution == "constant":
        return spec["value"]
    if distribution == "categorical":
        return rng.choices(spec["values"], weights=spec.get("probabilities"))[0]
    if distribution == "int_uniform":
        return rng.randint(int(spec["min"]), int(spec["max"]))
    quantized = distribution.startswith("q_")
    base = distribution.removeprefix("q_")
    if base == "uniform":
        value = rng.uniform(spec["min"], spec["max"])
    elif base == "log_uniform":  # min and max are natural logs
        value = math.exp(rng.uniform(spec["min"], spec["max"]))
    elif base == "log_uniform_values":
        value = math.exp(rng.uniform(math.log(spec["min"]), math.log(spec["max"])))
    elif base == "normal":
        value = rng.gauss(spec.get("mu", 0.0), spec.get("sigma", 1.0))
    else:  # log_normal
        value = math.exp(rng.gauss(spec.get("mu", 0.0), spec.get("sigma", 1.0)))
    return _quantize(value, spec) if quantized else value


def random_assignments(parameters: dict[str, dict[str, Any]], count: int, seed: int) -> list[dict[str, Any]]:
    """`count` independent draws; trial by trial, so a larger count with the same seed extends the list."""
    rng = random.Random(seed)
    return [{name: sample_parameter(spec, rng) for name, spec in parameters.items()} for _ in range(count)]


def assignments(config: dict[str, Any], count: int | None, seed: int) -> list[dict[str, Any]]:
    """The trials' parameter values offline: the grid (at most `count`), or `count` random draws."""
    if config["method"] == "grid":
        grid = grid_assignments(config["parameters"])
        return grid[:count] if count else grid
    if not count:
        raise SweepError(
            f"method {config['method']} draws trials: say how many with --count, e.g. --count 20"
        )
    return random_assignments(config["parameters"], count, seed)


def hydra_overrides(assignment: dict[str, Any]) -> list[str]:
    """`key=value` as wandb's agent writes `${args_no_hyphens}` (str() of each value)."""
    return [f"{name}={value}" for name, value in assignment.items()]


def command_line(config: dict[str, Any], assignment: dict[str, Any], run_dir: Path) -> list[str]:
    """The file's `command:` with the macros filled in as `wandb agent` fills them, plus the run dir.

    `${env}` becomes nothing (the agent's /usr/bin/env only finds the interpreter on PATH) and
    `${interpreter}` this Python. `${program}` stays as written: trials run in the program root.
    """
    from wandb.sdk.launch.sweeps.utils import create_sweep_command, create_sweep_command_args

    # wandb's own macro values, so that an offline trial gets the arguments an online one gets.
    macros: dict[str, list[str]] = create_sweep_command_args(
        {"args": {name: {"value": value} for name, value in assignment.items()}}
    )
    macros |= {"env": [], "interpreter": [sys.executable], "program": [config["program"]]}
    command: list[str] = []
    for chunk in create_sweep_command([str(part) for part in config["command"]]):
        if chunk.startswith("${") and chunk.endswith("}"):
            command += macros.get(chunk[2:-1], [])
        else:
            command.append(chunk)
    return [*command, f"hydra.run.dir={run_dir}"]


def trial_id(index: int, assignment: dict[str, Any]) -> str:
    """`<index>-<hash of the values>`: random draws from another --seed never reuse a finished trial's dir."""
    digest = hashlib.sha256(json.dumps(hydra_overrides(assignment)).encode()).hexdigest()[:6]
    return f"{index:03d}-{digest}"


@dataclass
class Trial:
    trial_id: str
    overrides: list[str]
    command: list[str]
    directory: Path


def make_trials(config: dict[str, Any], sweep_dir: Path, count: int | None, seed: int) -> list[Trial]:
    trials = []
    for index, assignment in enumerate(assignments(config, count, seed)):
        directory = sweep_dir / trial_id(index, assignment)
        command = command_line(config, assignment, directory)
        trials.append(Trial(directory.name, hydra_overrides(assignment), command, directory))
    return trials


# ---------------------------------------------------------------------------------------------
# Where things are


def resolve_program_root(sweep_file: Path, program: str, program_root: Path | None) -> Path:
    """The folder the program path is relative to; trials and agents run there.

    `--program-root` when given; else the project the sweep file belongs to (the parent of its
    folder, so sweeps/x.yaml -> the repo root) when it holds the program; else the current folder,
    which is where `wandb agent` itself looks.
    """
    candidates = [program_root] if program_root else [sweep_file.resolve().parent.parent, Path.cwd()]
    for root in candidates:
        if (root / program).is_file():
            return root.resolve()
    tried = " or ".join(str(root / program) for root in candidates)
    raise SweepError(f"program {program!r} not found at {tried}: run from the project root or pass --program-root")


def default_sweep_dir(sweep_file: Path, program_root: Path, suffix: str | None = None) -> Path:
    """outputs/sweeps/<stem>-<8 hex of the file's content>: a rerun of the same file finds the same dir."""
    suffix = suffix or hashlib.sha256(sweep_file.read_bytes()).hexdigest()[:8]
    return program_root / "outputs" / "sweeps" / f"{sweep_file.stem}-{suffix}"


@dataclass(frozen=True)
class Slot:
    """One agent's place: its index and the GPUs it sees ("" on a CPU-only machine)."""

    index: int
    cuda_visible_devices: str


def make_slots(gpus: str | None, agents_per_gpu: int | None, agents: int | None) -> list[Slot]:
    """`--gpus 0,1 --agents-per-gpu 2` -> 0,1,0,1 (round robin, so a short sweep spreads over the GPUs)."""
    if gpus is not None and agents is not None:
        raise SweepError("--gpus and --agents exclude each other: "
                         "--gpus 0,1 --agents-per-gpu 2, or --agents 2 on a CPU")
    if gpus is None:
        if agents_per_gpu is not None:
            raise SweepError("--agents-per-gpu needs --gpus, e.g. --gpus 0,1 --agents-per-gpu 2")
        count = 1 if agents is None else agents
        if count < 1:
            raise SweepError(f"--agents={count} is not allowed: at least 1")
        return [Slot(index, "") for index in range(count)]
    devices = [device.strip() for device in gpus.split(",") if device.strip()]
    per_gpu = 1 if agents_per_gpu is None else agents_per_gpu
    if not devices or per_gpu < 1:
        raise SweepError(f"--gpus={gpus!r} --agents-per-gpu={per_gpu} is not allowed: "
                         "e.g. --gpus 0,1,2,3 --agents-per-gpu 2")
    pinned = [device for _ in range(per_gpu) for device in devices]
    return [Slot(index, device) for index, device in enumerate(pinned)]


def slot_env(slot: Slot, slots: int) -> dict[str, str]:
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": slot.cuda_visible_devices}
    if not slot.cuda_visible_devices:
        # N CPU trials that each use every core run slower together than one at a time.
        env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // slots)))
    return env


# ---------------------------------------------------------------------------------------------
# Processes: start in their own session, so that Ctrl-C can end each one's whole group


@dataclass
class Supervisor:
    """The child processes of all slots; `terminate_all` ends them when the launcher is stopped."""

    grace_seconds: float
    stop: threading.Event = field(default_factory=threading.Event)
    signals: list[int] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _running: dict[int, subprocess.Popen] = field(default_factory=dict)
    _killed: set[int] = field(default_factory=set)

    def start(self, command: list[str], env: dict[str, str], cwd: Path, log: IO) -> subprocess.Popen | None:
        """Popen in a new session; None once the launcher is stopping (so nothing starts after Ctrl-C)."""
        with self._lock:
            if self.stop.is_set():
                return None
            process = subprocess.Popen(command, env=env, cwd=cwd, stdout=log, stderr=subprocess.STDOUT,
                                       stdin=subprocess.DEVNULL, start_new_session=True)
            self._running[process.pid] = process
            return process

    def wait(self, process: subprocess.Popen) -> tuple[int, bool]:
        """The exit code, and whether we ended the process (then it did not finish on its own)."""
        returncode = process.wait()
        with self._lock:
            self._running.pop(process.pid, None)
            return returncode, process.pid in self._killed

    def terminate_all(self) -> None:
        """SIGTERM every process group, SIGKILL what is left after the grace period (or a second Ctrl-C)."""
        with self._lock:
            processes = list(self._running.values())
            self._killed.update(process.pid for process in processes)
        _signal_groups(processes, signal.SIGTERM)
        deadline = time.monotonic() + self.grace_seconds
        signals_seen = len(self.signals)
        while any(process.poll() is None for process in processes):
            if time.monotonic() > deadline or len(self.signals) > signals_seen:
                break
            time.sleep(0.1)
        # Also reaches what a finished leader left behind in its group (data loader workers...).
        _signal_groups(processes, signal.SIGKILL)


def _signal_groups(processes: list[subprocess.Popen], signum: int) -> None:
    for process in processes:
        try:
            os.killpg(process.pid, signum)
        except (ProcessLookupError, PermissionError):
            pass


def supervise(threads: list[threading.Thread], supervisor: Supervisor) -> None:
    """Wait for the slot threads; on SIGINT/SIGTERM end every child, then let the threads record it."""
    def on_signal(signum: int, _frame: Any) -> None:
        supervisor.signals.append(signum)
        supervisor.stop.set()

    previous = {signum: signal.signal(signum, on_signal) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        for thread in threads:
            thread.start()
        terminated = False
        while any(thread.is_alive() for thread in threads):
            if supervisor.stop.is_set() and not terminated:
                name = signal.Signals(supervisor.signals[0]).name
                print(f"stopping ({name}): ending every running process group", flush=True)
                supervisor.terminate_all()
                terminated = True
            for thread in threads:
                thread.join(timeout=0.1)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


# ---------------------------------------------------------------------------------------------
# Offline: trials through a pool of slots


def now() -> str:
    return datetime.now().astimezone().isoformat(timespec="seconds")


def read_status(directory: Path) -> dict[str, Any]:
    try:
        return json.loads((directory / STATUS_FILE).read_text())
    except (OSError, ValueError):
        return {}


def write_status(directory: Path, status: dict[str, Any]) -> None:
    # Through a temporary file, so that a reader (or a killed launcher) never leaves half a file.
    temporary = directory / f".{STATUS_FILE}.tmp"
    temporary.write_text(json.dumps(status, indent=2) + "\n")
    os.replace(temporary, directory / STATUS_FILE)


def set_aside_previous_attempt(directory: Path) -> None:
    """Move a failed or interrupted attempt to <sweep dir>/.previous/, so the rerun starts clean.

    A rerun starts from scratch; Lightning would otherwise find the old checkpoints next to the new.
    """
    if not directory.exists():
        return
    previous = directory.parent / ".previous"
    previous.mkdir(exist_ok=True)
    attempt = 1
    while (previous / f"{directory.name}.{attempt}").exists():
        attempt += 1
    directory.rename(previous / f"{directory.name}.{attempt}")


def still_running(directory: Path) -> int | None:
    """The pid of this trial's process if a killed launcher left it running (status "running")."""
    status = read_status(directory)
    pid = status.get("pid")
    if status.get("status") != RUNNING or not pid:
        return None
    try:
        os.kill(pid, 0)
        # The pid may have been reused since: it is this trial's only if its command names the dir.
        return pid if str(directory) in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace") else None
    except (ProcessLookupError, PermissionError, FileNotFoundError):
        return None


def last_line(path: Path) -> str:
    """The last non-empty line of a log: for a failed trial, usually its error."""
    try:
        with path.open("rb") as log:
            log.seek(max(0, log.seek(0, os.SEEK_END) - 4096))
            lines = [line.strip() for line in log.read().decode(errors="replace").splitlines() if line.strip()]
    except OSError:
        return ""
    return lines[-1] if lines else ""


def start_trial(trial: Trial, slot: Slot, slots: int, supervisor: Supervisor, cwd: Path,
                log: IO) -> subprocess.Popen | None:
    try:
        return supervisor.start(trial.command, slot_env(slot, slots), cwd, log)
    except OSError as error:  # e.g. the interpreter is gone: this trial fails, the others go on
        log.write(f"cannot start {trial.command[0]}: {error}\n")
        return None


def outcome_of(returncode: int | None, killed: bool) -> str:
    # A trial we signalled is interrupted even if it exits 0: Lightning stops early on SIGTERM and
    # still writes its metrics, which must not pass for a finished trial.
    if killed:
        return INTERRUPTED
    if returncode == 0:
        return FINISHED
    if returncode is not None and returncode < 0:
        return CRASHED  # ended by a signal we did not send (e.g. the OOM killer)
    return FAILED


def run_trial(trial: Trial, slot: Slot, slots: int, supervisor: Supervisor, cwd: Path) -> str | None:
    """Run one trial in its directory, recording status.json; its final status (None: not started)."""
    if supervisor.stop.is_set():
        return None
    set_aside_previous_attempt(trial.directory)
    trial.directory.mkdir(parents=True)
    status: dict[str, Any] = {
        "status": RUNNING, "returncode": None, "overrides": trial.overrides, "command": trial.command,
        "cuda_visible_devices": slot.cuda_visible_devices, "slot": slot.index, "pid": None,
        "started": now(), "ended": None,
    }
    returncode: int | None = None
    with (trial.directory / LOG_FILE).open("w") as log:
        process = start_trial(trial, slot, slots, supervisor, cwd, log)
        killed = process is None and supervisor.stop.is_set()  # stopped between the check and the start
        if process is not None:
            status["pid"] = process.pid
            write_status(trial.directory, status)
            print(f"[slot {slot.index}] started {trial.trial_id}: {' '.join(trial.overrides)}", flush=True)
            returncode, killed = supervisor.wait(process)
    outcome = outcome_of(returncode, killed)
    write_status(trial.directory, {**status, "status": outcome, "returncode": returncode, "ended": now()})
    failed = outcome not in (FINISHED, INTERRUPTED)
    detail = f" (exit {returncode}): {last_line(trial.directory / LOG_FILE)}" if failed else ""
    print(f"[slot {slot.index}] {outcome} {trial.trial_id}{detail}", flush=True)
    return outcome


def slot_worker(slot: Slot, slots: int, pending: queue.Queue, outcomes: dict[str, str],
                supervisor: Supervisor, cwd: Path, stagger: float) -> None:
    """Take trials from the queue until it is empty or the launcher stops."""
    # Staggered first starts: N trials importing torch and loading MNIST at once all start slowly.
    if supervisor.stop.wait(slot.index * stagger):
        return
    while not supervisor.stop.is_set():
        try:
            trial = pending.get_nowait()
        except queue.Empty:
            return
        outcome = run_trial(trial, slot, slots, supervisor, cwd)
        if outcome:
            outcomes[trial.trial_id] = outcome


class SweepLock:
    """An flock on <sweep dir>/launcher.lock: two launchers on one sweep dir would run trials twice."""

    def __init__(self, sweep_dir: Path) -> None:
        sweep_dir.mkdir(parents=True, exist_ok=True)
        self._file = (sweep_dir / LOCK_FILE).open("w")
        try:
            fcntl.flock(self._file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._file.close()
            raise SweepError(f"another launcher is running the sweep in {sweep_dir}: wait for it or stop it") from None

    def release(self) -> None:
        self._file.close()


def run_offline(trials: list[Trial], slots: list[Slot], sweep_dir: Path, cwd: Path,
                stagger: float, grace: float, allow_failures: bool) -> int:
    """Run the trials not yet finished on a pool of slots; the exit code (0: none failed)."""
    lock = SweepLock(sweep_dir)  # before reading the statuses: another launcher may be writing them
    try:
        todo = [trial for trial in trials if read_status(trial.directory).get("status") != FINISHED]
        for trial in todo:
            if pid := still_running(trial.directory):
                raise SweepError(f"trial {trial.trial_id} is still running (pid {pid}) from a launcher that was "
                                 f"killed: end it with `kill -- -{pid}` or let it finish, then rerun")
        skipped = len(trials) - len(todo)
        print(f"sweep dir {sweep_dir}: {len(trials)} trials, {skipped} finished before (skipped), "
              f"{len(todo)} to run on {len(slots)} slot(s)", flush=True)
        pending: queue.Queue = queue.Queue()
        for trial in todo:
            pending.put(trial)
        outcomes: dict[str, str] = {}
        supervisor = Supervisor(grace)
        threads = [
            threading.Thread(target=slot_worker, args=(slot, len(slots), pending, outcomes, supervisor, cwd, stagger),
                             name=f"slot-{slot.index}", daemon=True)
            for slot in slots[: len(todo)]
        ]
        supervise(threads, supervisor)
    finally:
        lock.release()
    counts = {name: sum(1 for outcome in outcomes.values() if outcome == name)
              for name in (FINISHED, FAILED, CRASHED, INTERRUPTED)}
    failed = sorted(trial_id for trial_id, outcome in outcomes.items() if outcome in (FAILED, CRASHED))
    print(f"sweep: {counts[FINISHED]} finished, {counts[FAILED] + counts[CRASHED]} failed"
          f"{' (' + ', '.join(failed) + ')' if failed else ''}, {counts[INTERRUPTED]} interrupted, "
          f"{len(todo) - len(outcomes)} not started, {skipped} skipped -> {sweep_dir}", flush=True)
    if supervisor.signals:
        return 128 + supervisor.signals[0]
    return 1 if failed and not allow_failures else 0


# ---------------------------------------------------------------------------------------------
# Online: wandb's sweep and agents


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


def run_online(config: dict[str, Any], args: argparse.Namespace, slots: list[Slot], program_root: Path) -> int:
    """Create (or join) the sweep on the server; one `wandb agent` per slot; the agents' worst exit code."""
    import wandb

    project = args.project or config.get("project") or "mlplab"
    entity = args.entity or config.get("entity")
    try:
        sweep_id = args.sweep_id or wandb.sweep(config, project=project, entity=entity)
    except wandb.errors.Error as error:
        raise SweepError(f"the wandb server refused or could not be reached ({error}): "
                         "retry, or run with --offline") from None
    agent = [sys.executable, "-m", "wandb", "agent", "--project", project]
    agent += ["--entity", entity] if entity else []
    agent += ["--count", str(args.count)] if args.count else []
    agent.append(sweep_id)
    sweep_dir = args.sweep_dir or default_sweep_dir(args.file, program_root, sweep_id.rsplit("/", 1)[-1])
    sweep_dir.mkdir(parents=True, exist_ok=True)
    print(f"sweep {sweep_id}: {len(slots)} agent(s) `{shlex.join(agent)}`, logs in {sweep_dir}", flush=True)
    supervisor = Supervisor(args.grace)
    returncodes: dict[int, int | None] = {}

    def agent_slot(slot: Slot) -> None:
        if supervisor.stop.wait(slot.index * args.stagger):
            return
        # The agent runs `python <program>`: put this interpreter first on PATH so that is ours.
        env = slot_env(slot, len(slots))
        env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
        with (sweep_dir / f"agent-{slot.index}.log").open("a") as log:
            process = supervisor.start(agent, env, program_root, log)
            if process is not None:
                print(f"[slot {slot.index}] agent pid {process.pid}, "
                      f"CUDA_VISIBLE_DEVICES={slot.cuda_visible_devices!r}", flush=True)
                returncodes[slot.index] = supervisor.wait(process)[0]

    supervise([threading.Thread(target=agent_slot, args=(slot,), daemon=True) for slot in slots], supervisor)
    if supervisor.signals:
        return 128 + supervisor.signals[0]
    return max((abs(code or 0) for code in returncodes.values()), default=0)


# ---------------------------------------------------------------------------------------------
# Command line


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m mlplab.sweep",
        description="Run a wandb sweep file: wandb agents pinned to GPUs when the wandb server is reachable, "
                    "else (or with --offline) the same trials on this machine, one directory each.",
        epilog="Offline, trials go to <sweep dir>/<trial id>/ (status.json, trial.log and the run's files); "
               "a rerun of the same file skips the finished trials and runs the others again from scratch. "
               "Ctrl-C ends every running trial and marks it interrupted. Exit status: 0 when no trial failed, "
               "1 when one did, 128+N on signal N.",
    )
    parser.add_argument("file", type=Path, help="the sweep yaml, e.g. sweeps/activations.yaml")
    slots = parser.add_argument_group("slots (one agent or trial at a time each)")
    slots.add_argument("--gpus", help="GPU ids to pin agents to, e.g. 0,1,2,3 (CUDA_VISIBLE_DEVICES per agent)")
    slots.add_argument("--agents-per-gpu", type=int, help="agents per GPU with --gpus (default 1)")
    slots.add_argument("--agents", type=int, help="agents on a CPU-only machine, not pinned (default 1)")
    slots.add_argument("--stagger", type=float, default=5.0,
                       help="seconds between the first starts of consecutive slots (default 5)")
    parser.add_argument("--count", type=int,
                        help="online: trials per agent (default: until the sweep is done); offline: random/bayes "
                             "draws in all (required), or at most this many grid trials")
    parser.add_argument("--offline", action="store_true",
                        help="run locally even if wandb could be reached (also when WANDB_MODE=offline or no login)")
    parser.add_argument("--dry-run", action="store_true", help="print the trials' command lines and exit")
    parser.add_argument("--seed", type=int, default=0, help="seed of the offline random/bayes draws (default 0)")
    parser.add_argument("--sweep-dir", type=Path,
                        help="offline: where the trial dirs go "
                             "(default <program root>/outputs/sweeps/<file stem>-<hash of the file>)")
    parser.add_argument("--program-root", type=Path,
                        help="folder the file's program is relative to, where trials and agents run (default: the "
                             "parent of the sweep file's folder if the program is there, else the current folder)")
    parser.add_argument("--grace", type=float, default=10.0,
                        help="seconds between SIGTERM and SIGKILL for the trials when stopped (default 10)")
    parser.add_argument("--allow-failures", action="store_true", help="exit 0 even when some trials failed")
    online = parser.add_argument_group("online")
    online.add_argument("--project", help="wandb project (default: the file's project:, else mlplab)")
    online.add_argument("--entity", help="wandb entity (default: the file's entity:, else yours)")
    online.add_argument("--sweep-id", help="join this existing sweep instead of creating one")
    return parser.parse_args(argv)


def print_dry_run(config: dict[str, Any], trials: list[Trial], program_root: Path, sweep_dir: Path) -> None:
    print(f"# {len(trials)} {config['method']} trials, run in {program_root}, into {sweep_dir}")
    for trial in trials:
        finished = read_status(trial.directory).get("status") == FINISHED
        print(f"# {trial.trial_id}{' (finished: would be skipped)' if finished else ''}")
        print(shlex.join(trial.command))


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        config = load_sweep(args.file)
        slots = make_slots(args.gpus, args.agents_per_gpu, args.agents)
        program_root = resolve_program_root(args.file, config["program"], args.program_root)
        reason = "--dry-run" if args.dry_run else offline_reason(args.offline)
        if reason is None:
            return run_online(config, args, slots, program_root)
        if config["method"] == "bayes":
            print(f"note: bayes search needs the wandb server; offline ({reason}) the trials are "
                  f"--count random draws (--seed {args.seed}) from the same distributions", flush=True)
        sweep_dir = (args.sweep_dir or default_sweep_dir(args.file, program_root)).resolve()
        trials = make_trials(config, sweep_dir, args.count, args.seed)
        if args.dry_run:
            print_dry_run(config, trials, program_root, sweep_dir)
            return 0
        print(f"offline ({reason}): {config['method']} sweep {args.file}", flush=True)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        # The dir name is a hash: keep the file it came from next to the trials.
        (sweep_dir / "sweep.yaml").write_bytes(args.file.read_bytes())
        return run_offline(trials, slots, sweep_dir, program_root, args.stagger, args.grace, args.allow_failures)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
