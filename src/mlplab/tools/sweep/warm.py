"""Trials forked from a warm launcher: torch, Lightning, Hydra and wandb are imported once per sweep,
and each trial is an os.fork() of the launcher that then runs the program as `python train.py
<overrides>` would run it, so it skips the 5-15 s of imports a fresh process pays.

A forked trial is set up as a fresh process would be: its own session (process group), SIGTERM when
the launcher dies, stdin from /dev/null, stdout and stderr into the trial's log, the trial's folder
and environment, signal handlers at their defaults, its own exit handlers run at the end. Since
OpenMP read OMP_NUM_THREADS when the launcher imported torch, the trial sets its thread count itself.

Forking is only safe from a launcher with one thread that never initialised CUDA, so that is checked
before every fork; where it does not hold, where the command is not `python SCRIPT.py ...`, without
fork (off Linux) or with --fresh-processes, trials start as fresh processes (processes.py). Either
way the launcher sees a process with a pid, poll(), wait() and a returncode.
"""

from __future__ import annotations

import atexit
import builtins
import importlib.machinery
import io
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import types
from collections.abc import Callable
from pathlib import Path
from typing import IO, NoReturn

from mlplab.run.cli import STOP_SIGNALS
from mlplab.tools.sweep.processes import parent_death_signal, start_process

# What train.py and the run import; a forked trial finds them in sys.modules.
WARM_MODULES = ("torch", "pytorch_lightning", "hydra", "omegaconf", "wandb", "torchmetrics", "mlplab.run.records",
                "mlplab.run.config_checks", "mlplab.errors", "mlplab.run.training")


# Exit handlers a fresh interpreter registers as it imports these, in that order, which act on its own process.
PROCESS_EXIT_HANDLERS = (("logging", "shutdown"), ("torch.utils.data._utils", "_set_python_exit_flag"),
                         ("multiprocessing.util", "_exit_function"))


