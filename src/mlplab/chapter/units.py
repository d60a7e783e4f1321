"""The hidden layer's zero outputs and dead units, per cell of the norms table: the textbook's claim
that ReLU leaves about half of its units at zero, measured on the chapter's own runs."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from mlplab.chapter.cells import NOT_MEASURED, finished, source_runs
from mlplab.chapter.contents import TABLES
from mlplab.tools.report.markdown import markdown_table

UNIT_METRICS = {"zero outputs": "activation/layer0/zero_frac", "dead units": "activation/layer0/dead_frac"}
UNITS_TABLE = "norms"  # whose runs the units block reads: every norm for ReLU, GELU and sigmoid


def percent_spread(values: pd.Series) -> str:
    if values.empty:
        return NOT_MEASURED
    return f"{values.mean() * 100:.2f} %" + (f" ± {values.std(ddof=1) * 100:.2f}" if len(values) > 1 else "")


def units_block(runs_dir: Path, smoke: bool) -> str:
    """The hidden layer's exact zeros and dead units after the last epoch (ActivationStats, on the
    first 1,000 validation images), per cell of the norms table, mean ± std over its seeds."""
    table = next(table for table in TABLES if table.name == UNITS_TABLE)
    done = finished(source_runs(table, runs_dir, smoke), table)
    if done.empty or not set(UNIT_METRICS.values()) <= set(done):
        return f"Not measured yet: run `python -m mlplab.chapter --only {UNITS_TABLE}`."
    rows = []
    for (activation, norm), group in done.groupby(["activation", "norm"], sort=True):
        row = {"activation": str(activation), "norm": str(norm), "seeds": str(len(group))}
        for name, metric in UNIT_METRICS.items():
            values = pd.to_numeric(group[metric], errors="coerce").dropna()
            row[f"{name}, mean ± std"] = percent_spread(values)
            row[f"{name}: fewest … most"] = f"{values.min() * 100:.1f} … {values.max() * 100:.1f} %" \
                if len(values) else NOT_MEASURED
        rows.append(row)
    return (f"From the `{UNITS_TABLE}` table's runs, after their last epoch, on the first 1,000 validation "
            f"images: zero outputs are outputs exactly 0; dead units are units 0 on every one of the images.\n\n"
            + markdown_table(pd.DataFrame(rows)))
