"""A run directory's files: their names, JSON read and atomic write, status, its one owner, times.

Every module that reads or writes a run's records (train, evaluate, the sweep launcher, the report)
goes through here, so they agree on names, on one time zone (UTC) and on what a missing or
half-written file means. The Hydra resolvers that name run directories are registered on import;
`train.py` and `eval.py` import this module before Hydra composes.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import socket
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from mlplab.errors import UserError

METRICS_FILE = "metrics.json"
RUN_INFO_FILE = "run_info.json"
STATUS_FILE = "status.json"
ERROR_LOG = "error.log"
CHECKPOINTS_DIR = "checkpoints"
FIGURES_DIR = "figures"
METRICS_CSV = Path("csv") / "metrics.csv"
HYDRA_DIR = ".hydra"
LAST_CHECKPOINT = "last.ckpt"  # written at each epoch's end; what a resume continues from
BEST_CHECKPOINT = "best.ckpt"  # the epoch of highest val/acc; what a run tests
INTERRUPTED_CHECKPOINT = "interrupted.ckpt"  # the state a stop signal met
OWNER_FILE = ".owner"
PACK_FILE = "pack.json"  # in a pack's directory: its members (each member's directory is a run)
SUMMARY_FILE = "summary.json"  # in a pack's directory: the members' means, stds and intervals

# What status.json says: running until the run ends, then finished, failed or interrupted. A run
# killed without warning (SIGKILL, the OOM killer, a lost node) cannot write; read_status reports
# it as killed when its process is gone.
RUNNING, FINISHED, FAILED, INTERRUPTED, KILLED = "running", "finished", "failed", "interrupted", "killed"



def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _current_umask()


class RunFileError(UserError):
    """A run's file cannot be written (disk full, read-only folder, quota)."""


