"""From the runs DataFrame to the tables a reader sees: runs ranked by a metric, the metric per
configuration over seeds (mean, std, count, 95 % confidence interval of the mean), failed runs.

The `*_table` functions return DataFrames of formatted text, so the HTML page and the Markdown
file show the very same cells.
"""

from __future__ import annotations

import json
import math
import numbers
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from mlplab.errors import UserError
from mlplab.tools.report.runs import FINISHED, is_seed_key, is_unknown

# The metrics.json keys shown in the runs table after the chosen metric, in this order.
METRIC_COLUMNS = ("test_acc", "test_loss", "val_acc_best", "epochs", "global_steps", "fit_seconds")
COUNTS = ("epochs", "global_steps")
MISSING = "—"


def interval_half_width(std: float, count: int) -> float:
    """t_{0.975,n-1} · std / sqrt(n): the 95 % confidence interval of a mean is mean ± this (NaN for n < 2)."""
    return float(stats.t.ppf(0.975, count - 1)) * std / math.sqrt(count) if count > 1 else math.nan


def lower_is_better(metric: str) -> bool:
    """Losses, errors and times are minimized; everything else (accuracies) maximized."""
    return any(word in metric for word in ("loss", "error", "seconds"))


def metric_values(frame: pd.DataFrame, metric: str) -> pd.Series:
    """The metric as floats; NaN where a run lacks it or recorded something else."""
    if metric not in frame:
        return pd.Series(math.nan, index=frame.index, dtype=float)
    return pd.to_numeric(frame[metric].where(frame[metric].map(is_number)), errors="coerce").astype(float)


def is_number(value: Any) -> bool:
    """A finite int or float (numpy's included), not a bool."""
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_)) and math.isfinite(value)


def check_metric(frame: pd.DataFrame, metric: str) -> None:
    """Stop, naming the metrics that do exist, when no finished run recorded `metric` as a number."""
    finished = frame[frame["status"] == FINISHED]
    if len(finished) and metric_values(finished, metric).isna().all():
        numeric = [column for column in finished.columns if finished[column].map(is_number).any()]
        raise UserError(f"--metric {metric}: no run's metrics.json has it as a number; "
                        f"use one of: {', '.join(sorted(numeric))}.")


def ranked_runs(frame: pd.DataFrame, metric: str, minimize: bool) -> pd.DataFrame:
    """The finished runs, best first by metric; runs without it last."""
    finished = frame[frame["status"] == FINISHED].assign(_score=lambda runs: metric_values(runs, metric))
    return finished.sort_values("_score", ascending=minimize, na_position="last", kind="stable").drop(columns="_score")


def config_keys(swept: Sequence[str]) -> list[str]:
    """The parameters that make a configuration: runs differing only by seed are repeats of one."""
    return [key for key in swept if not is_seed_key(key)]


def seeds_per_configuration(runs: pd.DataFrame, swept: Sequence[str]) -> tuple[int, int] | None:
    """The fewest and most distinct seeds any configuration ran with; None where no seed is swept."""
    seeds = [key for key in swept if is_seed_key(key)]
    if not seeds or runs.empty:
        return None
    # As text, so that an unknown seed (NaN) counts as one more value rather than breaking the join.
    combined = runs[seeds].apply(lambda column: column.map(str)).agg("|".join, axis=1)
    keys = config_keys(swept)
    counts = combined.groupby([runs[key] for key in keys], dropna=False).nunique() if keys else [combined.nunique()]
    return int(min(counts)), int(max(counts))


def swept_text(runs: pd.DataFrame, swept: Sequence[str]) -> str:
    """What the runs sweep, in words: the parameters, and the seeds grouped into each configuration
    ("activation; 3 seeds per configuration")."""
    parameters = ", ".join(config_keys(swept))
    seeds = seeds_per_configuration(runs, swept)
    if seeds is None:
        return parameters or "nothing"
    fewest, most = seeds
    count = str(fewest) if fewest == most else f"{fewest}–{most}"
    return f"{parameters or 'no parameter'}; {count} seeds per configuration"


def summarize(runs: pd.DataFrame, swept: Sequence[str], metric: str, minimize: bool) -> pd.DataFrame:
    """Per configuration: count, mean, std, min, max of the metric and the 95 % interval of the mean;
    best mean first."""
    return aggregate(runs, config_keys(swept), metric, minimize)