class ForkedProcess:
    """A forked trial as the launcher handles a subprocess.Popen: pid, poll(), wait(), returncode."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self) -> int:
        if self.returncode is None:
            self.returncode = os.waitstatus_to_exitcode(os.waitpid(self.pid, 0)[1])
        return self.returncode


def forkable(command: list[str]) -> bool:
    """Whether `command` is `python SCRIPT.py ...` run by this interpreter (what a fork can stand in for)."""
    return len(command) >= 2 and command[0] == sys.executable and command[1].endswith(".py")


def fork_hazard() -> str | None:
    """Why forking this launcher now would not be safe, or None."""
    if threading.active_count() != 1:
        return f"the launcher runs {threading.active_count()} threads"
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_initialized():
        return "the launcher has initialised CUDA"
    return None


def open_descriptors() -> set[int]:
    return {int(name) for name in os.listdir("/proc/self/fd")}


class TrialStarter:
    """Starts the trials of an offline sweep: forked from this launcher once it is warm, or fresh."""

    def __init__(self, fresh_processes: bool) -> None:
        self.fresh_reason = ("--fresh-processes" if fresh_processes
                             else None if hasattr(os, "fork") and sys.platform.startswith("linux")
                             else f"no fork on {sys.platform}")
        self.library_descriptors: set[int] = set()

    def warm_up(self) -> None:
        """Import what every trial imports, once, and say how trials will start."""
        if self.fresh_reason is None:
            started, before = time.monotonic(), open_descriptors()
            # In a fresh train.py Hydra has set up logging before these imports, so Lightning logs through
            # Hydra's handlers (and the run's train.log) instead of adding its own: import them likewise.
            placeholder = logging.NullHandler()
            logging.getLogger().addHandler(placeholder)
            try:
                for name in WARM_MODULES:
                    importlib.import_module(name)
            except Exception as error:  # noqa: BLE001 - each trial then shows its own error in its log
                self.fresh_reason = f"importing {name} failed in the launcher ({type(error).__name__}: {error})"
            else:
                # What the imports opened is theirs and stays open in a trial; the launcher's own do not.
                self.library_descriptors = open_descriptors() - before
                print(f"imported torch, Lightning, Hydra and wandb in {time.monotonic() - started:.1f} s: trials "
                      "start forked from this launcher (--fresh-processes: a new process each)", flush=True)
                return
            finally:
                logging.getLogger().removeHandler(placeholder)
        print(f"trials start as fresh processes, each paying its imports: {self.fresh_reason}", flush=True)

    def start(self, command: list[str], env: dict[str, str], cwd: Path, log: IO) -> subprocess.Popen | ForkedProcess:
        if self.fresh_reason is None and forkable(command):
            hazard = fork_hazard()
            if hazard is None:
                return start_forked(command, env, cwd, log, self.library_descriptors)
            self.fresh_reason = hazard
            print(f"trials start as fresh processes from now on: {hazard}", flush=True)
        return start_process(command, env, cwd, log)


def start_forked(command: list[str], env: dict[str, str], cwd: Path, log: IO,
                 library_descriptors: set[int]) -> ForkedProcess:
    """Fork a trial that runs `command` (python SCRIPT.py ARGS); return once it is in its own session."""
    set_parent_death_signal = parent_death_signal()
    for stream in (sys.stdout, sys.stderr):
        stream.flush()  # else the trial would write the launcher's pending output into its log
    ready_read, ready_write = os.pipe()
    # A stop signal waits until the trial has the default handlers: the launcher's would only record it.
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        pid = os.fork()
        if pid == 0:
            run_trial(command, env, cwd, log.fileno(), ready_write, mask, set_parent_death_signal,
                      library_descriptors)
    except OSError:  # no fork (out of memory or processes): start_trial records the trial failed
        os.close(ready_read)
        raise
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        os.close(ready_write)
    try:
        os.read(ready_read, 1)  # as Popen does, return once the trial is in the group end_groups signals
    finally:
        os.close(ready_read)
    return ForkedProcess(pid)


def run_trial(command: list[str], env: dict[str, str], cwd: Path, log_fd: int, ready_write: int,
              mask: set[signal.Signals], set_parent_death_signal: Callable[[], None] | None,
              library_descriptors: set[int]) -> NoReturn:
    """In the forked child: become what `subprocess.Popen(command, ...)` would have started, run it, exit."""
    status, launcher_streams = 1, [sys.stdin, sys.stdout, sys.stderr]  # imported code may still hold these
    try:
        os.setsid()
        if set_parent_death_signal is not None:
            set_parent_death_signal()
        default_signal_handlers()
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        redirect_stdio(log_fd, unbuffered=bool(env.get("PYTHONUNBUFFERED")))
        os.write(ready_write, b".")  # a group to signal, a log that names the trial (trials.trial_alive)
        os.close(ready_write)
        retire_descriptors(library_descriptors)
        os.chdir(cwd)
        os.environ.clear()
        os.environ.update(env)
        set_thread_count(env.get("OMP_NUM_THREADS", ""))
        status = run_script(command[1], command[2:])
    except BaseException:  # noqa: BLE001 - a trial never returns into the launcher's code
        sys.excepthook(*sys.exc_info())
    finally:
        flush_stdio(sys.stderr, sys.stdout, *launcher_streams)
        os._exit(status)


def default_signal_handlers() -> None:
    """As after exec: none of the launcher's handlers; SIGINT raises KeyboardInterrupt as in any Python."""
    for signum in signal.valid_signals():
        try:
            if callable(signal.getsignal(signum)):
                signal.signal(signum, signal.SIG_DFL)
        except (OSError, ValueError):
            pass  # SIGKILL, SIGSTOP and signals the OS reserves
    signal.signal(signal.SIGINT, signal.default_int_handler)


def redirect_stdio(log_fd: int, unbuffered: bool) -> None:
    """stdin from /dev/null, stdout and stderr into the log, and sys.std* over them buffered as a fresh
    interpreter's are (stdout by blocks on a file, stderr by lines; neither with PYTHONUNBUFFERED).

    The launcher's own stream objects stay where they write to those descriptors: wandb patched their
    write() when the launcher imported it, to copy a run's console into the run. Only a stream that
    writes elsewhere (a test's capture) is replaced.
    """
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)
    os.dup2(log_fd, 1)
    os.dup2(log_fd, 2)
    os.close(devnull)
    for fd, name in enumerate(("stdin", "stdout", "stderr")):
        stream = getattr(sys, name)
        if descriptor_of(stream) != fd:
            raw = io.FileIO(fd, "w" if fd else "r", closefd=False)
            buffer = raw if fd and unbuffered else io.BufferedWriter(raw) if fd else io.BufferedReader(raw)
            stream = io.TextIOWrapper(buffer, encoding=getattr(stream, "encoding", None),
                                      errors=getattr(stream, "errors", None))
        if fd:
            stream.reconfigure(line_buffering=not unbuffered and (fd == 2 or os.isatty(fd)), write_through=unbuffered)
        setattr(sys, name, stream)
        setattr(sys, f"__{name}__", stream)