def now() -> str:
    """The current time in UTC, to the second, as every record of the project writes it."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


# ---------------------------------------------------------------------------------------------
# Where things are


def project_root() -> Path:
    """The checkout that holds `conf/` and `train.py`: the current folder if it is one, else this
    package's own checkout (an editable install). Tools that compose configs or start `train.py`
    need it; an installed package run from elsewhere is told where to run from."""
    for candidate in (Path.cwd(), Path(__file__).resolve().parents[3]):
        if (candidate / "conf" / "config.yaml").is_file() and (candidate / "train.py").is_file():
            return candidate
    raise UserError("cannot find the mlplab checkout (a folder with conf/config.yaml and train.py): "
                    "run this command from the repository's root folder.")


def conf_dir() -> Path:
    return project_root() / "conf"


def option_names(group: str, conf: Path | None = None) -> list[str]:
    """Every option of a config group, discovered from conf/<group>/*.yaml (none: not a group)."""
    return sorted(path.stem for path in ((conf or conf_dir()) / group).glob("*.yaml"))


# ---------------------------------------------------------------------------------------------
# Reading and writing


def covers_all(limit: Any) -> bool:
    """A `limit_*_batches` that leaves nothing out: unset, or the fraction 1.0 (the int 1 is one batch)."""
    return limit is None or (isinstance(limit, float) and limit == 1.0)


def checkpoint_path(run_dir: str | os.PathLike, name: str = LAST_CHECKPOINT) -> Path:
    """Where a run directory keeps one of its checkpoints (it may not exist yet)."""
    return Path(run_dir) / CHECKPOINTS_DIR / name


def read_json(path: Path) -> dict[str, Any] | None:
    """The JSON object in `path`, or None when it is missing, unreadable or not an object."""
    try:
        content = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    return content if isinstance(content, dict) else None


def write_text(path: Path, text: str) -> Path:
    """Write through a temporary file and a rename, so a reader never sees half a file.

    A full disk or a read-only folder becomes one line naming the folder, and the old file stays.
    """
    path = Path(path)
    temporary = None
    try:
        with tempfile.NamedTemporaryFile("w", dir=path.parent, prefix=f".{path.name}.", suffix=".tmp",
                                         delete=False) as handle:
            temporary = handle.name
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        # mkstemp makes the file private; the record should be as readable as any file written here.
        os.chmod(temporary, 0o666 & ~_UMASK)
        os.replace(temporary, path)
    except OSError as error:
        if temporary is not None:
            Path(temporary).unlink(missing_ok=True)
        raise RunFileError(f"cannot write {path.name} in {path.parent}: {error.strerror or error}. "
                           "Free space there or point paths.output_root=... at a writable folder.") from None
    return path


def write_json(path: Path, content: dict[str, Any]) -> Path:
    return write_text(path, json.dumps(content, indent=2) + "\n")


def process_alive(pid: int, marker: str | None = None) -> bool:
    """Whether process `pid` runs on this host; with `marker`, also that its command line names it
    (a pid can be reused by an unrelated process)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return marker is None  # alive, but another user's: not the process a marker names
    if marker is None:
        return True
    try:
        return marker in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return False


def read_status(run_dir: Path) -> dict[str, Any]:
    """The run's status.json ({} when there is none yet); a `running` run whose process is gone is
    reported as `killed`."""
    record = read_json(Path(run_dir) / STATUS_FILE) or {}
    pid = record.get("pid")
    # Only knowable on the host that wrote it.
    if (record.get("status") == RUNNING and isinstance(pid, int) and record.get("host") == socket.gethostname()
            and not process_alive(pid)):
        record["status"] = KILLED
    return record


def write_status(run_dir: Path, status: str, **fields: Any) -> dict[str, Any]:
    """Record the run's state (RUNNING, FINISHED, FAILED or INTERRUPTED), keeping earlier fields."""
    record = {**(read_json(Path(run_dir) / STATUS_FILE) or {}), **fields, "status": status, "updated": now()}
    write_json(Path(run_dir) / STATUS_FILE, record)
    return record


# ---------------------------------------------------------------------------------------------
# One owner per run directory

_owned: dict[str, int] = {}  # run directory -> the descriptor whose lock this process holds


class RunDirectoryTaken(UserError):
    """Another live process owns the run directory."""


def claim(run_dir: Path) -> None:
    """Make this process the run directory's only owner until it ends (or `release`).

    The lock is the kernel's (flock on `.owner`): it is released when the process dies however it
    dies, SIGKILL included, so a stopped run never leaves its directory stuck. On NFS Linux maps
    flock to the server's byte-range locks, so owners on different hosts exclude each other too.
    """
    key = str(Path(run_dir).resolve())
    if key in _owned:
        return
    path = Path(run_dir) / OWNER_FILE
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o666 & ~_UMASK)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        owner = os.read(descriptor, 4096).decode(errors="replace")
        os.close(descriptor)
        record = json.loads(owner) if owner.startswith("{") else {}
        raise RunDirectoryTaken(
            f"{run_dir} is in use by process {record.get('pid', '?')} on {record.get('host', '?')} (since "
            f"{record.get('since', '?')}): wait for it to end or stop it; two processes writing one run "
            "would mix their records."
        ) from None
    os.ftruncate(descriptor, 0)
    os.write(descriptor, json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "since": now()}).encode())
    _owned[key] = descriptor


def release(run_dir: Path) -> None:
    """Give up ownership before the process ends (a process that runs several runs in turn)."""
    descriptor = _owned.pop(str(Path(run_dir).resolve()), None)
    if descriptor is not None:
        os.close(descriptor)


# What makes a folder hold a run (a status.json alone is what a run refused by the config checks leaves).
RUN_RECORDS = (METRICS_FILE, RUN_INFO_FILE, CHECKPOINTS_DIR)


def holds_a_run(folder: str | Path) -> bool:
    return any((Path(folder) / name).exists() for name in RUN_RECORDS)


def record_refusal(run_dir: str | Path, error: Exception) -> None:
    """A run stopped by a user error before training: status failed and the one-line reason as its
    error.log, unless the folder cannot take them (then the printed line is the whole record).

    A folder that already holds a run (a refused resume of it) keeps its records: that run is still
    what they say (finished, or interrupted and resumable)."""
    try:
        # A run that failed in training has recorded its own failure, with the traceback.
        if (Path(run_dir).is_dir() and read_status(run_dir).get("pid") != os.getpid()
                and not holds_a_run(run_dir)):
            write_text(Path(run_dir) / ERROR_LOG, f"{error}\n")
            write_status(run_dir, FAILED, error=str(error), ended=now())
    except UserError:
        pass


# ---------------------------------------------------------------------------------------------
# Naming run directories (Hydra resolvers)

_chosen: dict[str, str] = {}
_STARTED = datetime.now(timezone.utc)


def unique_dir(path: str) -> str:
    """`path`, or `path-1`, `path-2`... : the first that this process could create itself.

    Creating the directory claims the name atomically, so two runs started in the same second get
    two directories. The choice is remembered because Hydra resolves the run dir more than once. A
    folder that cannot be created is returned as it is: the entry point then says why in one line.
    """
    if path not in _chosen:
        candidate, suffix = Path(path), 0
        while True:
            try:
                candidate.mkdir(parents=True, exist_ok=False)
                break
            except FileExistsError:
                suffix += 1
                candidate = Path(f"{path}-{suffix}")
            except OSError:
                break
        _chosen[path] = str(candidate)
    return _chosen[path]


def slurm_job() -> str | None:
    """The SLURM job (and array task) this process belongs to, e.g. "4242_3"; None outside SLURM."""
    job = os.environ.get("SLURM_JOB_ID")
    task = os.environ.get("SLURM_ARRAY_TASK_ID")
    return f"{job}_{task}" if job and task else job


def run_dir(resume: str | None, fresh: str, output_root: str | None = None, name: str | None = None) -> str:
    """The directory of a resumed run; under SLURM one named after the job, which a requeued job
    finds again; else a new unique one."""
    if resume:
        return str(resume)
    if output_root is not None and slurm_job():
        return str(Path(output_root) / "slurm" / f"{slurm_job()}_{name}")
    return unique_dir(fresh)


# Overrides that change where a run is or how it is shown, not what it computes: left out of its name.
UNNAMED_KEYS = ("resume", "name", "experiment", "hydra", "paths", "data.root", "data.download", "logger", "tags")
NAME_BYTES = 120  # the folder's name stays well under the 255 a file system allows
_UNSAFE = re.compile(r"[^A-Za-z0-9._@%-]+")


def run_name(name: str, overrides: list[str] | None = None) -> str:
    """`<name>` then `+key-value` for each override that changes the run (lists as `10.20`), so a
    folder says what was overridden; characters that would need quoting in an override (`resume=`)
    are left out. A name that would be too long ends in a hash of the overrides instead."""
    if not isinstance(name, str) or not name.strip() or "/" in name:
        raise UserError(f"name={name!r} is not allowed: a non-empty run name without '/' (it names the run "
                        "directory).")
    parts = [_UNSAFE.sub(".", name).strip(".") or "run"]
    for override in overrides or []:
        key, _, value = str(override).partition("=")
        key = key.lstrip("+~")
        if key.startswith(tuple(f"{unnamed}." for unnamed in UNNAMED_KEYS)) or key in UNNAMED_KEYS:
            continue
        value = _UNSAFE.sub(".", value.replace(" ", "")).strip(".")
        parts.append(f"{_UNSAFE.sub('.', key)}-{value}")
    joined = "+".join(parts)
    if len(joined.encode()) <= NAME_BYTES:
        return joined
    digest = hashlib.sha256("\n".join(map(str, overrides or [])).encode()).hexdigest()[:8]
    return f"{joined.encode()[:NAME_BYTES - 10].decode(errors='ignore')}+{digest}"


def hydra_subdir(resume: str | None) -> str:
    """Where Hydra saves the composed config; a resumed run keeps its original `.hydra/` untouched."""
    return f"{HYDRA_DIR}/resumed-{_STARTED:%Y%m%d-%H%M%S}" if resume else HYDRA_DIR


OmegaConf.register_new_resolver("mlplab.run_dir", run_dir, replace=True)
OmegaConf.register_new_resolver("mlplab.hydra_subdir", hydra_subdir, replace=True)
OmegaConf.register_new_resolver("mlplab.run_name", run_name, replace=True)
