"""Run directories under a folder (or several, compared on one page), loaded into one pandas
DataFrame with one row per run. A pack (train.py seed=[...]) is no run: each of its members is.

Columns: `label` (the directory relative to the folder, after the folder's name when there are
several; a packed sweep trial's is its trial dir, the link to its member dir), `path`, `status` (the sweep's trial.json outcome, else train.py's status.json, else
whether metrics.json is there), `detail` (for runs without a result: exit code and the real error,
error.log's last line first), `overrides` (as typed), every scalar of metrics.json, and one column
per swept parameter, filled for every run (the running and failed ones too). `frame.attrs["swept"]`
names those parameter columns (seed last) and `frame.attrs["common"]` the overrides every finished
run shares.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import yaml
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException

from mlplab.run.records import (FIGURES_DIR, FINISHED, HYDRA_DIR, KILLED, METRICS_CSV, METRICS_FILE, PACK_FILE,
                                STATUS_FILE, read_json, read_status)
# Where the sweep ran a run, its trial.log holds the run's stderr and so its one-line error; Hydra's
# train.log holds only logging, never the error, so it is not read.
from mlplab.run.failures import error_line
from mlplab.tools.sweep.trials import LOG_FILE, TRIAL_FILE, trial_state

DELETED = "(deleted)"
NO_RESULT = "no metrics.json"
SMOKE = "smoke check"  # finished, but only a check that the pipeline runs: never ranked
UNKNOWN = float("nan")  # a value the run's records do not tell: shown as a dash, never compared
# What a run without an error line is known to have come to.
NO_WORD = {NO_RESULT: "train.py crashed, was killed or is still running",
           KILLED: "its process is gone without a word (killed, or its sweep launcher was)"}
FIGURE_FILES = {"weights": "weights.png", "confusion matrix": "confusion_matrix.png"}


def read_yaml(path: Path) -> Any:
    """A yaml file's content, or None when it is missing or unreadable."""
    try:
        return yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError):
        return None


def read_overrides(run_dir: Path, typed: Sequence[str] = ()) -> dict[str, tuple[Any, str]]:
    """The run's command-line overrides, hydra.* left out: {key: (value parsed by Hydra's grammar, as typed)}.
    Where Hydra wrote none, `typed` (the sweep's values of the trial: a pack's member that train.py refused
    before it made the member's .hydra/ still shows what it sweeps)."""
    lines = read_yaml(run_dir / HYDRA_DIR / "overrides.yaml")
    lines = lines if isinstance(lines, list) else list(typed)
    parser, overrides = OverridesParser.create(), {}
    for line in lines if isinstance(lines, list) else []:
        try:
            override = parser.parse_override(str(line))
        except HydraException:
            continue  # a file edited by hand: the line is not one Hydra wrote
        if not override.key_or_group.startswith(("hydra.", "hydra/")):
            value = DELETED if override.is_delete() else override.value()
            overrides[override.key_or_group] = (value, override.input_line)
    return overrides


def dotted(config: Any, key: str) -> Any:
    """config["a"]["b"] for key "a.b"; UNKNOWN when absent."""
    for part in key.split("."):
        if not isinstance(config, dict) or part not in config:
            return UNKNOWN
        config = config[part]
    return config


def is_unresolved(value: Any) -> bool:
    """An interpolation such as ${oc.env:MNIST_ROOT,./data}: its value depended on the run's environment."""
    return "${" in json.dumps(value, default=str)


def config_sources(run_dir: Path) -> tuple[dict[str, Any], Any, Any]:
    """Where a run's unoverridden values are: Hydra's group choices, the resolved config the CSV
    logger saved (csv/hparams.yaml) and the composed config as Hydra saved it (interpolations kept)."""
    hydra = read_yaml(run_dir / HYDRA_DIR / "hydra.yaml") or {}
    choices = hydra.get("hydra", {}).get("runtime", {}).get("choices", {}) or {}
    resolved = (read_yaml(run_dir / METRICS_CSV.parent / "hparams.yaml") or {}).get("config")
    return choices, resolved, read_yaml(run_dir / HYDRA_DIR / "config.yaml")


def param_value(key: str, overrides: dict[str, tuple[Any, str]], sources: tuple[dict[str, Any], Any, Any]) -> Any:
    """What `key` was in a run: its override, the group option Hydra chose, else the config value.

    An interpolation the resolved config does not settle stays UNKNOWN: resolving it now would
    read today's environment, not the run's.
    """
    if key in overrides and not is_unresolved(overrides[key][0]):
        return overrides[key][0]
    choices, resolved, raw = sources
    if key in choices:
        return choices[key]
    for config in (resolved, raw):
        value = dotted(config, key)
        if value is not UNKNOWN and not is_unresolved(value):
            return value
    return UNKNOWN


