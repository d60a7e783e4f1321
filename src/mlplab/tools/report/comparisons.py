"""Configurations compared paired by seed: which differences a sweep's seeds support, and which not.

A family is the configurations that differ in one swept parameter while the other swept parameters
hold one set of values (all configurations, where one parameter is swept). Within a family, two
configurations are compared on the runs they finished with the same seed: the mean of the paired
differences of the ranking metric, its 95 % t interval and the paired t-test (scipy.stats.ttest_rel),
the standardized effect (mean difference / std of the differences), and the p-value adjusted with
Holm's method over the family's comparisons (statsmodels). The test metric's paired difference
stands beside it, not tested: the verdict is on the ranking metric alone.

`compare` returns numbers, `comparisons_table` the text the page and report.md show.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import pandas as pd
from scipy import stats
from statsmodels.stats.multitest import multipletests

from mlplab.run.records import FINISHED
from mlplab.tools.report.runs import is_seed_key, is_unknown
from mlplab.tools.report.tables import MISSING, config_keys, format_param, is_accuracy, metric_values

ALPHA = 0.05
CONFIDENCE = 0.95
# Up to this many configurations a family compares every pair (at most 15 comparisons); beyond,
# each against the family's best, so that Holm's correction does not drown every difference.
ALL_PAIRS_UP_TO = 6
NOTHING_SHOWN = "no difference shown"
ROUNDING = 1e-12  # a spread of differences below this (relative) is float rounding, not seed noise


class Family(NamedTuple):
    """Configurations (tuples of formatted values of `keys`) differing only in keys[position]."""

    name: str
    position: int
    members: list[tuple[str, ...]]


def shown_beside(metric: str) -> str | None:
    """The test metric shown beside the ranking metric; None when the ranking metric is it."""
    beside = "test_loss" if "loss" in metric else "test_acc"
    return None if beside == metric else beside


def seed_label(row: pd.Series, seeds: Sequence[str]) -> str | None:
    """What pairs two runs: their seed values as text; None for a run whose seed is unknown."""
    values = [row[key] for key in seeds]
    return None if any(is_unknown(value) for value in values) else "|".join(format_param(value) for value in values)


Scores = dict[tuple[str, ...], pd.Series]  # per configuration, its metric by seed


def paired_table(runs: pd.DataFrame, keys: Sequence[str], seeds: Sequence[str], metric: str) -> Scores:
    """Per configuration (its values of `keys` as text), the metric by seed; reruns of one seed
    (equal on the CPU) are averaged into one value, runs without the metric or a known seed left out."""
    scored = pd.DataFrame({
        "config": [tuple(format_param(row[key]) for key in keys) for _, row in runs.iterrows()],
        "seed": [seed_label(row, seeds) for _, row in runs.iterrows()],
        "score": metric_values(runs, metric).to_numpy()}).dropna()
    return {config: group.groupby("seed")["score"].mean() for config, group in scored.groupby("config", sort=False)}


def families(configs: Sequence[tuple[str, ...]], keys: Sequence[str]) -> list[Family]:
    """For each swept parameter, the configurations that hold the others fixed; two or more make a family."""
    found = []
    for position, key in enumerate(keys):
        groups: dict[tuple[str, ...], list[tuple[str, ...]]] = {}
        for config in configs:
            groups.setdefault(config[:position] + config[position + 1:], []).append(config)
        for held, members in groups.items():
            others = [f"{name}={value}" for name, value in zip(keys[:position] + keys[position + 1:], held)]
            if len(members) > 1:
                found.append(Family(" · ".join([key, *others]), position, members))
    return found


def chosen_pairs(ranked: Sequence[tuple[str, ...]]) -> list[tuple[tuple[str, ...], tuple[str, ...]]]:
    """(better, worse) by mean: every pair in a small family, else each against the best."""
    if len(ranked) <= ALL_PAIRS_UP_TO:
        return list(itertools.combinations(ranked, 2))
    return [(ranked[0], other) for other in ranked[1:]]


def paired_statistics(first: pd.Series, second: pd.Series) -> dict[str, float]:
    """Mean paired difference first − second over the seeds both have, its 95 % interval, the paired
    t-test's p-value and the effect size; only the count and mean where fewer than 2 pairs."""
    both = pd.concat([first, second], axis=1).dropna()
    differences = (both.iloc[:, 0] - both.iloc[:, 1]).to_numpy()
    result = {"pairs": len(differences), "difference": float(differences.mean()) if len(differences) else math.nan,
              "ci_low": math.nan, "ci_high": math.nan, "effect": math.nan, "p": math.nan}
    if len(differences) < 2:
        return result
    spread = float(np.std(differences, ddof=1))
    # Equal differences on every seed (up to float rounding: 0.93 − 0.92 is not 0.91 − 0.90) leave
    # the t statistic undefined, not infinite: no p-value, no effect size.
    if spread <= ROUNDING * max(1.0, abs(result["difference"])):
        return result
    test = stats.ttest_rel(both.iloc[:, 0], both.iloc[:, 1])
    interval = test.confidence_interval(CONFIDENCE)
    result.update(ci_low=float(interval.low), ci_high=float(interval.high), effect=result["difference"] / spread,
                  p=float(test.pvalue))
    return result


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm-adjusted p-values over the comparisons that were tested; NaN stays NaN (not tested)."""
    tested = [index for index, value in enumerate(p_values) if not math.isnan(value)]
    adjusted = [math.nan] * len(p_values)
    if tested:
        corrected = multipletests([p_values[index] for index in tested], alpha=ALPHA, method="holm")[1]
        for index, value in zip(tested, corrected):
            adjusted[index] = float(value)
    return adjusted


def verdict(row: dict, minimize: bool) -> str:
    """'A beats B' only where the adjusted p-value and the interval both say so; never a claim of equality."""
    if row["pairs"] < 2:
        return f"{row['pairs']} pair{'' if row['pairs'] == 1 else 's'}: too few to test"
    if math.isnan(row["p_holm"]):
        return f"{NOTHING_SHOWN} (the same difference on every seed: no t-test)"
    excludes_zero = row["ci_low"] > 0 or row["ci_high"] < 0
    if row["p_holm"] >= ALPHA or not excludes_zero:
        return NOTHING_SHOWN
    first_better = (row["difference"] < 0) == minimize
    winner, loser = (row["a"], row["b"]) if first_better else (row["b"], row["a"])
    return f"{winner} beats {loser}"


def family_rows(family: Family, by_seed: Scores, beside: Scores | None, minimize: bool) -> list[dict]:
    """The family's comparisons, the better configuration by mean first in each; Holm over exactly these."""
    ranked = sorted(family.members, key=lambda config: by_seed[config].mean(), reverse=not minimize)
    rows = []
    for first, second in chosen_pairs(ranked):
        row = {"family": family.name, "a": first[family.position], "b": second[family.position],
               **paired_statistics(by_seed[first], by_seed[second])}
        if beside is not None:
            # The very pairs of the ranking metric, so that the two differences are of the same runs.
            common = by_seed[first].index.intersection(by_seed[second].index)
            test = paired_statistics(*(beside.get(config, pd.Series(dtype=float)).reindex(common)
                                       for config in (first, second)))
            row.update(test_difference=test["difference"], test_low=test["ci_low"], test_high=test["ci_high"])
        rows.append(row)
    for row, adjusted in zip(rows, holm([row["p"] for row in rows])):
        row.update(p_holm=adjusted, tests=sum(not math.isnan(other["p"]) for other in rows))
        row["verdict"] = verdict(row, minimize)
    return rows


