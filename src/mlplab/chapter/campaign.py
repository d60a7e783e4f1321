"""Running the chapter's sweeps: one sweep dir per sweep file under the chapter dir, each launched
through `python -m mlplab.tools.sweep --offline` with packs, so a rerun continues where the last
stopped (finished trials are skipped, an interrupted pack continues from its checkpoint).

Every trial gets one CPU thread whatever the number of slots: the thread count decides the bits of a
CPU run, so a chapter continued with other slots stays the same computation. Runs whose training code
differs from the checkout's are stale: their sweep dir is set aside and the sweep runs again.
"""

from __future__ import annotations

import json
import math
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from collections.abc import Sequence
from typing import Any

from mlplab.errors import UserError
from mlplab.run.provenance import MAX_LISTED, cpu_model
from mlplab.run.records import now
from mlplab.tools.sweep.processes import parent_death_signal
from mlplab.tools.sweep.spec import load_sweep
from mlplab.tools.sweep.steering import steer

TIMING_FILE = "timing.jsonl"
MANIFEST = "chapter.json"  # the overrides its runs were made with (none: the chapter itself)
COMMIT = re.compile(r"[0-9a-f]{7,40}")
STALE_DIR = ".stale"
# The code and files that decide a trained number; a change elsewhere (reports, docs) keeps the runs.
TRAINING_PATHS = ("src/mlplab/core", "src/mlplab/run", "src/mlplab/fastpath", "src/mlplab/lightning_internals.py",
                  "src/mlplab/tools/sweep", "conf", "train.py", "requirements/lock.txt")
SINGLE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}


@dataclass(frozen=True)
class Sweep:
    """One sweep file the chapter runs, and where its trials go."""

    stem: str
    root: Path  # the checkout: sweeps/<stem>.yaml and train.py are relative to it

    @property
    def file(self) -> Path:
        return self.root / "sweeps" / f"{self.stem}.yaml"

    def directory(self, chapter_dir: Path) -> Path:
        return chapter_dir / self.stem

    def spec(self, overrides: Sequence[str] = ()) -> dict[str, Any]:
        """The file as the launcher runs it: narrowed by the overrides of its swept keys."""
        return steer(load_sweep(self.file), list(overrides), self.file)

    def shape(self, overrides: Sequence[str] = ()) -> tuple[int, int]:
        """(configurations, seeds per configuration) of the grid."""
        values = {key: len(entry.get("values", [entry.get("value")]))
                  for key, entry in self.spec(overrides)["parameters"].items()}
        seeds = values.pop("seed", 1)
        return math.prod(values.values()), seeds


