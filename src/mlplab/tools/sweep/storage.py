"""Where an offline sweep's Optuna study lives, which every launcher on the sweep shares.

By default it is <sweep dir>/optuna.journal, Optuna's JournalStorage: a file on the (shared) file
system, appended to under Optuna's symlink lock, which holds on NFS (v2 and later) where fcntl locks
may not, and which Optuna breaks when a killed process left it behind for its grace period (30 s).
`--storage postgresql://...` (any SQLAlchemy URL Optuna's RDBStorage takes) keeps it in a database
instead, with Optuna's heartbeat: a trial whose launcher has stopped beating for `stale_after`
seconds is failed and queued again by Optuna's RetryHeartbeatStaleTrialCallback.

The sweep dir records which storage holds its study (study.json), so that a launcher pointed at
another one is refused instead of running the same trials again. StudyLock serialises the few steps
that must not interleave between launchers (queueing the trials, taking over a dead launcher's).
"""

from __future__ import annotations

import fcntl
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import optuna
from optuna.storages import BaseStorage, JournalStorage, RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.storages.journal import JournalFileBackend, JournalFileSymlinkLock

from mlplab.run import records as runfiles
from mlplab.errors import SweepError

JOURNAL_FILE = "optuna.journal"


def journal_path(sweep_dir: Path) -> Path:
    """The study's journal file in the sweep dir, when no database is given."""
    return sweep_dir / JOURNAL_FILE

RECORD_FILE = "study.json"
LOCK_FILE = "study.lock"
HEARTBEAT_SECONDS = 5  # how often a launcher shows that it still runs its trials
STALE_AFTER = 60.0  # default --stale-after: silence after which a launcher on another host counts as gone
SCHEMA_ATTEMPTS = 3
CONNECT_TIMEOUT = 10  # seconds: a database that does not answer is one line, not a hang
JOURNAL_NAME = "journal"  # how study.json names the default storage


def retry_callback() -> RetryHeartbeatStaleTrialCallback:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return RetryHeartbeatStaleTrialCallback()


def shown_url(url: str) -> str:
    """The URL as it may be printed and written down: its password hidden; one line when it is no URL."""
    import sqlalchemy.exc
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except sqlalchemy.exc.ArgumentError:
        raise SweepError(f"--storage {url!r} is not a database URL: e.g. --storage postgresql://user@host/db "
                         "(without --storage the study is <sweep dir>/optuna.journal)") from None


def database(url: str, stale_after: float) -> RDBStorage:
    """Optuna's RDBStorage on `url` with its heartbeat, or one line saying why it cannot be used."""
    import sqlalchemy.exc
    from sqlalchemy.engine import make_url

    hint = "e.g. --storage postgresql://user@host/db (without --storage the study is <sweep dir>/optuna.journal)"
    shown = shown_url(url)
    parsed = make_url(url)
    # The drivers' own timeouts: a host that drops packets would otherwise hang the launcher for minutes.
    connect_args = {"connect_timeout": CONNECT_TIMEOUT} if parsed.get_backend_name() in ("postgresql", "mysql") else {}
    try:
        for attempt in range(SCHEMA_ATTEMPTS):
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                    return RDBStorage(url, engine_kwargs={"connect_args": connect_args},
                                      heartbeat_interval=HEARTBEAT_SECONDS, grace_period=max(1, round(stale_after)),
                                      heartbeat_stale_trial_callback=retry_callback())
            except sqlalchemy.exc.IntegrityError:
                # Launchers starting together on an empty database both create Optuna's tables: one wins,
                # the other finds them made on its next attempt.
                if attempt == SCHEMA_ATTEMPTS - 1:
                    raise
                time.sleep(1.0)
    except ImportError as error:
        reason = error.__cause__ or error  # Optuna's wrapper hides which module is missing
        raise SweepError(f"--storage {shown}: its driver is not installed ({reason}): for postgresql:// "
                         "pip install 'psycopg[binary]' (SQLAlchemy's default; postgresql+psycopg2:// takes "
                         "psycopg2-binary)") from None
    except sqlalchemy.exc.ArgumentError as error:  # an unknown dialect
        raise SweepError(f"--storage {shown}: {' '.join(str(error).split())}: {hint}") from None
    except (sqlalchemy.exc.SQLAlchemyError, optuna.exceptions.StorageInternalError) as error:
        reason = " ".join(str(getattr(error, "orig", None) or error).split())[:300]
        raise SweepError(f"--storage {shown}: the database cannot be used ({reason}): check that it runs, that the "
                         "URL names it and that the user may create tables there") from None


def open_storage(sweep_dir: Path, url: str | None, stale_after: float = STALE_AFTER) -> BaseStorage:
    """The storage of the sweep's study: the journal in the sweep dir, or the database at `url`."""
    if url is None:
        path = str(journal_path(sweep_dir))
        return JournalStorage(JournalFileBackend(path, lock_obj=JournalFileSymlinkLock(path)))
    return database(url, stale_after)


def storage_name(url: str | None) -> str:
    return JOURNAL_NAME if url is None else shown_url(url)


def check_storage_record(sweep_dir: Path, url: str | None) -> None:
    """Refuse a storage other than the one the sweep dir's study is in."""
    named, recorded = storage_name(url), (runfiles.read_json(sweep_dir / RECORD_FILE) or {}).get("storage")
    if recorded is not None and recorded != named:
        was = "its optuna.journal (no --storage)" if recorded == JOURNAL_NAME else f"--storage {recorded}"
        raise SweepError(f"--storage {url or '(none)'}: the sweep in {sweep_dir} keeps its study in {was}, so other "
                         "launchers take their trials from there: use the same, or another --sweep-dir")


def record_storage(sweep_dir: Path, url: str | None) -> None:
    """Write down, once the storage is known to work, which one holds the sweep dir's study."""
    if not (sweep_dir / RECORD_FILE).exists():
        runfiles.write_json(sweep_dir / RECORD_FILE, {"storage": storage_name(url)})


class StudyLock:
    """An flock on <sweep dir>/study.lock, held for a moment around the steps launchers must not interleave.

    The kernel (or the NFS server, for a client that dies) releases it with its holder, so it is never left
    stale; on NFS it needs working locks (NFSv4, or lockd for v3), as the file system's own locks do."""

    def __init__(self, sweep_dir: Path) -> None:
        self._path = sweep_dir / LOCK_FILE
        self._file = None

    def __enter__(self) -> StudyLock:
        self._file = self._path.open("a")  # "a": never empties a file that is not ours
        try:
            fcntl.flock(self._file, fcntl.LOCK_EX)
        except OSError as error:
            self._file.close()
            raise SweepError(f"cannot lock {self._path} ({error.strerror}): the sweep dir's file system needs "
                             "working locks (on NFS: v4, or lockd for v3)") from None
        return self

    def __exit__(self, *_: object) -> None:
        self._file.close()


@contextmanager
def storage_errors(where: str) -> Iterator[None]:
    """A database that stops answering mid-sweep is one SweepError line (the run loop then stops as on a full disk)."""
    import sqlalchemy.exc

    try:
        yield
    except (sqlalchemy.exc.SQLAlchemyError, optuna.exceptions.StorageInternalError) as error:
        reason = " ".join(str(getattr(error, "orig", None) or error).split())[:300]
        raise SweepError(f"the study's storage ({where}) failed: {reason}: check the database, then rerun to "
                         "continue") from None
