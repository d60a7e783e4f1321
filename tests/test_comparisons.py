"""Paired comparisons of configurations: fabricated run tables with known answers, checked against
scipy and statsmodels called here directly and against a small example worked by hand."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy import stats
from statsmodels.stats.multitest import multipletests

from mlplab.tools.report import comparisons, tables

METRIC, TEST = "val_acc_best", "test_acc"


def run_table(scores: dict[tuple, list[float | None]], keys: tuple[str, ...] = ("activation",),
              seeds: tuple[int, ...] | None = None, status: str = "finished") -> pd.DataFrame:
    """One finished run per (configuration, seed): scores[config][i] is the metric of seed i + 1
    (None: that seed did not run); the test metric is the metric minus 0.01."""
    rows = []
    for config, values in scores.items():
        for index, value in enumerate(values):
            if value is not None:
                seed = seeds[index] if seeds else index + 1
                rows.append({**dict(zip(keys, config)), "seed": seed, "status": status,
                             METRIC: value, TEST: value - 0.01})
    return pd.DataFrame(rows)


def compared(frame: pd.DataFrame, keys: tuple[str, ...] = ("activation",), metric: str = METRIC,
             minimize: bool = False) -> pd.DataFrame:
    return comparisons.compare(frame, [*keys, "seed"], metric, minimize)


def test_a_small_example_worked_by_hand():
    """Differences 0.01, 0.02, 0.03: mean 0.02, std 0.01, t = 0.02 / (0.01 / √3) = 3.4641 with 2
    degrees of freedom, two-sided p = 1 − t / √(2 + t²) = 0.074180 (closed form for df 2);
    interval 0.02 ± 4.302653 · 0.01 / √3 = 0.02 ± 0.024841; effect 0.02 / 0.01 = 2."""
    frame = run_table({("relu",): [0.90, 0.92, 0.94], ("tanh",): [0.89, 0.90, 0.91]})
    row = compared(frame).iloc[0]
    assert (row["a"], row["b"], row["pairs"], row["tests"]) == ("relu", "tanh", 3, 1)
    assert row["difference"] == pytest.approx(0.02)
    assert row["p"] == pytest.approx(0.074180, abs=1e-6) and row["p_holm"] == row["p"]
    assert (row["ci_low"], row["ci_high"]) == pytest.approx((0.02 - 0.024841, 0.02 + 0.024841), abs=1e-6)
    assert row["effect"] == pytest.approx(2.0)
    assert row["verdict"] == "no difference shown"
    text = comparisons.comparisons_table(compared(frame), METRIC).iloc[0].to_dict()
    assert text == {"family": "activation", "A": "relu", "B": "tanh", "pairs": "3", "val_acc_best A − B": "+2.00 pp",
                    "95 % interval": "-0.48 pp … +4.48 pp", "effect size": "+2.00", "p": "0.0742",
                    "p Holm": "0.0742", "tests in family": "1", "verdict": "no difference shown",
                    "test_acc A − B": "+2.00 pp", "test_acc 95 % interval": "-0.48 pp … +4.48 pp"}


def direct(frame: pd.DataFrame, keys: tuple[str, ...], family: str, a: str, b: str) -> tuple[np.ndarray, np.ndarray]:
    """The two configurations' metric on the seeds both ran, straight from the run table."""
    varied, *held = family.split(" · ")
    mask = np.ones(len(frame), dtype=bool)
    for condition in held:
        key, value = condition.split("=")
        mask &= frame[key].map(tables.format_param) == value
    family_runs = frame[mask]
    pick = {value: family_runs[family_runs[varied].map(tables.format_param) == value].set_index("seed")[METRIC]
            for value in (a, b)}
    seeds = sorted(set(pick[a].index) & set(pick[b].index))
    return pick[a].loc[seeds].to_numpy(), pick[b].loc[seeds].to_numpy()


def noisy_grid(values: dict[str, list], seeds: int, seed: int) -> pd.DataFrame:
    """Every combination of the values x `seeds` seeds, the metric a configuration effect plus seed noise."""
    rng = np.random.default_rng(seed)
    keys = tuple(values)
    return run_table({config: list(0.9 + rng.normal(0, 0.01) + rng.normal(0, 0.004, seeds))
                      for config in itertools.product(*values.values())}, keys)