def pack_size(configurations: int, seeds: int, slots: int) -> int:
    """Members per pack: a configuration's seeds in one pack, split only where fewer configurations
    than slots would leave slots idle."""
    if configurations >= slots:
        return seeds
    return max(1, math.ceil(seeds / (slots // configurations)))


def launch_command(sweep: Sweep, chapter_dir: Path, slots: int, overrides: list[str]) -> list[str]:
    configurations, seeds = sweep.shape(overrides)
    return [sys.executable, "-m", "mlplab.tools.sweep", str(sweep.file), "--offline", "--agents", str(slots),
            "--pack", str(pack_size(configurations, seeds, slots)), "--stagger", "1",
            "--sweep-dir", str(sweep.directory(chapter_dir)), *overrides]


def trial_env() -> dict[str, str]:
    env = {**os.environ, **SINGLE_THREAD}
    env.setdefault("WANDB_MODE", "disabled")  # the records are the run dirs; wandb offline would only copy them
    return env


def machine() -> dict[str, Any]:
    return {"cpu": cpu_model(), "cores": os.cpu_count(), "host": os.uname().nodename}


def record_timing(chapter_dir: Path, entry: dict[str, Any]) -> None:
    chapter_dir.mkdir(parents=True, exist_ok=True)
    with (chapter_dir / TIMING_FILE).open("a") as stream:
        stream.write(json.dumps(entry) + "\n")


def read_timing(chapter_dir: Path) -> list[dict[str, Any]]:
    """The timed stretches; a line cut short (the chapter killed while writing it) is left out."""
    path = chapter_dir / TIMING_FILE
    if not path.is_file():
        return []
    entries = []
    for line in path.read_text(errors="replace").splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict) and isinstance(entry.get("sweep"), str) and \
                isinstance(entry.get("seconds"), (int, float)):
            entries.append(entry)
    return entries


def read_manifest(chapter_dir: Path) -> dict[str, Any] | None:
    path = chapter_dir / MANIFEST
    if not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise UserError(f"{path} is unreadable ({error}): delete it only if the runs beside it were made "
                        "without overrides, or use another --dir") from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("overrides"), list):
        raise UserError(f"{path} does not hold a chapter's overrides: use another --dir")
    return manifest


def chapter_overrides(chapter_dir: Path, given: list[str]) -> list[str]:
    """The overrides of the chapter dir's runs: a dir holds one try (or the chapter itself), so other
    overrides there would publish its runs as theirs."""
    manifest = read_manifest(chapter_dir)
    if manifest is None:
        return given
    saved = [str(text) for text in manifest["overrides"]]
    if given and given != saved:
        made = " ".join(saved) or "no overrides (the chapter itself)"
        raise UserError(f"{chapter_dir} holds runs made with {made}, not {' '.join(given)}: give those (or none), "
                        "or another --dir for this try")
    return saved


def write_manifest(chapter_dir: Path, overrides: list[str]) -> None:
    chapter_dir.mkdir(parents=True, exist_ok=True)
    if read_manifest(chapter_dir) is None:
        (chapter_dir / MANIFEST).write_text(json.dumps({"overrides": overrides}) + "\n")


class Stopped(Exception):
    """The chapter was asked to stop (Ctrl-C, SIGTERM, SIGHUP), or its launcher was: the launcher has
    stopped its trials, which continue next time."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
LAUNCHER_REFUSED = 2  # the launcher's status for a file or option it cannot run


def stop_signal(returncode: int) -> int | None:
    """The signal that stopped the launcher, from its exit status (128+N, or -N when killed by N)."""
    signum = -returncode if returncode < 0 else returncode - 128
    return signum if signum in (*STOP_SIGNALS, signal.SIGKILL) else None


def run_sweep(sweep: Sweep, chapter_dir: Path, slots: int, overrides: list[str]) -> int:
    """Launch (or continue) one sweep and time it; its launcher's exit status.

    The launcher runs in its own session, so that a Ctrl-C or hangup reaches it once, through the
    chapter: each of SIGINT, SIGTERM and SIGHUP to the chapter becomes one SIGTERM to the launcher,
    which stops its trials so that they continue next time (a second signal would kill them). If
    the chapter dies, the launcher gets SIGTERM too. Then Stopped is raised: no further sweep starts,
    as when the launcher itself was stopped."""
    command = launch_command(sweep, chapter_dir, slots, overrides)
    started, clock = now(), time.monotonic()
    process = subprocess.Popen(command, cwd=sweep.root, env=trial_env(), start_new_session=True,
                               preexec_fn=parent_death_signal())
    received: list[int] = []

    def forward(signum: int, _frame: object) -> None:
        if not received:
            process.send_signal(signal.SIGTERM)
        received.append(signum)

    previous = {signum: signal.signal(signum, forward) for signum in STOP_SIGNALS}
    try:
        returncode = process.wait()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    record_timing(chapter_dir, {"sweep": sweep.stem, "started": started, "seconds": round(time.monotonic() - clock, 1),
                                "returncode": returncode, "slots": slots, "overrides": overrides,
                                "threads_per_trial": 1, **machine()})
    if received or stop_signal(returncode) is not None:
        raise Stopped(received[0] if received else stop_signal(returncode))
    return returncode


def _git(root: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=30)


def head_commit(root: Path) -> str:
    result = _git(root, "rev-parse", "HEAD")
    if result.returncode != 0:
        raise UserError(f"{root} is not a git checkout: the chapter records which commit made its numbers, "
                        "so run it from a clone of the repository.")
    return result.stdout.strip()


def uncommitted_training_changes(root: Path) -> list[str]:
    result = _git(root, "status", "--porcelain", "--untracked-files=all", "--", *TRAINING_PATHS, "sweeps")
    return [line[3:] for line in result.stdout.splitlines() if line.strip()]


def check_committed(root: Path) -> None:
    """The chapter's runs must be rebuildable from a commit: refuse uncommitted training code."""
    changed = uncommitted_training_changes(root)
    if changed:
        listed = ", ".join(changed[:5]) + (f" and {len(changed) - 5} more" if len(changed) > 5 else "")
        raise UserError(f"uncommitted changes to what decides the numbers ({listed}): commit them (or stash them) "
                        "first, so that the chapter's records name the commit that made them. A try with "
                        "overrides (python -m mlplab.chapter -- trainer.max_epochs=1) runs anyway.")


def same_training_code(root: Path, commit: str, head: str, sweep_file: Path) -> bool:
    if commit == head:
        return True
    paths = [*TRAINING_PATHS, str(sweep_file.relative_to(root))]
    return _git(root, "diff", "--quiet", commit, head, "--", *paths).returncode == 0


def touches_training(changed: list[str]) -> bool:
    """Whether a run's uncommitted changes (run_info's list, cut at 20 names) may include training code."""
    prefixes = (*TRAINING_PATHS, "sweeps")
    return len(changed) >= MAX_LISTED or any(path.startswith(prefixes) for path in changed)


def run_git(info_path: Path) -> dict[str, Any] | None:
    """A run record's git state, or None when the record cannot say which commit made the run."""
    try:
        info = json.loads(info_path.read_text())
    except (OSError, ValueError):
        return None
    git = info.get("git") if isinstance(info, dict) else None
    if not isinstance(git, dict) or not isinstance(git.get("commit"), str) or not COMMIT.fullmatch(git["commit"]):
        return None
    changed = git.get("changed")
    return {"commit": git["commit"], "dirty": bool(git.get("dirty")),
            "changed": [str(path) for path in changed] if isinstance(changed, list) else [""] * MAX_LISTED}


def run_commits(sweep_dir: Path) -> tuple[dict[str, bool], list[Path]]:
    """Each commit that made a run under the sweep dir, whether any of its runs ran uncommitted
    training code, and the records that name no commit."""
    found: dict[str, bool] = {}
    unreadable = []
    for info_path in sorted(sweep_dir.glob("**/run_info.json")):
        if STALE_DIR in info_path.parts or ".previous" in info_path.parts:
            continue
        if (git := run_git(info_path)) is None:
            unreadable.append(info_path)
            continue
        dirty = git["dirty"] and touches_training(git["changed"])
        found[git["commit"]] = found.get(git["commit"], False) or dirty
    return found, unreadable


def known_commit(root: Path, commit: str) -> bool:
    return _git(root, "cat-file", "-e", f"{commit}^{{commit}}").returncode == 0


def staleness(sweep: Sweep, chapter_dir: Path, head: str) -> str | None:
    """Why the sweep's runs are not of the checkout's training code, or None when they are."""
    commits, unreadable = run_commits(sweep.directory(chapter_dir))
    if unreadable:
        return f"{unreadable[0]} does not say which commit made its run"
    for commit, dirty in commits.items():
        if dirty:
            return f"a run of commit {commit[:10]} had uncommitted changes to its training code"
        if commit != head and not known_commit(sweep.root, commit):
            return f"runs of commit {commit[:10]}, which this clone does not have"
        if not same_training_code(sweep.root, commit, head, sweep.file):
            return f"runs of commit {commit[:10]}, whose training code or sweep file differs from HEAD's"
    return None


def set_aside(chapter_dir: Path, stem: str) -> list[Path]:
    """The sweep's runs set aside as stale: the folders set_aside_stale makes, <stem>.<number>."""
    folder = chapter_dir / STALE_DIR
    if not folder.is_dir():
        return []
    return [path for path in folder.glob(f"{stem}.*") if path.suffix[1:].isdecimal() and path.stem == stem
            and path.is_dir() and not path.is_symlink()]


def set_aside_stale(sweep: Sweep, chapter_dir: Path, reason: str) -> Path:
    target_dir = chapter_dir / STALE_DIR
    target_dir.mkdir(parents=True, exist_ok=True)
    number = 1
    while (target_dir / f"{sweep.stem}.{number}").exists():
        number += 1
    target = target_dir / f"{sweep.stem}.{number}"
    sweep.directory(chapter_dir).rename(target)
    print(f"chapter: {sweep.stem}: {reason}; set aside to {target}, running it again", flush=True)
    return target