def aggregate(runs: pd.DataFrame, keys: Sequence[str], metric: str, minimize: bool) -> pd.DataFrame:
    """`summarize` grouped by `keys` as given (a seed key too: the spread of one swept value)."""
    keys = list(keys)
    scored = runs.assign(_score=metric_values(runs, metric)).dropna(subset="_score")
    if keys:
        groups = scored.groupby(keys, dropna=False, sort=False)["_score"]
    else:
        groups = scored.groupby(lambda _: "all runs")["_score"]
    summary = groups.agg(["count", "mean", "std", "min", "max"]).reset_index(drop=not keys)
    half_width = [interval_half_width(std, count) for std, count in zip(summary["std"], summary["count"])]
    summary["ci_low"] = summary["mean"] - half_width
    summary["ci_high"] = summary["mean"] + half_width
    return summary.sort_values("mean", ascending=minimize, kind="stable").reset_index(drop=True)


# ---------------------------------------------------------------------------------------------
# Formatting: the same text in HTML and Markdown


def format_param(value: Any) -> str:
    """A parameter value as the user would type it."""
    if value is None:
        return "null"
    if is_unknown(value):
        return MISSING
    return value if isinstance(value, str) else json.dumps(value) if isinstance(value, (list, dict)) else str(value)


def is_accuracy(name: str) -> bool:
    """Whether a metric is an accuracy (shown in percent, its differences in percentage points)."""
    return name.endswith(("acc", "acc_best"))


def format_metric(name: str, value: Any) -> str:
    """Accuracies in percent, losses to 4 places, seconds to 0.1, counts as integers."""
    if value is None or is_unknown(value):
        return MISSING
    if not is_number(value):
        return str(value)
    if is_accuracy(name):
        return f"{value:.2%}"
    if "seconds" in name:
        return f"{value:.1f}"
    # A column with a failed run's gap turns counts into floats; they are still counts.
    return str(int(value)) if isinstance(value, numbers.Integral) or name in COUNTS else f"{value:.4f}"


def table_columns(metric: str) -> list[str]:
    """The metrics in the runs table: the chosen one first."""
    return [metric, *(column for column in METRIC_COLUMNS if column != metric)]


def runs_table(runs: pd.DataFrame, swept: Sequence[str], metric: str) -> pd.DataFrame:
    """Rank, run, swept parameters and metrics, as text."""
    table = pd.DataFrame({"#": [str(rank) for rank in range(1, len(runs) + 1)], "run": list(runs["label"])})
    for key in swept:
        table[key] = [format_param(value) for value in runs[key]]
    for name in table_columns(metric):
        values = runs[name] if name in runs else [None] * len(runs)
        table[name] = [format_metric(name, value) for value in values]
    return table


def page_runs_table(frame: pd.DataFrame, ranked: pd.DataFrame, swept: Sequence[str], metric: str) -> pd.DataFrame:
    """The page's table of every run: the ranked finished ones as in `runs_table`, then the others
    (running, failed, smoke checks) unranked; a status column last, to sort and filter by."""
    others = frame[frame["status"] != FINISHED]
    table = runs_table(pd.concat([ranked, others]), swept, metric)
    table.loc[len(ranked):, "#"] = MISSING
    table["status"] = [*ranked["status"], *others["status"]]
    return table


def mean_column(metric: str) -> str:
    return f"{metric} mean ± std"


def summary_table(summary: pd.DataFrame, swept: Sequence[str], metric: str) -> pd.DataFrame:
    """Per configuration: its parameters, runs, mean ± std, 95 % interval, min and max, as text."""
    table = pd.DataFrame({key: [format_param(value) for value in summary[key]] for key in config_keys(swept)},
                         index=range(len(summary)))
    table["runs"] = [str(count) for count in summary["count"]]
    table[mean_column(metric)] = [
        format_metric(metric, mean) + ("" if math.isnan(std) else f" ± {format_metric(metric, std)}")
        for mean, std in zip(summary["mean"], summary["std"])]
    table["95 % interval of the mean"] = [
        MISSING if math.isnan(low) else f"{format_metric(metric, low)} … {format_metric(metric, high)}"
        for low, high in zip(summary["ci_low"], summary["ci_high"])]
    table["min"] = [format_metric(metric, value) for value in summary["min"]]
    table["max"] = [format_metric(metric, value) for value in summary["max"]]
    return table


def failed_table(frame: pd.DataFrame, limit: int = 300) -> pd.DataFrame:
    """Runs without a result: directory, overrides as typed, status, exit code and real error."""
    failed = frame[frame["status"] != FINISHED]
    shorten = [text if len(text) <= limit else text[: limit - 1] + "…" for text in failed["detail"]]
    return pd.DataFrame({"run": list(failed["label"]), "overrides": list(failed["overrides"]),
                         "status": list(failed["status"]), "detail": shorten})


def headline(frame: pd.DataFrame, metric: str, minimize: bool) -> str:
    """The line under the title, the same in HTML and Markdown."""
    finished = int((frame["status"] == FINISHED).sum())
    better = "lower" if minimize else "higher"
    return (f"{finished} runs sorted by {metric} ({better} is better); "
            f"{len(frame) - finished} failed, unfinished or smoke checks.")