def cell_value(value: Any) -> Any:
    """Lists and mappings as their JSON text, so that pandas can group and compare them."""
    return json.dumps(value) if isinstance(value, (list, dict)) else value


def is_eval_output(metrics: dict[str, Any]) -> bool:
    """eval.py also writes metrics.json (ckpt_path, test_acc, test_loss); those are not training runs."""
    return "ckpt_path" in metrics and "epochs" not in metrics


def read_run(run_dir: Path, root: Path, smoke: bool = False) -> dict[str, Any] | None:
    """One row: status, the real error of a run without a result, scalar metrics; None for eval output."""
    record = read_json(run_dir / TRIAL_FILE) or {}  # the sweep launcher's, where a sweep ran the run
    status = read_status(run_dir)  # train.py's own
    metrics = read_json(run_dir / METRICS_FILE)
    if metrics is not None and is_eval_output(metrics):
        return None
    # The launcher knows what a run cannot say of itself: a kill by a signal, a trial that never started.
    # Both records say `running` only while the process lives (a killed launcher leaves it): else `killed`.
    state = trial_state(run_dir, record) or status.get("status") or (FINISHED if metrics is not None else NO_RESULT)
    if state == FINISHED and metrics is None:
        # A metrics.json cut short (still being written, disk full) reads as None too.
        state = "unreadable" if (run_dir / METRICS_FILE).exists() else NO_RESULT
    overrides = read_overrides(run_dir, [str(line) for line in record.get("overrides") or []])
    typed = [line for _, line in overrides.values()] or [str(line) for line in record.get("overrides") or []]
    row = {"label": relative_label(shown_dir(run_dir, record, root), root), "path": str(run_dir), "status": state,
           "overrides": " ".join(typed), "detail": "", "_overrides": overrides}
    if state == FINISHED and metrics.get("smoke") and not smoke:
        # A smoke check (fast_dev_run, limited batches) proves the pipeline runs; its numbers are no result.
        return {**row, "status": SMOKE, "detail": f"smoke check only: {metrics['smoke']}"}
    if state == FINISHED:
        scalars = {key: value for key, value in metrics.items() if not isinstance(value, (list, dict))}
        return {**final_statistics(run_dir, metrics.get("epochs")), **scalars, **row}  # metrics repeat parameter names (seed, name): the row's own fields win
    real_error = error_line(run_dir, LOG_FILE)
    reported = str(record.get("error") or status.get("error") or "")
    returncode = record.get("returncode", status.get("returncode"))
    parts = [f"exit {returncode}" if returncode is not None else "",
             reported if reported not in real_error else "",
             real_error or NO_WORD.get(state, "")]
    row["detail"] = " ".join(" · ".join(part for part in parts if part).split())
    return row


def shown_dir(run_dir: Path, record: dict[str, Any], root: Path) -> Path:
    """Where the sweep shows the run: a packed trial's own trial dir, the link to this member dir beside its
    pack (so a trial reads the same packed or not); else the run's directory."""
    trial_id = record.get("trial")
    if not record.get("pack") or not isinstance(trial_id, str) or "/" in trial_id:
        return run_dir
    link = run_dir.parent.parent / trial_id
    return link if root in link.parents and link.is_symlink() and link.resolve() == run_dir.resolve() else run_dir


def relative_label(path: Path, root: Path) -> str:
    relative = path.relative_to(root).as_posix()
    return root.name if relative == "." else relative


def is_hidden(path: Path, root: Path) -> bool:
    """Under a dot-folder below root (the sweep's .previous/ attempts, a .hydra/ folder itself)."""
    return any(part.startswith(".") for part in path.relative_to(root).parts)


def is_pack_dir(directory: Path) -> bool:
    """A pack's own directory (pack.json): the process that trained its members, each of which is a run."""
    return (directory / PACK_FILE).is_file()