def compare(runs: pd.DataFrame, swept: Sequence[str], metric: str, minimize: bool) -> pd.DataFrame:
    """One row per comparison made (see the module docstring); empty where no family has two
    configurations or no seed is swept to pair runs by. Runs that did not finish are left out."""
    keys, seeds = config_keys(swept), [key for key in swept if is_seed_key(key)]
    if "status" in runs:
        runs = runs[runs["status"] == FINISHED]
    if not keys or not seeds or runs.empty:
        return pd.DataFrame()
    by_seed = paired_table(runs, keys, seeds, metric)
    beside_metric = shown_beside(metric)
    beside = paired_table(runs, keys, seeds, beside_metric) if beside_metric in runs else None
    rows = [row for family in families(list(by_seed), keys)
            for row in family_rows(family, by_seed, beside, minimize)]
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------------------------
# Formatting: the same text in HTML and Markdown


def format_difference(metric: str, value: float) -> str:
    """A signed difference: accuracies in percentage points, anything else to 4 places."""
    if math.isnan(value):
        return MISSING
    if is_accuracy(metric):
        return f"{value * 100:+.2f} pp"
    return f"{value:+.4f}"


def format_interval(metric: str, low: float, high: float) -> str:
    if math.isnan(low):
        return MISSING
    return f"{format_difference(metric, low)} … {format_difference(metric, high)}"