@pytest.mark.parametrize(("values", "seeds", "families", "per_family"), [
    ({"activation": ["relu", "gelu", "tanh"]}, 5, 1, [3]),                       # all 3 pairs
    ({"activation": ["a", "b", "c", "d", "e", "f"]}, 4, 1, [15]),                # 6: still every pair
    ({"activation": list("abcdefgh")}, 3, 1, [7]),                               # 8: each against the best
    ({"activation": ["relu", "gelu", "tanh"], "optimizer.lr": [0.1, 0.01]}, 4, 5, [3, 3, 1, 1, 1]),
    ({"activation": ["relu", "gelu"], "optimizer.lr": [0.1, 0.01], "dropout.p": [0.0, 0.2]}, 3, 12, [1] * 12),
])
def test_every_number_matches_scipy_and_statsmodels(values, seeds, families, per_family):
    keys = tuple(values)
    frame = noisy_grid(values, seeds, seed=len(values) * 10 + seeds)
    result = compared(frame, keys)
    assert result.groupby("family", sort=False).size().tolist() == per_family and result["family"].nunique() == families
    for _, group in result.groupby("family"):
        for _, row in group.iterrows():
            first, second = direct(frame, keys, row["family"], row["a"], row["b"])
            test = stats.ttest_rel(first, second)
            interval = stats.t.interval(0.95, len(first) - 1, loc=np.mean(first - second),
                                        scale=stats.sem(first - second))
            assert row["pairs"] == len(first) == seeds
            assert row["difference"] == pytest.approx(np.mean(first - second), abs=1e-12)
            assert row["p"] == pytest.approx(test.pvalue, rel=1e-9)
            assert (row["ci_low"], row["ci_high"]) == pytest.approx(interval, abs=1e-12)
            assert row["effect"] == pytest.approx(np.mean(first - second) / np.std(first - second, ddof=1))
        assert group["p_holm"].tolist() == pytest.approx(multipletests(group["p"], method="holm")[1].tolist())
        assert (group["tests"] == len(group)).all()
        if len(keys) == 1:  # the better configuration by mean is A; beyond 6, the family's best is every A
            means = frame.groupby(keys[0])[METRIC].mean()
            assert all(means[a] >= means[b] for a, b in zip(group["a"], group["b"]))
            if len(means) > comparisons.ALL_PAIRS_UP_TO:
                assert set(group["a"]) == {means.idxmax()}


def test_families_hold_the_other_parameters_fixed():
    frame = noisy_grid({"activation": ["relu", "gelu", "tanh"], "optimizer.lr": [0.1, 0.01]}, 3, seed=1)
    result = compared(frame, ("activation", "optimizer.lr"))
    assert sorted(set(result["family"])) == [
        "activation · optimizer.lr=0.01", "activation · optimizer.lr=0.1",
        "optimizer.lr · activation=gelu", "optimizer.lr · activation=relu", "optimizer.lr · activation=tanh"]
    lr_family = result[result["family"] == "optimizer.lr · activation=relu"].iloc[0]
    assert {lr_family["a"], lr_family["b"]} == {"0.1", "0.01"}


def test_seeds_without_a_partner_and_runs_not_finished_are_left_out():
    paired = {("relu",): [0.90, 0.92, 0.94, 0.99], ("tanh",): [0.89, 0.90, 0.91, None, 0.50]}
    frame = run_table(paired)
    failed = run_table({("tanh",): [None, None, None, 0.10]}, status="failed")  # seed 4 failed for tanh
    running = run_table({("relu",): [None, None, None, None, 0.40]}, status="running")
    unknown_seed = run_table({("relu",): [0.10]}).assign(seed=math.nan)
    row = compared(pd.concat([frame, failed, running, unknown_seed], ignore_index=True)).iloc[0]
    # Only seeds 1-3 ran to the end in both: the hand-checked example above, to the digit.
    assert row["pairs"] == 3 and row["difference"] == pytest.approx(0.02)
    assert row["p"] == pytest.approx(0.074180, abs=1e-6)


def test_a_single_seed_gives_no_p_value_and_says_so():
    frame = run_table({("relu",): [0.90], ("tanh",): [0.80], ("gelu",): [0.85]})
    result = compared(frame)
    assert len(result) == 3 and result["p"].isna().all() and result["p_holm"].isna().all()
    assert (result["tests"] == 0).all()
    assert set(result["verdict"]) == {"1 pair: too few to test"}
    table = comparisons.comparisons_table(result, METRIC)
    assert set(table["p"]) == set(table["p Holm"]) == set(table["95 % interval"]) == {"—"}
    differences = {(a, b): text for a, b, text in zip(table["A"], table["B"], table["val_acc_best A − B"])}
    assert differences == {("relu", "gelu"): "+5.00 pp", ("relu", "tanh"): "+10.00 pp",
                           ("gelu", "tanh"): "+5.00 pp"}  # the one seed's difference: shown, not tested
    no_common = run_table({("relu",): [0.9, None], ("tanh",): [None, 0.8]})
    assert compared(no_common)["verdict"].tolist() == ["0 pairs: too few to test"]


