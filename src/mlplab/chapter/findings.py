"""What a table's runs support, in words generated from its paired comparisons and cells.

Comparisons are the report's (tools/report/comparisons.py): within each family, paired by seed, on
the table's ranking metric (validation accuracy; test accuracy only where there is no validation
set), Holm-adjusted over the family. A sentence says "beats" only where the adjusted test and the
interval both do, and never calls two cells equal. A textbook target is met only where the cell's
interval, widened by the test set's own sampling noise, lies above it.
"""

from __future__ import annotations

import math

import pandas as pd

from mlplab.chapter.cells import cell_keys, finished
from mlplab.chapter.contents import TEST, VALIDATION, Table
from mlplab.tools.report import comparisons
from mlplab.tools.report.tables import format_param

METRIC_WORDS = {VALIDATION: "validation", TEST: "test"}


def same_runs(family: comparisons.Family, runs: pd.DataFrame, keys: list[str]) -> bool:
    """Whether every configuration of the family is the very same runs (one baseline cell shown under
    two labels): comparing them would compare runs with themselves."""
    labels = runs[keys].apply(lambda row: tuple(format_param(value) for value in row), axis=1)
    paths = {frozenset(runs.loc[labels == member, "path"]) for member in family.members}
    return len(paths) == 1


def compare(frame: pd.DataFrame, table: Table) -> pd.DataFrame:
    """The table's comparisons (one row each, as comparisons.compare gives them), or an empty frame
    for a table of one cell."""
    runs = finished(frame, table)
    keys = cell_keys(table)
    if not table.keys or runs.empty:
        return pd.DataFrame()
    by_seed = comparisons.paired_table(runs, keys, ["seed"], table.ranking)
    beside_metric = comparisons.shown_beside(table.ranking)
    beside = comparisons.paired_table(runs, keys, ["seed"], beside_metric) if beside_metric else None
    rows = [row for family in comparisons.families(list(by_seed), keys) if not same_runs(family, runs, keys)
            for row in comparisons.family_rows(family, by_seed, beside, minimize=False)]
    return pd.DataFrame(rows)


def points(value: float) -> str:
    return f"{value * 100:+.2f} pp"


def interval(low: float, high: float) -> str:
    return f"{low * 100:+.2f} … {high * 100:+.2f}"


def beats_sentence(row: pd.Series, table: Table) -> str:
    winner, loser = (row["a"], row["b"]) if row["difference"] > 0 else (row["b"], row["a"])
    sign = 1 if row["difference"] > 0 else -1
    held = row["family"].split(" · ", 1)[1] if " · " in row["family"] else ""
    where = f" ({held.replace(' · ', ', ')})" if held else ""
    text = (f"`{winner}` beats `{loser}`{where}: {METRIC_WORDS[table.ranking]} {points(sign * row['difference'])} "
            f"(95 % interval {interval(*sorted((sign * row['ci_low'], sign * row['ci_high'])))}, "
            f"Holm p = {row['p_holm']:.2g}, {row['pairs']} seeds)")
    if "test_difference" in row and not math.isnan(row["test_difference"]):
        text += (f"; test {points(sign * row['test_difference'])} "
                 f"({interval(*sorted((sign * row['test_low'], sign * row['test_high'])))})")
    return text + "."


def pair_name(row: pd.Series) -> str:
    held = row["family"].split(" · ", 1)[1] if " · " in row["family"] else ""
    return f"`{row['a']}` vs `{row['b']}`" + (f" ({held.replace(' · ', ', ')})" if held else "")


def comparison_sentences(found: pd.DataFrame, table: Table) -> list[str]:
    """One sentence per supported difference, then one naming every pair that showed none."""
    if found.empty:
        return []
    supported = found[found["verdict"].str.contains(" beats ")]
    sentences = [beats_sentence(row, table) for _, row in supported.iterrows()]
    others = found[~found["verdict"].str.contains(" beats ")]
    if not others.empty:
        names = ", ".join(pair_name(row) for _, row in others.iterrows())
        sentences.append(f"No difference shown (Holm-adjusted p >= {comparisons.ALPHA} or an interval "
                         f"containing 0; not evidence of equality) for {names}.")
    return sentences


def target_sentence(cell: pd.Series, target: float) -> str:
    low, high = cell["absolute_low"], cell["absolute_high"]
    if low >= target:
        verdict = "meets it: the whole interval lies above"
    elif high < target:
        verdict = "falls short: the whole interval lies below"
    else:
        verdict = "neither meets nor misses it: the interval contains it"
    return (f"`{cell['experiment']}` against the textbook's {target * 100:.1f} %: test {cell['test_mean'] * 100:.2f} %, "
            f"95 % interval over seeds and the test set's sampling noise {low * 100:.2f} … {high * 100:.2f} %; "
            f"it {verdict}.")


def selection_sentence(table_cells: pd.DataFrame, table: Table) -> str | None:
    """Which cell validation picks, and whether test accuracy would have picked another."""
    if table.ranking != VALIDATION or len(table_cells) < 2 or "val_mean" not in table_cells:
        return None
    keys = cell_keys(table)
    label = lambda row: ", ".join(f"{format_param(row[key])}" for key in keys)  # noqa: E731
    by_val = table_cells.iloc[0]
    by_test = table_cells.sort_values("test_mean", ascending=False, kind="stable").iloc[0]
    text = (f"Highest mean validation accuracy: `{label(by_val)}` ({by_val['val_mean'] * 100:.2f} %; test "
            f"{by_val['test_mean'] * 100:.2f} %).")
    if label(by_test) != label(by_val):
        text += (f" Ranked by test accuracy instead, `{label(by_test)}` would come first "
                 f"({by_test['test_mean'] * 100:.2f} %): the ranking here is validation's.")
    return text


def sentences(table_cells: pd.DataFrame, found: pd.DataFrame, table: Table) -> list[str]:
    lines = []
    if (selection := selection_sentence(table_cells, table)) is not None:
        lines.append(selection)
    lines += comparison_sentences(found, table)
    for _, cell in table_cells.iterrows():
        if table.rows == "experiment" and cell["experiment"] in table.targets:
            lines.append(target_sentence(cell, table.targets[cell["experiment"]]))
    return lines
