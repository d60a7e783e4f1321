"""A table's runs and cells: per configuration, its seeds' validation and test accuracy, and what
their spread covers.

A cell's seeds differ in the initial weights, the batch order, the dropout masks and the augmentation
draws; the validation images (data.split_seed) and the test images are the same for every seed and
every configuration. So a cell's interval covers seed-to-seed variation only. The test set's own
sampling noise, the binomial spread of one accuracy measured on 10,000 images, is the same draw for
every cell: it matters for an absolute claim (a textbook target) and is shown beside, not for a
comparison of two cells on the same images.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml
from scipy import stats

from mlplab.chapter.contents import TEST, VALIDATION, Table
from mlplab.core.data import MNISTDataModule
from mlplab.errors import UserError
from mlplab.run.records import FINISHED
from mlplab.tools.report.runs import load_runs
from mlplab.tools.report.tables import MISSING, interval_half_width

CONFIDENCE = 0.95
NOT_MEASURED = MISSING  # the report's mark for a value there is not
SWEEP_FILE = "sweep.yaml"  # the file as the launcher ran it, in its sweep dir


@dataclass(frozen=True)
class Estimate:
    """The mean of one metric over a cell's seeds, its spread and two 95 % intervals: of the mean
    (Student's t), and where the mean of a rerun of as many other seeds falls (a prediction interval:
    both means vary, so √2 wider)."""

    seeds: int
    mean: float
    std: float
    half: float  # of the interval of the mean, before it is clipped to [0, 1]
    low: float
    high: float
    rerun_low: float
    rerun_high: float


def estimate(values: np.ndarray) -> Estimate:
    values = np.asarray(values, dtype=float)
    count, mean = len(values), float(np.mean(values)) if len(values) else math.nan
    if count < 2:
        return Estimate(count, mean, math.nan, math.nan, math.nan, math.nan, math.nan, math.nan)
    std = float(np.std(values, ddof=1))
    half = interval_half_width(std, count)
    rerun = half * math.sqrt(2)  # both means vary: sqrt(1/n + 1/n) in place of sqrt(1/n)
    # Accuracies: an interval reaching past 0 or 1 (few seeds, a wide spread) says no more than [0, 1].
    low, high, rerun_low, rerun_high = (min(1.0, max(0.0, value))
                                        for value in (mean - half, mean + half, mean - rerun, mean + rerun))
    return Estimate(count, mean, std, half, low, high, rerun_low, rerun_high)


def test_set_noise(accuracy: float, images: int = MNISTDataModule.test_size) -> float:
    """Half-width of the 95 % interval of one accuracy measured on `images` independent test images."""
    return float(stats.norm.ppf(0.5 + CONFIDENCE / 2)) * math.sqrt(accuracy * (1 - accuracy) / images)


def parameter_values(entry: Any) -> list:
    """A sweep parameter's values, written `values: [...]` or `value: x`."""
    if isinstance(entry, dict) and isinstance(entry.get("values"), list):
        return list(entry["values"])
    return [entry["value"]] if isinstance(entry, dict) and "value" in entry else []


def read_parameters(path: Path) -> dict[str, list]:
    """A sweep file's parameters and their values."""
    if not path.is_file():
        return {}
    try:
        spec = yaml.safe_load(path.read_text())
    except (UnicodeDecodeError, yaml.YAMLError) as error:
        raise UserError(f"{path} is not a readable sweep file ({error}): delete its sweep dir's copy to "
                        "run the sweep again") from None
    parameters = spec.get("parameters") if isinstance(spec, dict) else None
    if not isinstance(parameters, dict):
        raise UserError(f"{path} has no parameters: it is not the sweep file the chapter ran; delete its "
                        "sweep dir to run the sweep again")
    return {str(key): parameter_values(entry) for key, entry in parameters.items()}


def with_fixed_parameters(frame: pd.DataFrame, sweep_dir: Path) -> pd.DataFrame:
    """The sweep's one-valued parameters as columns too (the report shows only what varies)."""
    fixed = {key: values[0] for key, values in read_parameters(sweep_dir / SWEEP_FILE).items()
             if len(values) == 1 and key not in frame}
    # One value for every row, even a list (a narrowed depth sweep's widths), which assign() would spread
    return frame.assign(**{key: [value] * len(frame) for key, value in fixed.items()}) if not frame.empty else frame


def source_runs(table: Table, runs_dir: Path, smoke: bool) -> pd.DataFrame:
    """Every run the table reads (a sweep's whole dir, or the rows of `where`), labelled as its keys say."""
    frames = []
    for source in table.sources:
        directory = runs_dir / source.sweep
        if not directory.is_dir():
            continue
        frame = with_fixed_parameters(load_runs([directory], smoke), directory)
        for key, value in source.where.items():
            frame = frame[frame[key].astype(str) == value] if key in frame else frame.iloc[0:0]
        frames.append(frame.assign(**source.assign, sweep=source.sweep))
    if not frames:
        return pd.DataFrame()
    frame = pd.concat(frames, ignore_index=True)
    if table.prepare is not None and not frame.empty:
        frame = table.prepare(frame)
    if table.rows is None:
        frame = frame.assign(configuration=table.name)
    return frame