def test_nothing_to_compare_is_said_in_words():
    seeds_only = run_table({(): [0.9, 0.91, 0.92]}, keys=())
    assert compared(seeds_only, keys=()).empty
    no_seed = run_table({("relu",): [0.9], ("tanh",): [0.8]}).drop(columns="seed")
    assert comparisons.compare(no_seed, ["activation"], METRIC, False).empty
    assert comparisons.caption(pd.DataFrame(), METRIC).startswith("No paired comparisons")


# X, Y, Z on 4 seeds: X − Y is 0.002, 0.006, 0.003, 0.007 (raw p 0.032, the interval above 0); the
# other two pairs differ by noise. Holm over the family's 3 comparisons lifts X − Y's p to 0.096.
X = [0.900, 0.910, 0.905, 0.915]
Y = [0.898, 0.904, 0.902, 0.908]
Z = [0.896, 0.912, 0.904, 0.912]


def test_holm_turns_a_raw_win_into_no_difference_shown():
    alone = compared(run_table({("X",): X, ("Y",): Y})).iloc[0]
    assert alone["p"] < 0.05 and alone["ci_low"] > 0 and alone["verdict"] == "X beats Y"
    family = compared(run_table({("X",): X, ("Y",): Y, ("Z",): Z})).set_index(["a", "b"])
    assert family.index.tolist() == [("X", "Z"), ("X", "Y"), ("Z", "Y")]  # best by mean first
    x_y = family.loc[("X", "Y")]
    assert x_y["p"] == pytest.approx(alone["p"]) and x_y["p"] < 0.05 and x_y["ci_low"] > 0
    assert x_y["p_holm"] == pytest.approx(min(1.0, 3 * x_y["p"])) and x_y["p_holm"] > 0.05
    assert x_y["tests"] == 3 and set(family["verdict"]) == {"no difference shown"}


@pytest.mark.parametrize(("metric", "minimize", "verdict"), [
    ("val_acc_best", False, "gelu beats relu"), ("test_loss", True, "relu beats gelu")])
def test_a_clear_difference_is_called_the_right_way_round(metric, minimize, verdict):
    gelu, relu = [0.95, 0.96, 0.94, 0.955], [0.90, 0.915, 0.89, 0.90]
    frame = run_table({("gelu",): gelu, ("relu",): relu}).assign(test_loss=lambda runs: runs[METRIC])
    row = compared(frame, metric=metric, minimize=minimize).iloc[0]
    assert row["verdict"] == verdict and row["p_holm"] < 0.05
    assert row["a"] == ("relu" if minimize else "gelu")  # the better by mean is A


def test_equal_differences_on_every_seed_are_not_tested():
    frame = run_table({("relu",): [0.90, 0.92], ("gelu",): [0.91, 0.93]})
    row = compared(frame).iloc[0]
    assert row["difference"] == pytest.approx(0.01) and math.isnan(row["p"]) and row["tests"] == 0
    assert row["verdict"].startswith("no difference shown")


def test_the_caption_names_the_family_sizes_holm_adjusts_over():
    frame = noisy_grid({"activation": ["relu", "gelu", "tanh"], "optimizer.lr": [0.1, 0.01]}, 3, seed=2)
    text = comparisons.caption(compared(frame, ("activation", "optimizer.lr")), METRIC)
    assert "Paired by seed" in text and "within each family of 1–3 comparisons" in text
    assert "seed-to-seed variation of this set of seeds, not the test set's sampling noise" in text


accuracy = st.one_of(st.none(), st.integers(8000, 10000).map(lambda correct: correct / 10000))


@given(st.lists(st.lists(accuracy, min_size=1, max_size=6), min_size=2, max_size=4))
def test_any_run_table_keeps_the_rules_of_the_verdict(scores):
    """Generated tables (any seeds missing, ties, one seed): a win is only claimed where Holm's p and
    the interval both support it, pairs are the seeds both ran, and nothing is ever called equal."""
    frame = run_table({(f"c{index}",): values for index, values in enumerate(scores)})
    if frame.empty:
        return
    for _, row in compared(frame).iterrows():
        seeds = [set(frame[frame["activation"] == name]["seed"]) for name in (row["a"], row["b"])]
        assert row["pairs"] == len(seeds[0] & seeds[1])
        if " beats " in row["verdict"]:
            assert row["p_holm"] < 0.05 and (row["ci_low"] > 0 or row["ci_high"] < 0)
        else:
            assert row["verdict"].startswith((comparisons.NOTHING_SHOWN, f"{row['pairs']} pair"))
        if not math.isnan(row["p"]):
            assert row["pairs"] >= 2 and row["p"] <= row["p_holm"] <= 1
        assert "tie" not in row["verdict"] and "equal" not in row["verdict"]