def descriptor_of(stream: IO | None) -> int | None:
    try:
        return stream.fileno()
    except (AttributeError, OSError, ValueError):
        return None


def retire_descriptors(keep: set[int]) -> None:
    """Point the launcher's other descriptors (its lock, other trials' logs) at /dev/null in the trial.

    /dev/null rather than close: the launcher's file objects, copied into the trial, may still close
    or flush theirs, which must not reach a file the trial opens under the same number.
    """
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in open_descriptors() - keep - {0, 1, 2, devnull}:
        try:
            os.dup2(devnull, fd)
        except OSError:
            pass  # the listing's own descriptor, closed by now
    os.close(devnull)


def set_thread_count(omp_num_threads: str) -> None:
    """What OMP_NUM_THREADS does when a fresh process imports torch (its first number, "4,2" -> 4)."""
    first = omp_num_threads.split(",")[0].strip()
    if first.isdigit() and int(first) > 0:
        import torch

        torch.set_num_threads(int(first))


def run_script(script: str, arguments: list[str]) -> int:
    """Run `script` as __main__ with sys.argv [script, *arguments], as `python script ...` would, and end
    as the interpreter ends: non-daemon threads joined, exit handlers run; the exit status it would have."""
    from hydra.core.global_hydra import GlobalHydra

    path = os.path.abspath(script)
    sys.argv = [script, *arguments]
    sys.path[0] = os.path.dirname(path)
    # What the interpreter makes of `python script`: __main__ is the script's module, its __file__ absolute.
    main = sys.modules["__main__"] = types.ModuleType("__main__")
    main.__dict__.update(__file__=path, __builtins__=builtins, __cached__=None, __package__=None,
                         __loader__=importlib.machinery.SourceFileLoader("__main__", path))
    GlobalHydra.instance().clear()
    # The launcher's exit handlers clean up the launcher's things (wandb's temporary folders, which its
    # trials share): the trial keeps only those that act on its own process, and registers its own.
    atexit._clear()
    for module, handler in PROCESS_EXIT_HANDLERS:
        if module in sys.modules:
            atexit.register(getattr(sys.modules[module], handler))
    outcome: BaseException | None = None
    try:
        exec(compile(Path(path).read_bytes(), path, "exec"), main.__dict__)  # it is `python script`
    except BaseException as error:  # noqa: BLE001 - reported and turned into an exit status below, as Python does
        outcome = error
    flush_stdio(sys.stderr, sys.stdout)  # before the report, as the interpreter does
    status = report_exit(outcome)
    threading._shutdown()
    atexit._run_exitfuncs()
    if isinstance(outcome, KeyboardInterrupt):  # Python then ends by SIGINT, so that its parent sees why
        flush_stdio(sys.stderr, sys.stdout)
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGINT)
    return status


def report_exit(outcome: BaseException | None) -> int:
    """The exit status a script ending with `outcome` gets, printed as Python prints it."""
    if outcome is None:
        return 0
    if isinstance(outcome, SystemExit):
        return exit_status(outcome.code)
    outcome.with_traceback(outcome.__traceback__.tb_next)  # from the script's frames on
    sys.excepthook(type(outcome), outcome, outcome.__traceback__)
    return 1


def flush_stdio(*streams: IO | None) -> None:
    for stream in streams:
        try:
            stream.flush()
        except Exception:  # noqa: BLE001 - none, closed or broken: nothing more can be said
            pass


def exit_status(code: object) -> int:
    """The status `raise SystemExit(code)` ends a Python process with (printing a non-number code)."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    print(code, file=sys.stderr)
    return 1
