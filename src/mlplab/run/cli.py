"""How the entry points end: whatever went wrong is one line on the terminal, never a traceback.

`entry(main)` runs a `@hydra.main` function so that Hydra's own errors (an override it cannot
parse, an option that does not exist) reach us instead of being printed with Hydra's hint, and
become one `error:` line. `report_errors(output_dir)` wraps the run itself: a user's mistake is its
message; anything else (a library's refusal, memory, a bug) is one line naming the exception and
the run's error.log, which holds the traceback. `HYDRA_FULL_ERROR=1` still gives the full trace.
"""

from __future__ import annotations

import os
import signal
import sys
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NoReturn

FULL_ERROR = "HYDRA_FULL_ERROR"
MAX_LINE = 600
# Messages of torch and Python that mean memory ran out, whatever the exception type.
OUT_OF_MEMORY = ("out of memory", "can't allocate memory", "cannot allocate memory", "not enough memory")


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
_stopped_by: int | None = None


def exit_on_stop_signals() -> None:
    """Until a run takes the stop signals over (mlplab.run.stops), SIGINT, SIGTERM and SIGHUP exit with
    128 + N, as a stopped run does, instead of Python's default (a KeyboardInterrupt traceback, or
    death by the signal)."""
    for signum in STOP_SIGNALS:
        signal.signal(signum, _exit_stopped)


def _exit_stopped(signum: int, frame: object) -> None:
    global _stopped_by
    _stopped_by = signum
    sys.exit(128 + signum)


def _exit_if_stopped() -> None:
    # A stop that landed inside an import (a C extension's start) surfaces as that import's error.
    if _stopped_by is not None:
        sys.exit(128 + _stopped_by)


def one_line(error: BaseException) -> str:
    """The error's message folded onto one line (the type's name when it says nothing)."""
    text = " ".join(str(error).split()) or type(error).__name__
    return text if len(text) <= MAX_LINE else text[: MAX_LINE - 3] + "..."


def fail(message: str, status: int = 1) -> NoReturn:
    """Print `error: message` on one line (a value holding a newline cannot break it) and exit."""
    print("error: " + " ".join(message.splitlines()), file=sys.stderr, flush=True)
    sys.exit(status)


def is_out_of_memory(error: BaseException) -> bool:
    return isinstance(error, MemoryError) or any(text in str(error).lower() for text in OUT_OF_MEMORY)


def write_traceback(output_dir: Path, error: BaseException) -> Path | None:
    """The traceback into output_dir/error.log unless the run wrote its own; where it is, if anywhere."""
    from mlplab.run.records import ERROR_LOG, RunFileError, write_text

    log = Path(output_dir) / ERROR_LOG
    try:
        if not (log.is_file() and log.stat().st_size > 0):
            write_text(log, "".join(traceback.format_exception(error)))
    except (RunFileError, OSError):
        return None
    return log


def unexpected(error: BaseException, output_dir: Path | None) -> str:
    """The line for an error that is not one of ours: what it was and where its traceback is."""
    log = write_traceback(output_dir, error) if output_dir is not None and Path(output_dir).is_dir() else None
    where = f" (traceback in {log})" if log else ""
    if is_out_of_memory(error):
        return (f"out of memory: {one_line(error)}{where}. Use smaller model.hidden_sizes or data.batch_size / "
                "data.eval_batch_size, or a machine with more memory.")
    return f"{type(error).__name__}: {one_line(error)}{where}"


def output_dir_of(cfg: object) -> str | None:
    """The run's folder (`paths.output_dir`), or None where the config cannot say: a config from
    elsewhere without `paths`, say; the checks then name what is missing."""
    try:
        return str(cfg.paths.output_dir)  # type: ignore[attr-defined]
    except Exception:  # noqa: BLE001 - any reason the folder is unknown
        return None


@contextmanager
def report_errors(output_dir: Path | str | None) -> Iterator[None]:
    """Turn every error of the enclosed run into one `error:` line and exit status 1.

    Signals' exits (SystemExit with 128 + N) and Ctrl-C pass through untouched.
    """
    from mlplab.errors import UserError
    from mlplab.run.records import record_refusal

    folder = Path(output_dir) if output_dir is not None else None
    try:
        yield
    except UserError as error:
        _exit_if_stopped()
        if folder is not None:
            record_refusal(folder, error)
        fail(str(error))
    except OSError as error:  # a full disk or a vanished folder while writing checkpoints or logs
        _exit_if_stopped()
        where = error.filename or folder
        fail(f"{error.strerror or one_line(error)}: {where}; free space there or point paths.output_root=... "
             "at another folder")
    except Exception as error:  # noqa: BLE001 - the last line of defence: never a bare traceback
        _exit_if_stopped()
        if os.environ.get(FULL_ERROR) == "1" and not _set_by_us():
            raise
        fail(unexpected(error, folder))


_OURS = "_MLPLAB_SET_HYDRA_FULL_ERROR"


def _set_by_us() -> bool:
    return os.environ.get(_OURS) == "1"


def entry(main: Callable[[], object]) -> None:
    """Run a `@hydra.main` function; Hydra's errors become one line (unless HYDRA_FULL_ERROR=1 was
    asked for, which keeps Hydra's full traceback)."""
    from mlplab.run.config_files import checked_argv
    from mlplab.errors import UserError

    try:
        sys.argv[1:] = checked_argv()
    except UserError as error:
        fail(str(error))
    except Exception as error:  # noqa: BLE001 - a folder the check cannot read is refused, never run unchecked
        fail(f"the config folder given could not be checked ({type(error).__name__}: {one_line(error)})")
    if os.environ.get(FULL_ERROR) == "1" and not _set_by_us():
        main()
        return
    # With this set Hydra raises its errors instead of printing them with a hint to set it.
    os.environ[FULL_ERROR] = os.environ[_OURS] = "1"
    try:
        main()
    except Exception as error:  # noqa: BLE001 - Hydra's composition and override errors
        _exit_if_stopped()
        fail(hydra_message(error))


def hydra_message(error: BaseException) -> str:
    """What Hydra would print of a composition error, on one line: its message and, as Hydra adds
    it, the first line of the OmegaConf error behind it (e.g. "Key 'max_epoch' is not in struct")."""
    # Hydra appends its config search path to a missing option's message: noise to a user.
    message = one_line(error).split(" Config search path:")[0]
    cause = error.__cause__
    if cause is not None and type(cause).__module__.startswith("omegaconf"):
        first = str(cause).strip().splitlines()[0] if str(cause).strip() else ""
        if first and first not in message:
            message = f"{message.rstrip('.')}: {first}"
    return message