def find_run_dirs(root: Path) -> list[Path]:
    """Every directory under root holding metrics.json, status.json, trial.json or .hydra/overrides.yaml,
    except a pack's own (its members are found inside it), each once (a sweep's trial dir may be a link to one)."""
    directories = {path.parent for name in (METRICS_FILE, STATUS_FILE, TRIAL_FILE) for path in root.rglob(name)}
    directories |= {path.parent.parent for path in root.rglob(f"{HYDRA_DIR}/overrides.yaml")}
    found: dict[Path, Path] = {}
    for directory in sorted(directories):
        if not is_hidden(directory, root) and not is_pack_dir(directory):
            found.setdefault(directory.resolve(), directory)
    return sorted(found.values())


def value_key(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def add_params(frame: pd.DataFrame) -> pd.DataFrame:
    """One column per parameter whose known values differ across finished runs (seed last).

    A key every run sets alike is no comparison, and a value the run's records cannot tell is
    UNKNOWN rather than the raw interpolation, so neither can show up as a swept column.
    """
    finished = frame[frame["status"] == FINISHED]
    # While a sweep's first trials still run, what differs between them is what it sweeps.
    compared = finished if len(finished) else frame
    keys = sorted({key for overrides in compared["_overrides"] for key in overrides})
    sources = [config_sources(Path(path)) for path in frame["path"]]
    # Every run's values, so that running and failed runs show theirs too; only the compared runs'
    # decide what is swept.
    values = {key: pd.Series([cell_value(param_value(key, overrides, run_sources))
                              for overrides, run_sources in zip(frame["_overrides"], sources)],
                             index=frame.index, dtype=object) for key in keys}
    swept = [key for key in keys
             if len({value_key(value) for value in values[key][compared.index] if not is_unknown(value)}) > 1]
    swept.sort(key=lambda key: (is_seed_key(key), key))
    for key in swept:
        frame[key] = values[key]
    shared = set.intersection(*(set(overrides) for overrides in finished["_overrides"])) if len(finished) else set()
    common = [finished["_overrides"].iloc[0][key][1] for key in sorted(shared - set(swept))
              if len({value_key(overrides[key][0]) for overrides in finished["_overrides"]}) == 1]
    frame = frame.drop(columns="_overrides")
    frame.attrs.update(swept=swept, common=common)
    return frame


def is_unknown(value: Any) -> bool:
    return isinstance(value, float) and value != value


def is_seed_key(key: str) -> bool:
    return key == "seed" or key.endswith(".seed")


def source_names(roots: Sequence[Path]) -> list[str]:
    """What the labels of each root's runs start with when several are compared: the folder's name,
    or its whole path where two share a name; nothing for a single root."""
    if len(roots) == 1:
        return [""]
    names = [root.name for root in roots]
    return [name if names.count(name) == 1 else str(root) for name, root in zip(names, roots)]


def load_runs(roots: Path | Sequence[Path], smoke: bool = False) -> pd.DataFrame:
    """Every run under the root (or roots, compared on one page), finished or not, as one DataFrame
    (see the module docstring)."""
    roots = [roots] if isinstance(roots, Path) else list(roots)
    rows = []
    for root, source in zip(roots, source_names(roots)):
        for run_dir in find_run_dirs(root):
            if (row := read_run(run_dir, root, smoke)) is None:
                continue
            if source:
                row["label"] = source if run_dir == root else f"{source}/{row['label']}"
            rows.append(row)
    frame = pd.DataFrame(rows, columns=None if rows else ["label", "path", "status", "overrides", "detail",
                                                          "_overrides"])
    return add_params(frame)


def final_statistics(run_dir: Path, epochs: Any) -> dict[str, float]:
    """The `activation/...` statistics (mean, std, zero and dead fractions per hidden layer) logged
    at the run's last epoch, so a report can rank or summarize by them (--metric
    activation/layer0/dead_frac). A log that does not reach that epoch gives none: a value from an
    earlier epoch would pass for the final one."""
    try:
        logged = pd.read_csv(Path(run_dir) / METRICS_CSV)
    except (OSError, ValueError):
        return {}
    if "epoch" not in logged or not isinstance(epochs, int) or epochs < 1:
        return {}
    last = logged[pd.to_numeric(logged["epoch"], errors="coerce") == epochs - 1]
    values = {column: pd.to_numeric(last[column], errors="coerce").dropna()
              for column in logged.columns if column.startswith("activation/")}
    return {column: float(series.iloc[-1]) for column, series in values.items() if len(series)}


def figure_files(run_dir: Path) -> dict[str, Path]:
    """The run's saved weight grid and confusion matrix, where it drew them."""
    folder = Path(run_dir) / FIGURES_DIR
    return {name: folder / file for name, file in FIGURE_FILES.items() if (folder / file).is_file()}