def number_or_none(value: Any) -> Any:
    """A record's accuracy if it is a number; true/false or text is none (to_numeric reads true as 1.0)."""
    return value if isinstance(value, numbers.Real) and not isinstance(value, bool) else None


def finished(frame: pd.DataFrame, table: Table) -> pd.DataFrame:
    """Finished runs that hold the table's metrics."""
    if frame.empty or "status" not in frame:
        return frame.iloc[0:0]
    done = frame[frame["status"] == FINISHED]
    needed = [TEST] + ([table.ranking] if table.ranking != TEST else [])
    # A run whose record does not say which cell it is (no overrides in its trial.json) is in none.
    if not set(needed + cell_keys(table)) <= set(done):
        return done.iloc[0:0]
    done = done[done[cell_keys(table)].notna().all(axis=1)]
    # An accuracy that is missing, NaN or outside [0, 1] is no result: the run counts as unfinished.
    scores = done[needed].apply(lambda column: pd.to_numeric(column.map(number_or_none), errors="coerce"))
    return done[scores.notna().all(axis=1) & ((scores >= 0) & (scores <= 1)).all(axis=1)]


def cell_keys(table: Table) -> list[str]:
    return table.keys or ["configuration"]


def cells(frame: pd.DataFrame, table: Table) -> pd.DataFrame:
    """One row per configuration: seeds, and per metric its Estimate's fields (`val_`, `test_`), the
    test set's noise and the seed interval widened by it; ordered by the ranking metric, best first."""
    done = finished(frame, table)
    keys = cell_keys(table)
    rows = []
    for values, group in done.groupby(keys, sort=False):
        values = values if isinstance(values, tuple) else (values,)
        row = dict(zip(keys, values))
        for prefix, metric in (("val", VALIDATION), ("test", TEST)):
            if metric in group and group[metric].notna().any():
                row.update({f"{prefix}_{name}": value
                            for name, value in vars(estimate(group[metric].dropna().to_numpy())).items()})
        noise = test_set_noise(row["test_mean"])
        combined = math.hypot(row["test_half"], noise) if not math.isnan(row["test_half"]) else noise
        row.update(seeds=len(group), test_noise=noise, absolute_low=max(0.0, row["test_mean"] - combined),
                   absolute_high=min(1.0, row["test_mean"] + combined))
        rows.append(row)
    table_cells = pd.DataFrame(rows)
    if table_cells.empty:
        return table_cells
    order = "val_mean" if table.ranking == VALIDATION and "val_mean" in table_cells else "test_mean"
    return table_cells.sort_values(order, ascending=False, kind="stable").reset_index(drop=True)


def sweep_parameters(runs_dir: Path, stem: str, file: Path | None = None) -> dict[str, list]:
    """The sweep's parameters as it ran (its sweep dir's copy), else as `file` (sweeps/<stem>.yaml) has them."""
    path = runs_dir / stem / SWEEP_FILE
    return read_parameters(path if path.is_file() or file is None else file)


def same_text(first: Any, second: Any) -> bool:
    return str(first).replace(" ", "") == str(second).replace(" ", "")


def rerun_overrides(group: pd.DataFrame, runs_dir: Path) -> tuple[str, list[str]]:
    """The sweep a cell's runs came from, and the overrides that narrow it to the cell's own runs."""
    first = group.iloc[0]
    overrides = []
    for key, values in sweep_parameters(runs_dir, first["sweep"]).items():
        if key == "seed" or len(values) < 2:
            continue
        value = next((value for value in values if same_text(value, first.get(key))), None)
        if value is None:  # a run whose value its sweep never swept: not a cell anyone can rerun
            raise UserError(f"{runs_dir / first['sweep']}: a run has {key}={first.get(key)}, which its "
                            f"{SWEEP_FILE} does not sweep ({values}): set that run's folder aside, or rerun the sweep")
        overrides.append(f"{key}={value}")
    return str(first["sweep"]), overrides


def published(frame: pd.DataFrame, table_cells: pd.DataFrame, table: Table, runs_dir: Path) -> list[dict[str, Any]]:
    """What a reader needs to rerun each cell and check it: its sweep, narrowing overrides, seeds, and
    the published per-seed values, mean and rerun interval."""
    done, keys = finished(frame, table), cell_keys(table)
    entries = []
    for _, cell in table_cells.iterrows():
        group = done[(done[keys].astype(str) == cell[keys].astype(str).to_numpy()).all(axis=1)]
        sweep, overrides = rerun_overrides(group, runs_dir)
        entries.append({"table": table.name, "cell": {key: str(cell[key]) for key in keys}, "sweep": sweep,
                        "overrides": overrides, "seeds": [int(seed) for seed in group["seed"]],
                        "test_by_seed": [float(value) for value in group[TEST]],
                        "test_mean": cell["test_mean"], "rerun_low": cell["test_rerun_low"],
                        "rerun_high": cell["test_rerun_high"]})
    return entries
