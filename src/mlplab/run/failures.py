"""A failed process's real error, read from what it left: its error.log, else its log.

The last line of a log is often not the error: Hydra ends its errors with a hint
("Set the environment variable HYDRA_FULL_ERROR=1 ...") and starts them with the overrides it
ran; an OmegaConf error ends with `full_key:` / `object_type=` context lines; wandb points at a
debug file. Those lines are skipped; what is left is, in this order, the last `error: ...` line,
the exception line of the last traceback, or the last line.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from mlplab.run.records import ERROR_LOG

TAIL_BYTES = 64 * 1024  # the end of a log is where its error is; a long log's start is training output
BOILERPLATE = re.compile(
    r"^(Set the environment variable HYDRA_FULL_ERROR=1"
    r"|Error executing job with overrides: \["
    r"|See https?://hydra\.cc/\S* for details"
    r"|(wandb: )?ERROR Find detailed error logs at"
    r"|full_key:|object_type=|reference_type=)"
)
ERROR_LINE = re.compile(r"^(wandb: ERROR\b|[Ee]rror:|ERROR:)")
TRACEBACK = "Traceback (most recent call last):"


def read_tail(path: Path, max_bytes: int = TAIL_BYTES) -> str:
    """The end of a text file ('' when it cannot be read)."""
    try:
        with Path(path).open("rb") as handle:
            handle.seek(max(0, handle.seek(0, os.SEEK_END) - max_bytes))
            return handle.read().decode(errors="replace")
    except OSError:
        return ""


def exception_line(lines: list[str]) -> str:
    """The `Type: message` line that ends the last traceback in `lines`, or ''."""
    starts = [index for index, line in enumerate(lines) if line.strip() == TRACEBACK]
    if not starts:
        return ""
    for line in lines[starts[-1] + 1:]:
        if line.strip() and not line.startswith((" ", "\t")):  # frames and source lines are indented
            return line.strip()
    return ""


def error_in_text(text: str) -> str:
    """The real error in a process's output (see the module docstring); '' when it says nothing."""
    # A progress bar rewrites its line with carriage returns: each rewrite is a line of its own.
    lines = [line.rstrip() for line in re.split(r"\r\n|\r|\n", text)]
    kept = [line for line in lines if line.strip() and not BOILERPLATE.match(line.strip())]
    errors = [line.strip() for line in kept if ERROR_LINE.match(line)]  # unindented: not source lines
    return errors[-1] if errors else exception_line(kept) or (kept[-1].strip() if kept else "")


def error_line(directory: Path, *logs: str) -> str:
    """A failed run's real error: from its error.log, else from the first of `logs` that has one."""
    for name in (ERROR_LOG, *logs):
        line = error_in_text(read_tail(Path(directory) / name))
        if line:
            return line
    return ""