def format_p(value: float) -> str:
    """Three significant digits; small ones in e-notation, which the page's filters read as numbers."""
    return MISSING if math.isnan(value) else f"{value:.3g}"


def difference_column(metric: str) -> str:
    return f"{metric} A − B"


def comparisons_table(comparisons: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Family, the two configurations, pairs, the ranking metric's paired difference with its
    interval, effect size, p-values and verdict, then the test metric's difference, as text."""
    columns = {
        "family": list(comparisons["family"]), "A": list(comparisons["a"]), "B": list(comparisons["b"]),
        "pairs": [str(count) for count in comparisons["pairs"]],
        difference_column(metric): [format_difference(metric, value) for value in comparisons["difference"]],
        "95 % interval": [format_interval(metric, low, high)
                          for low, high in zip(comparisons["ci_low"], comparisons["ci_high"])],
        "effect size": [MISSING if math.isnan(value) else f"{value:+.2f}" for value in comparisons["effect"]],
        "p": [format_p(value) for value in comparisons["p"]],
        "p Holm": [format_p(value) for value in comparisons["p_holm"]],
        "tests in family": [str(count) for count in comparisons["tests"]],
        "verdict": list(comparisons["verdict"]),
    }
    if (beside := shown_beside(metric)) is not None and "test_difference" in comparisons:
        columns[difference_column(beside)] = [format_difference(beside, value)
                                              for value in comparisons["test_difference"]]
        columns[f"{beside} 95 % interval"] = [format_interval(beside, low, high)
                                             for low, high in zip(comparisons["test_low"], comparisons["test_high"])]
    return pd.DataFrame(columns)


def family_sizes(comparisons: pd.DataFrame) -> str:
    """The number of tested comparisons Holm adjusts over, per family that has any: "3", or "1–3"
    where they differ; empty where nothing had the pairs to be tested."""
    sizes = comparisons.groupby("family")["tests"].first()
    sizes = sizes[sizes > 0]
    if sizes.empty:
        return ""
    fewest, most = int(sizes.min()), int(sizes.max())
    return str(fewest) if fewest == most else f"{fewest}–{most}"


def caption(comparisons: pd.DataFrame, metric: str) -> str:
    """What the comparisons are and what their numbers cover, the same on the page and in report.md."""
    if comparisons.empty:
        return ("No paired comparisons: they need a swept parameter besides the seed, with two or more "
                "configurations that ran the same seeds.")
    beside, sizes = shown_beside(metric), family_sizes(comparisons)
    holm_text = (f"p Holm: adjusted with Holm's method within each family of {sizes} comparisons (tests in family)."
                 if sizes else "No comparison had 2 pairs with a spread to test.")
    text = (f"Paired by seed: A − B is the mean over the seeds both configurations finished (pairs) of "
            f"the difference in {metric}. A family is the configurations differing in one swept parameter, "
            f"the others held at the values named; every pair is compared in a family of at most "
            f"{ALL_PAIRS_UP_TO} configurations, else each against its best by mean. The 95 % interval (t) "
            f"and the paired t-test's p cover the seed-to-seed variation of this set of seeds, not the "
            f"test set's sampling noise. Effect size: mean difference / std of the differences. {holm_text} "
            f"'A beats B' only where p Holm < {ALPHA} and the interval excludes 0; '{NOTHING_SHOWN}' is no "
            f"evidence that the two are equal. Fewer than 2 pairs: no test.")
    if beside is not None and "test_difference" in comparisons:
        text += f" {beside}: the same pairs' difference, shown beside, not tested."
    return text
