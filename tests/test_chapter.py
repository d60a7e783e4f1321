"""The chapter (src/mlplab/chapter, `python -m mlplab.chapter`): its sweeps run for real as a tiny try of
the dropout table, and its pages, published cells, `--verify`, resumption and timing checked against
numbers computed here straight from the runs' metrics.json with numpy and scipy.

Fast tests check the statistics (cells, findings), the generated blocks, what the tables are made of,
the pack sizes, staleness of runs against a temporary git repository, and the command line's errors;
the slow ones share one real try (`-- trainer.max_epochs=1 +trainer.limit_train_batches=20 seed=1,2,3`),
always with --dir and --docs under the test's tmp dir, so nothing is written into docs/ or outputs/.
"""

from __future__ import annotations

import gc
import itertools
import json
import math
import re
import shlex
import shutil
import subprocess
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats
from statsmodels.stats.multitest import multipletests

from helpers import REPO, assert_one_line_error, run_script
from mlplab.chapter import blocks, campaign, cells, contents, findings, pages, verification
from mlplab.chapter.__main__ import chapter_dir, docs_dir, main, parse_args
from mlplab.errors import UserError
from mlplab.run.provenance import MAX_LISTED

TRY = ("trainer.max_epochs=1", "+trainer.limit_train_batches=20", "seed=1,2,3")
SEEDS = [1, 2, 3]
DROPOUTS = ["none", "p01", "p02", "p05"]
TABLE_BY_NAME = {table.name: table for table in contents.TABLES}
BLOCK = re.compile(r"<!-- chapter:(?P<name>[\w]+) -->.*?<!-- /chapter:(?P=name) -->", re.DOTALL)


def t_quantile(count: int) -> float:
    return float(stats.t.ppf(0.975, count - 1))


BLOCK_NAMES = re.compile(r"<!-- chapter:([\w-]+) -->")


def emptied(text: str, names: set[str] | None = None) -> str:
    """The page with the inside of its generated blocks (those named, or all) taken out: its prose."""
    def empty(match: re.Match) -> str:
        if names is not None and match["name"] not in names:
            return match[0]
        return f"<!-- chapter:{match['name']} --><!-- /chapter:{match['name']} -->"
    return BLOCK.sub(empty, text)


def block_of(text: str, name: str) -> str:
    match = re.search(rf"<!-- chapter:{name} -->\n(.*?)\n<!-- /chapter:{name} -->", text, re.DOTALL)
    assert match, f"no block {name}"
    return match[1]


def markdown_rows(text: str) -> list[dict[str, str]]:
    """The first Markdown table in text, one dict per row."""
    lines = [line for line in text.splitlines() if line.startswith("| ")]
    header = [cell.strip() for cell in lines[0].strip("|").split(" | ")]
    assert set(lines[1].replace("|", "").split()) == {"---"}
    return [dict(zip(header, (cell.strip() for cell in line.strip().strip("|").split(" | ")))) for line in lines[2:]]


def chapter_command(*arguments: str, timeout: int = 600) -> subprocess.CompletedProcess:
    return run_script("mlplab.chapter", *arguments, timeout=timeout)


# ---------------------------------------------------------------------------------------------
# Cells: the estimates and the test set's noise


@pytest.mark.parametrize("values", [[0.91, 0.93, 0.92], [0.5, 0.7], [0.97, 0.975, 0.971, 0.969, 0.98, 0.9755],
                                    [0.99, 0.96], [0.01, 0.05, 0.02]])
def test_an_estimate_is_the_t_interval_and_its_rerun_interval_sqrt_2_wider(values):
    got = cells.estimate(np.array(values))
    count, mean, std = len(values), np.mean(values), np.std(values, ddof=1)
    low, high = stats.t.interval(0.95, count - 1, loc=mean, scale=stats.sem(values))
    assert (got.seeds, got.mean, got.std) == (count, pytest.approx(mean, rel=1e-12), pytest.approx(std, rel=1e-12))
    # Accuracies: an interval reaching past 0 or 1 says no more than [0, 1].
    assert (got.low, got.high) == pytest.approx(tuple(np.clip((low, high), 0, 1)), rel=1e-12)
    rerun = t_quantile(count) * std * math.sqrt(2 / count)
    assert (got.rerun_low, got.rerun_high) == pytest.approx(tuple(np.clip((mean - rerun, mean + rerun), 0, 1)),
                                                            rel=1e-12)
    if 0 < mean - rerun and mean + rerun < 1:
        assert got.rerun_high - got.rerun_low == pytest.approx(math.sqrt(2) * (high - low), rel=1e-12)


def test_one_value_has_a_mean_and_no_spread():
    got = cells.estimate(np.array([0.95]))
    assert got.seeds == 1 and got.mean == 0.95
    assert all(math.isnan(value) for value in (got.std, got.low, got.high, got.rerun_low, got.rerun_high))
    assert cells.estimate(np.array([])).seeds == 0 and math.isnan(cells.estimate(np.array([])).mean)


def test_the_test_sets_noise_is_the_binomial_half_width_on_10000_images():
    assert cells.test_set_noise(0.977) == pytest.approx(1.96 * math.sqrt(0.977 * 0.023 / 10000), rel=1e-3)
    assert cells.test_set_noise(0.9, images=100) == pytest.approx(1.959964 * math.sqrt(0.09 / 100), rel=1e-6)
    assert cells.test_set_noise(1.0) == 0.0


def run_frame(scores: dict[str, list[float]], key: str = "dropout", test_offset: float = -0.01) -> pd.DataFrame:
    """Finished runs by hand: scores[config][i] is seed i + 1's validation accuracy."""
    return pd.DataFrame([{key: config, "seed": index + 1, "status": "finished", "path": f"/runs/{config}/seed-{index + 1}",
                          "val_acc_best": value, "test_acc": value + test_offset}
                         for config, values in scores.items() for index, value in enumerate(values)])


def test_cells_are_ordered_by_validation_and_their_numbers_are_numpys():
    scores = {"p05": [0.80, 0.81, 0.83], "none": [0.85, 0.84, 0.86], "p01": [0.82, 0.825, 0.83]}
    frame = run_frame(scores)
    frame.loc[frame["dropout"] == "p05", "test_acc"] += 0.06  # best on test, last on validation
    got = cells.cells(frame, TABLE_BY_NAME["dropout"])
    assert list(got["dropout"]) == ["none", "p01", "p05"]
    for _, row in got.iterrows():
        test = frame.loc[frame["dropout"] == row["dropout"], "test_acc"].to_numpy()
        assert row["seeds"] == 3 and row["val_mean"] == pytest.approx(np.mean(scores[row["dropout"]]))
        assert row["test_std"] == pytest.approx(np.std(test, ddof=1))
        assert row["test_noise"] == pytest.approx(cells.test_set_noise(np.mean(test)))
        half = t_quantile(3) * np.std(test, ddof=1) / math.sqrt(3)
        assert row["absolute_high"] - row["test_mean"] == pytest.approx(math.hypot(half, row["test_noise"]))
    # Without validation (the full-train baselines) the order is test's.
    full = run_frame({"seed_keras": [0.97, 0.975], "seed_pytorch": [0.98, 0.979]}, key="experiment")
    assert list(cells.cells(full, TABLE_BY_NAME["baselines_full_train"])["experiment"]) == ["seed_pytorch", "seed_keras"]


def test_a_seed_interval_clipped_at_1_does_not_narrow_the_absolute_interval():
    frame = run_frame({"seed_keras": [0.995, 1.0], "seed_pytorch": [0.96, 0.962]}, key="experiment", test_offset=0.0)
    table = TABLE_BY_NAME["baselines"]
    cell = cells.cells(frame, table).set_index("experiment").loc["seed_keras"]
    half = t_quantile(2) * np.std([0.995, 1.0], ddof=1) / math.sqrt(2)  # 0.0318: the seed interval reaches 0.9657
    assert cell["test_low"] == pytest.approx(0.9975 - half) and cell["test_low"] < 0.977
    assert cell["absolute_low"] == pytest.approx(0.9975 - math.hypot(half, cell["test_noise"]))
    assert "meets it" not in findings.target_sentence(cell.rename(None).to_dict() | {"experiment": "seed_keras"}, 0.977)


def test_a_run_that_did_not_finish_is_no_part_of_a_cell():
    frame = run_frame({"none": [0.95, 0.94, 0.96], "p01": [0.92, 0.925, 0.93]})
    frame.loc[0, "status"] = "failed"
    got = cells.cells(frame, TABLE_BY_NAME["dropout"]).set_index("dropout")
    assert got.loc["none", "seeds"] == 2 and got.loc["none", "val_mean"] == pytest.approx(0.95)


# ---------------------------------------------------------------------------------------------
# Generated blocks


PAGE = """# Results

Prose before.

<!-- chapter:one -->
old one
<!-- /chapter:one -->

Prose between, $1 and \\1 kept.

<!-- chapter:two -->
old two
<!-- /chapter:two -->

Prose after.
"""


def test_a_block_is_replaced_whole_and_nothing_outside_it():
    got = blocks.replace_blocks(PAGE, {"one": "new\ncontent with \\1 and \\g<0>\n"}, Path("page.md"))
    assert "<!-- chapter:one -->\nnew\ncontent with \\1 and \\g<0>\n<!-- /chapter:one -->" in got
    assert "old one" not in got and "old two" in got
    assert emptied(got) == emptied(PAGE)
    assert blocks.replace_blocks(got, {"one": "new\ncontent with \\1 and \\g<0>\n"}, Path("page.md")) == got
    both = blocks.replace_blocks(PAGE, {"one": "1", "two": "2"}, Path("page.md"))
    assert block_of(both, "one") == "1" and block_of(both, "two") == "2" and emptied(both) == emptied(PAGE)


@pytest.mark.parametrize("page", [PAGE.replace("<!-- chapter:two -->\n", ""), PAGE.replace("<!-- /chapter:two -->", ""),
                                  PAGE.replace("chapter:two", "chapter:twofold")])
def test_a_missing_block_is_an_error_naming_its_markers(page):
    with pytest.raises(UserError) as error:
        blocks.replace_blocks(page, {"one": "1", "two": "2"}, Path("docs/results.md"))
    message = str(error.value)
    assert "docs/results.md" in message and "<!-- chapter:two -->" in message and "<!-- /chapter:two -->" in message
    assert "chapter:one" not in message


def test_markers_in_the_wrong_order_are_an_error_not_a_silent_omission():
    swapped = PAGE.replace("<!-- chapter:two -->", "@@").replace("<!-- /chapter:two -->", "<!-- chapter:two -->") \
        .replace("@@", "<!-- /chapter:two -->")
    with pytest.raises(UserError, match="chapter:two"):
        blocks.replace_blocks(swapped, {"two": "2"}, Path("page.md"))


def test_the_template_has_a_block_for_every_table_and_the_chapter():
    text = pages.TEMPLATE.read_text()
    for name in ["chapter", *contents.TABLE_NAMES]:
        begin, end = blocks.markers(name)
        assert text.count(begin) == 1 and text.count(end) == 1 and text.index(begin) < text.index(end), name


# ---------------------------------------------------------------------------------------------
# What the tables are made of


def test_l2_strength_puts_both_forms_on_one_scale_and_the_baseline_in_both():
    frame = pd.DataFrame([
        {"l2": "penalty", "l2.weight": 5.0e-5, "path": "/p/1"}, {"l2": "penalty", "l2.weight": 5.0e-3, "path": "/p/2"},
        {"l2": "decoupled", "l2.weight": 1.0e-4, "path": "/d/1"}, {"l2": "decoupled", "l2.weight": 1.0e-2, "path": "/d/2"},
        {"l2": "none", "l2.weight": 0.0, "path": "/none/1"}, {"l2": "none", "l2.weight": math.nan, "path": "/none/2"}])
    got = contents.l2_strength(frame)
    assert len(got) == 4 + 2 * 2 and "none" not in set(got["l2"])
    by_path = {(row["path"], row["l2"]): row["strength"] for _, row in got.iterrows()}
    assert by_path[("/p/1", "penalty")] == "0.0001" and by_path[("/p/2", "penalty")] == "0.01"  # 2w
    assert by_path[("/d/1", "decoupled")] == "0.0001" and by_path[("/d/2", "decoupled")] == "0.01"  # w
    for path in ("/none/1", "/none/2"):
        assert by_path[(path, "penalty")] == by_path[(path, "decoupled")] == "0"
    # The sweeps' own weights meet on one scale, row by row.
    penalty = contents.l2_strength(pd.DataFrame({"l2": "penalty", "l2.weight": [5.0e-5, 5.0e-4, 5.0e-3, 5.0e-2]}))
    decoupled = contents.l2_strength(pd.DataFrame({"l2": "decoupled", "l2.weight": [1.0e-4, 1.0e-3, 1.0e-2, 1.0e-1]}))
    assert list(penalty["strength"]) == list(decoupled["strength"]) == ["0.0001", "0.001", "0.01", "0.1"]


@pytest.mark.parametrize(("widths", "layers"), [("[100,100,100]", 3), ("[100]", 1), ("[100, 100]", 2),
                                                 (json.dumps([100] * 10), 10), ([100, 100], 2)])
def test_hidden_layers_counts_the_widths(widths, layers):
    got = contents.hidden_layers(pd.DataFrame({"model.hidden_sizes": [widths]}))
    assert got["layers"].tolist() == [layers]


def test_every_table_reads_sweeps_that_exist_and_chosen_tables_refuses_an_unknown_one():
    for table in contents.TABLES:
        assert all((REPO / "sweeps" / f"{stem}.yaml").is_file() for stem in table.sweeps), table.name
    assert contents.sweeps_of(contents.chosen_tables(["l2"])) == ["dropout", "l2_penalty", "l2_decoupled"]
    assert contents.sweeps_of(contents.chosen_tables(None)) == list(contents.SWEEP_ORDER)
    with pytest.raises(UserError, match="nope"):
        contents.chosen_tables(["dropout", "nope"])


@pytest.mark.parametrize(("configurations", "seeds", "slots", "size"), [
    (4, 10, 2, 10), (4, 10, 4, 10), (10, 10, 16, 10), (1, 10, 1, 10), (1, 10, 2, 5), (1, 10, 3, 4), (1, 10, 16, 1),
    (2, 10, 16, 2), (3, 10, 16, 2), (4, 10, 16, 3), (1, 3, 2, 2), (1, 1, 8, 1)])
def test_pack_size(configurations, seeds, slots, size):
    assert campaign.pack_size(configurations, seeds, slots) == size


def test_the_dry_run_names_each_sweep_and_its_launch_with_one_thread_per_trial(tmp_path, capsys):
    assert main(["--only", "l2", "--dry-run", "--slots", "3", "--dir", str(tmp_path / "runs")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0] for line in lines[::2]] == ["dropout", "l2_penalty", "l2_decoupled"]
    assert lines[0].startswith("dropout: 4 configurations x 10 seeds") and "stale" not in lines[0]
    assert lines[0].endswith(f" -> {tmp_path / 'runs' / 'dropout'}")
    assert "--agents 3 --pack 10 " in lines[1] and f"--sweep-dir {tmp_path / 'runs' / 'dropout'}" in lines[1]
    assert not (tmp_path / "runs").exists()
    assert campaign.trial_env()["OMP_NUM_THREADS"] == "1" and campaign.trial_env()["MKL_NUM_THREADS"] == "1"


def test_the_dry_run_of_a_try_shows_the_try_s_seeds(tmp_path, capsys):
    assert main(["--only", "dropout", "--dry-run", "--dir", str(tmp_path), "--", *TRY]) == 0
    assert "dropout: 4 configurations x 3 seeds" in capsys.readouterr().out


def test_a_try_never_writes_over_the_published_runs_or_docs(tmp_path):
    published = parse_args([])
    assert chapter_dir(published) == REPO / "outputs" / "chapter" and docs_dir(published, chapter_dir(published)) == REPO / "docs"
    tried = parse_args(["--", *TRY])
    runs = chapter_dir(tried)
    assert runs.parent == REPO / "outputs" and runs.name.startswith("chapter-try-") and runs != chapter_dir(parse_args(["--", "seed=1"]))
    assert docs_dir(tried, runs) == runs / "docs"
    chosen = parse_args(["--dir", str(tmp_path / "d"), "--docs", str(tmp_path / "docs"), "--", *TRY])
    assert chapter_dir(chosen) == tmp_path / "d" and docs_dir(chosen, tmp_path / "d") == tmp_path / "docs"


# ---------------------------------------------------------------------------------------------
# Findings


def l2_runs() -> pd.DataFrame:
    """The L2 table's runs as its sources give them: both forms at two matched strengths, and the dropout
    sweep's `none` runs as strength 0 of each."""
    rng = np.random.default_rng(3)
    rows = []
    for form, weights, shift in (("penalty", [5.0e-5, 5.0e-3], 0.0), ("decoupled", [1.0e-4, 1.0e-2], 0.004),
                                 ("none", [0.0], -0.01)):
        for weight, seed in itertools.product(weights, range(1, 6)):
            value = 0.95 + shift + rng.normal(0, 0.002)
            rows.append({"l2": form, "l2.weight": weight, "seed": seed, "status": "finished",
                         "path": f"/runs/{form}/{weight}/seed-{seed}", "val_acc_best": value, "test_acc": value - 0.005})
    return contents.l2_strength(pd.DataFrame(rows))


def test_compare_leaves_out_a_family_whose_members_are_the_same_runs():
    found = findings.compare(l2_runs(), TABLE_BY_NAME["l2"])
    families = set(found["family"])
    assert "l2 · strength=0" not in families  # the baseline against itself
    assert {"l2 · strength=0.0001", "l2 · strength=0.01", "strength · l2=penalty", "strength · l2=decoupled"} <= families
    assert found[found["family"] == "strength · l2=penalty"].shape[0] == 3  # 0, 0.0001, 0.01: every pair
    # The same runs compared with themselves would be an exact zero difference on every seed.
    assert not (found["difference"] == 0).any()


def test_compare_of_a_one_cell_table_is_empty():
    frame = run_frame({"best_mlp": [0.98, 0.981, 0.979]}, key="experiment").drop(columns="experiment")
    assert findings.compare(frame, TABLE_BY_NAME["best_mlp"]).empty


def independent_verdicts(scores: dict[str, np.ndarray]) -> dict[frozenset, tuple[str, float, float, float]]:
    """Every pair of the family (at most 6 configurations: all pairs), straight from scipy and statsmodels:
    {pair: (better by mean, Holm p, ci low, ci high)}."""
    pairs = list(itertools.combinations(scores, 2))
    tests = [stats.ttest_rel(scores[a], scores[b]) for a, b in pairs]
    holm = multipletests([test.pvalue for test in tests], method="holm")[1]
    result = {}
    for (a, b), test, adjusted in zip(pairs, tests, holm):
        interval = test.confidence_interval(0.95)
        better = a if np.mean(scores[a] - scores[b]) > 0 else b
        sign = 1 if better == a else -1
        result[frozenset((a, b))] = (better, float(adjusted), *sorted((sign * interval.low, sign * interval.high)))
    return result


BEATS = re.compile(r"^`(?P<winner>[^`]+)` beats `(?P<loser>[^`]+)`: validation \+(?P<points>[\d.]+) pp .*"
                   r"Holm p = (?P<p>[^,]+), (?P<seeds>\d+) seeds\)")


@given(configurations=st.integers(2, 6), seeds=st.integers(2, 8), spread=st.sampled_from([0.0, 0.002, 0.01, 0.05]),
       noise=st.sampled_from([0.001, 0.005, 0.02]), draw=st.integers(0, 2**32 - 1))
@settings(max_examples=60)  # each example runs two Holm corrections over a family of up to 15 pairs
def test_findings_say_beats_exactly_where_holm_and_the_interval_do(configurations, seeds, spread, noise, draw):
    # statsmodels' multipletests calls gc.collect(): over this process's heap (torch, Lightning) that is
    # half a second per call, unless the objects from before the example are left out of collection.
    gc.freeze()
    try:
        check_beats(configurations, seeds, spread, noise, draw)
    finally:
        gc.unfreeze()


def check_beats(configurations: int, seeds: int, spread: float, noise: float, draw: int) -> None:
    rng = np.random.default_rng(draw)
    names = [f"c{index}" for index in range(configurations)]
    scores = {name: 0.6 + rng.normal(0, spread) + rng.normal(0, noise, seeds) for name in names}
    frame = run_frame({name: list(values) for name, values in scores.items()})
    table = TABLE_BY_NAME["dropout"]
    table_cells = cells.cells(frame, table)
    lines = findings.sentences(table_cells, findings.compare(frame, table), table)
    expected = independent_verdicts(scores)
    said = [BEATS.match(line) for line in lines if " beats " in line]
    assert all(said), lines
    for match in said:
        pair = frozenset((match["winner"], match["loser"]))
        better, p_holm, low, high = expected[pair]
        assert match["winner"] == better and p_holm < 0.05 and low > 0, (match[0], expected[pair])
        assert float(match["p"]) == pytest.approx(p_holm, rel=0.05) and int(match["seeds"]) == seeds
        assert float(match["points"]) == pytest.approx(np.mean(scores[better] - scores[next(iter(pair - {better}))]) * 100,
                                                       abs=0.006)
    supported = {pair for pair, (_, p_holm, low, _) in expected.items() if p_holm < 0.05 and low > 0}
    assert {frozenset((m["winner"], m["loser"])) for m in said} == supported
    no_difference = [line for line in lines if line.startswith("No difference shown")]
    assert len(no_difference) == (len(supported) < len(expected))
    assert not any("equal" in line and "not evidence of equality" not in line for line in lines)
    assert lines[0].startswith(f"Highest mean validation accuracy: `{max(scores, key=lambda n: scores[n].mean())}`")


def target_cell(low: float, high: float) -> pd.Series:
    return pd.Series({"experiment": "seed_keras", "test_mean": (low + high) / 2, "absolute_low": low, "absolute_high": high})


@pytest.mark.parametrize(("low", "high", "verdict"), [
    (0.978, 0.982, "it meets it: the whole interval lies above."), (0.977, 0.98, "it meets it"),
    (0.970, 0.9769, "it falls short: the whole interval lies below."),
    (0.975, 0.979, "it neither meets nor misses it: the interval contains it."), (0.974, 0.977, "neither meets nor misses")])
def test_target_sentence_has_three_verdicts(low, high, verdict):
    text = findings.target_sentence(target_cell(low, high), 0.977)
    assert text.startswith("`seed_keras` against the textbook's 97.7 %:") and verdict in text
    assert f"{low * 100:.2f} … {high * 100:.2f} %" in text


def test_a_baselines_cell_is_held_against_its_textbook_target():
    frame = run_frame({"seed_pytorch": [0.97, 0.971, 0.969], "seed_keras": [0.985, 0.986, 0.984]}, key="experiment",
                      test_offset=0.0)
    table = TABLE_BY_NAME["baselines"]
    lines = findings.sentences(cells.cells(frame, table), findings.compare(frame, table), table)
    targets = {line.split("`")[1]: line for line in lines if "against the textbook's" in line}
    assert "97.6 %" in targets["seed_pytorch"] and "falls short" in targets["seed_pytorch"]
    assert "97.7 %" in targets["seed_keras"] and "meets it" in targets["seed_keras"]


# ---------------------------------------------------------------------------------------------
# Staleness against a temporary git repository


def git(repo: Path, *args: str) -> str:
    result = subprocess.run(["git", "-C", str(repo), "-c", "user.name=test", "-c", "user.email=test@example.com",
                             "-c", "commit.gpgsign=false", *args], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def commit(repo: Path, files: dict[str, str], message: str) -> str:
    for name, text in files.items():
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).write_text(text)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message)
    return git(repo, "rev-parse", "HEAD")


@pytest.fixture
def checkout(tmp_path) -> SimpleNamespace:
    """A fake checkout: training code, a config, two sweep files and docs, over four commits."""
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q")
    first = commit(repo, {"src/mlplab/core/x.py": "x = 1\n", "src/mlplab/chapter/pages.py": "# pages\n",
                          "conf/config.yaml": "seed: 1\n", "sweeps/s.yaml": "parameters: {seed: {values: [1, 2]}}\n",
                          "sweeps/other.yaml": "parameters: {seed: {values: [1]}}\n", "docs/results.md": "# r\n",
                          "train.py": "print()\n"}, "first")
    docs_only = commit(repo, {"docs/results.md": "# results\n", "src/mlplab/chapter/pages.py": "# pages 2\n",
                              "sweeps/other.yaml": "parameters: {seed: {values: [1, 2]}}\n"}, "docs and reports")
    training = commit(repo, {"src/mlplab/core/x.py": "x = 2\n"}, "training code")
    sweep_file = commit(repo, {"sweeps/s.yaml": "parameters: {seed: {values: [1, 2, 3]}}\n"}, "the sweep file")
    return SimpleNamespace(repo=repo, first=first, docs_only=docs_only, training=training, sweep_file=sweep_file,
                           sweep=campaign.Sweep("s", repo), runs=tmp_path / "chapter")


def write_run(runs: Path, name: str, commit_id: str, dirty: bool = False, changed: list[str] | None = None) -> Path:
    run_dir = runs / "s" / name
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "run_info.json").write_text(json.dumps({"git": {"commit": commit_id, "dirty": dirty,
                                                               "changed": changed or []}}))
    return run_dir


def test_runs_of_other_training_code_or_another_sweep_file_are_stale(checkout):
    write_run(checkout.runs, "pack-000/seed-1", checkout.first)
    reason = campaign.staleness(checkout.sweep, checkout.runs, checkout.docs_only)
    assert reason is None  # docs, reports and another sweep's file changed: still the same computation
    assert campaign.staleness(checkout.sweep, checkout.runs, checkout.first) is None
    reason = campaign.staleness(checkout.sweep, checkout.runs, checkout.training)
    assert reason is not None and checkout.first[:10] in reason and "differs" in reason
    shutil.rmtree(checkout.runs)
    write_run(checkout.runs, "000", checkout.training)
    assert campaign.staleness(checkout.sweep, checkout.runs, checkout.training) is None
    assert campaign.staleness(checkout.sweep, checkout.runs, checkout.sweep_file) is not None  # its own sweep file


def test_a_run_of_a_commit_the_checkout_lacks_is_stale(checkout):
    write_run(checkout.runs, "000", "0123456789" * 4)
    assert "0123456789" in campaign.staleness(checkout.sweep, checkout.runs, checkout.sweep_file)


def test_a_dirty_run_is_stale_only_where_its_changes_may_touch_training(checkout):
    head = checkout.sweep_file
    write_run(checkout.runs, "000", head, dirty=True, changed=["src/mlplab/chapter/pages.py", "docs/results.md"])
    assert campaign.run_commits(checkout.runs / "s") == ({head: False}, [])
    assert campaign.staleness(checkout.sweep, checkout.runs, head) is None
    write_run(checkout.runs, "001", head, dirty=True, changed=["src/mlplab/core/x.py"])
    assert campaign.run_commits(checkout.runs / "s") == ({head: True}, [])
    reason = campaign.staleness(checkout.sweep, checkout.runs, head)
    assert reason is not None and "uncommitted changes" in reason and head[:10] in reason


def test_runs_set_aside_before_are_not_read(checkout):
    write_run(checkout.runs, ".previous/000", checkout.first, dirty=True, changed=["conf/config.yaml"])
    write_run(checkout.runs, "001", checkout.sweep_file)
    assert campaign.run_commits(checkout.runs / "s") == ({checkout.sweep_file: False}, [])
    target = campaign.set_aside_stale(checkout.sweep, checkout.runs, "a reason")
    assert target == checkout.runs / campaign.STALE_DIR / "s.1" and not (checkout.runs / "s").exists()
    write_run(checkout.runs, "002", checkout.first)
    assert campaign.set_aside_stale(checkout.sweep, checkout.runs, "again").name == "s.2"
    assert campaign.run_commits(checkout.runs / "s") == ({}, [])


@pytest.mark.parametrize(("changed", "touches"), [
    ([], False), (["docs/results.md", "src/mlplab/chapter/pages.py", "tests/test_chapter.py"], False),
    (["src/mlplab/core/model.py"], True), (["conf/trainer/cpu.yaml"], True), (["sweeps/dropout.yaml"], True),
    (["train.py"], True), (["requirements/lock.txt"], True), (["src/mlplab/tools/sweep/offline.py"], True),
    (["src/mlplab/run/build.py"], True), ([f"docs/{index}.md" for index in range(MAX_LISTED)], True)])
def test_touches_training(changed, touches):
    assert campaign.touches_training(changed) is touches


def test_check_committed_names_a_modified_training_file(checkout):
    repo = checkout.repo
    (repo / "docs" / "results.md").write_text("edited\n")
    (repo / "src" / "mlplab" / "chapter" / "pages.py").write_text("# edited\n")
    campaign.check_committed(repo)  # docs and reports may be edited
    (repo / "src" / "mlplab" / "core" / "x.py").write_text("x = 3\n")
    with pytest.raises(UserError) as error:
        campaign.check_committed(repo)
    assert "src/mlplab/core/x.py" in str(error.value) and "pages.py" not in str(error.value)
    git(repo, "checkout", "--", "src/mlplab/core/x.py")
    (repo / "conf" / "new.yaml").write_text("a: 1\n")  # untracked, in conf/
    with pytest.raises(UserError, match="conf/new.yaml"):
        campaign.check_committed(repo)


def test_head_commit_outside_git_is_a_user_error(tmp_path, checkout):
    assert campaign.head_commit(checkout.repo) == checkout.sweep_file
    with pytest.raises(UserError, match="not a git checkout"):
        campaign.head_commit(tmp_path / "nowhere")


# ---------------------------------------------------------------------------------------------
# The command line's errors


@pytest.mark.parametrize(("arguments", "message"), [
    (["--only", "nope"], "argument --only: invalid choice: 'nope'"),
    (["--slots", "0"], "argument --slots: '0' is not a whole number >= 1"),
    (["--verify", "0"], "argument --verify: '0' is not a whole number >= 1"),
    (["--verify", "two"], "argument --verify: 'two' is not a whole number >= 1"),
    (["--render", "--verify", "1"], "not allowed with argument")])
def test_bad_arguments_exit_2_with_a_message(arguments, message, capsys, tmp_path):
    with pytest.raises(SystemExit) as stopped:
        main([*arguments, "--dir", str(tmp_path / "runs"), "--docs", str(tmp_path / "docs")])
    assert stopped.value.code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "runs").exists() and not (tmp_path / "docs").exists()


def test_verify_without_published_cells_is_one_line(tmp_path):
    result = chapter_command("--verify", "1", "--dir", str(tmp_path / "runs"), "--docs", str(tmp_path / "docs"),
                             timeout=120)
    assert result.returncode == 1
    assert_one_line_error(result, str(tmp_path / "docs" / "results" / "cells.json"), "no published cell")
    assert not (tmp_path / "runs").exists()


# Folders holding no finished run of the dropout table: a mistyped --dir, an empty one, one that holds
# only --verify's reruns or another table's sweep, an empty sweep folder (or a link to one), a sweep
# stopped before any trial finished, and a hand-made record that says no cell. Entries: path -> text
# of a file (None: a folder).
SWEEP_FILE_TEXT = (REPO / "sweeps" / "dropout.yaml").read_text()
NOT_THE_TABLES_RUNS = {
    "missing": None, "empty": {}, "verify only": {"verify/20261202-131130/00-l2/dropout": None},
    "another sweep": {"activations/pack-000": None}, "empty sweep folder": {"dropout": None},
    "link to an empty folder": {"elsewhere": None, "dropout": "-> elsewhere"},
    "stopped before a trial finished": {"dropout/sweep.yaml": SWEEP_FILE_TEXT,
                                        "dropout/trial-0001/trial.json": '{"status": "interrupted"}'},
    "a record that says no cell": {"dropout/sweep.yaml": SWEEP_FILE_TEXT,
                                   "dropout/trial-0001/trial.json": '{"status": "running"}'},
    "a file": "not a folder"}


def make_tree(root: Path, tree: dict | str | None) -> None:
    if isinstance(tree, str):
        root.write_text(tree)
    for name, text in (tree or {}).items() if isinstance(tree, dict) else ():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if text is None:
            path.mkdir(exist_ok=True)
        elif text.startswith("-> "):
            path.symlink_to(root / text.removeprefix("-> "))
        else:
            path.write_text(text)
    if tree == {}:
        root.mkdir()


@pytest.mark.parametrize("tree", NOT_THE_TABLES_RUNS.values(), ids=NOT_THE_TABLES_RUNS.keys())
def test_render_from_none_of_the_tables_runs_is_refused(tmp_path, capsys, tree):
    runs, docs = tmp_path / "runs", tmp_path / "docs"
    make_tree(runs, tree)
    # Refused, so that a published page is never replaced by "not measured".
    assert main(["--only", "dropout", "--render", "--dir", str(runs), "--docs", str(docs)]) == 1
    errors = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(errors) == 1 and errors[0].startswith("error: no finished run of dropout under ") and not docs.exists()


def test_render_after_a_stale_set_aside_unpublishes_the_table(tmp_path, capsys):
    # The published numbers are known to be of other code: "not measured" is the truth then.
    runs, docs = tmp_path / "runs", tmp_path / "docs"
    (runs / campaign.STALE_DIR / "dropout.1").mkdir(parents=True)
    shutil.copytree(REPO / "docs", docs)
    before = (docs / "results.md").read_text()
    assert main(["--only", "dropout", "--render", "--dir", str(runs), "--docs", str(docs)]) == 0
    assert "Not measured yet" in (docs / "results" / "dropout.md").read_text()
    # The page still holds the other tables' published blocks, so the block on how they were made stays.
    after = (docs / "results.md").read_text()
    assert block_of(after, "chapter") == block_of(before, "chapter") and "Wall time" in block_of(after, "chapter")
    assert block_of(after, "norms") == block_of(before, "norms") and block_of(after, "dropout") != block_of(before, "dropout")


@pytest.mark.slow
def test_render_leaves_the_page_of_a_table_without_runs_as_it_was(chapter_try, tmp_path, capsys):
    docs = tmp_path / "docs"
    shutil.copytree(chapter_try.docs, docs)
    (docs / "results" / "activations.md").write_text("the published page\n")
    before = (docs / "results.md").read_text()
    assert main(["--only", "dropout", "--only", "activations", "--render", "--dir", str(chapter_try.runs),
                 "--docs", str(docs), "--", *TRY]) == 0
    assert f"activations: no finished run under {chapter_try.runs}: its page is left as it was" \
        in capsys.readouterr().out
    assert (docs / "results" / "activations.md").read_text() == "the published page\n"
    activations = re.compile(r"<!-- chapter:activations -->.*?<!-- /chapter:activations -->", re.DOTALL)
    assert activations.search((docs / "results.md").read_text())[0] == activations.search(before)[0]
    assert (docs / "results" / "dropout.md").read_bytes() == chapter_try.written["results/dropout.md"]


def test_a_page_without_the_block_is_an_error(tmp_path, capsys):
    docs = tmp_path / "docs"
    docs.mkdir()
    template = (Path(__file__).parents[1] / "docs" / "results.md").read_text()
    (docs / "results.md").write_text(template.replace("<!-- /chapter:dropout -->", ""))
    assert main(["--only", "dropout", "--render", "--dir", str(tmp_path / "runs"), "--docs", str(docs)]) == 1
    errors = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(errors) == 1 and errors[0].startswith("error: ") and "<!-- /chapter:dropout -->" in errors[0]
    assert not (docs / "results" / "cells.json").exists()  # checked before anything is written


# ---------------------------------------------------------------------------------------------
# A real try of the dropout table (slow)


@pytest.fixture(scope="module")
def chapter_try(mnist, tmp_path_factory) -> SimpleNamespace:
    """`python -m mlplab.chapter --only dropout` as a try, run once; what it wrote, read back right after."""
    base = tmp_path_factory.mktemp("chapter")
    runs, docs = base / "runs", base / "docs"
    template = pages.TEMPLATE.read_text()  # what a try's results.md starts from, as it was when the try ran
    result = chapter_command("--only", "dropout", "--dir", str(runs), "--docs", str(docs), "--", *TRY)
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    written = {name: (docs / name).read_bytes() for name in ("results.md", "results/cells.json", "results/dropout.md")}
    return SimpleNamespace(runs=runs, docs=docs, template=template, result=result, written=written,
                           arguments=["--only", "dropout", "--dir", str(runs), "--docs", str(docs)])


def measured(runs: Path) -> dict[str, dict[int, dict]]:
    """Per dropout value, per seed, the member's metrics.json, found where train.py wrote it."""
    found: dict[str, dict[int, dict]] = {}
    files = sorted(runs.glob("dropout/pack-*/seed-*/metrics.json"))
    for path in files:
        metrics = json.loads(path.read_text())
        trial = json.loads((path.parent / "trial.json").read_text())
        dropout = next(text.split("=", 1)[1] for text in trial["overrides"] if text.startswith("dropout="))
        assert metrics["seed"] == trial["seed"] == int(path.parent.name.removeprefix("seed-"))
        found.setdefault(dropout, {})[metrics["seed"]] = {**metrics, "trial": trial["trial"]}
    assert len(files) == len(DROPOUTS) * len(SEEDS)
    return found


@pytest.mark.slow
def test_the_try_s_table_is_the_runs_own_numbers_in_validation_order(chapter_try):
    runs = measured(chapter_try.runs)
    assert sorted(runs) == sorted(DROPOUTS) and all(sorted(seeds) == SEEDS for seeds in runs.values())
    block = block_of((chapter_try.docs / "results.md").read_text(), "dropout")
    rows = markdown_rows(block)
    val = {name: np.array([runs[name][seed]["val_acc_best"] for seed in SEEDS]) for name in runs}
    test = {name: np.array([runs[name][seed]["test_acc"] for seed in SEEDS]) for name in runs}
    assert [row["dropout"] for row in rows] == sorted(runs, key=lambda name: -val[name].mean())
    for row in rows:
        name, t = row["dropout"], t_quantile(3)
        v, s = val[name], test[name]
        half, rerun = t * s.std(ddof=1) / math.sqrt(3), t * s.std(ddof=1) * math.sqrt(2 / 3)
        noise = float(stats.norm.ppf(0.975)) * math.sqrt(s.mean() * (1 - s.mean()) / 10000)
        assert row == {"dropout": name, "seeds": "3",
                       "validation (best epoch), mean ± std": f"{v.mean() * 100:.2f} % ± {v.std(ddof=1) * 100:.2f}",
                       "test, mean ± std": f"{s.mean() * 100:.2f} % ± {s.std(ddof=1) * 100:.2f}",
                       "test: 95 % interval of the mean": f"{(s.mean() - half) * 100:.2f} … {(s.mean() + half) * 100:.2f}",
                       "test: 95 % rerun interval": f"{(s.mean() - rerun) * 100:.2f} … {(s.mean() + rerun) * 100:.2f}",
                       "test set's own noise (95 %)": f"± {noise * 100:.2f}"}
    assert "12 finished runs of 12 (1 epochs)" in block and "1 CPU thread per trial" in block
    best = max(runs, key=lambda name: val[name].mean())
    assert f"Highest mean validation accuracy: `{best}` ({val[best].mean() * 100:.2f} %" in block


@pytest.mark.slow
def test_the_try_s_published_cells_hold_each_seed_and_the_rerun_interval(chapter_try):
    runs = measured(chapter_try.runs)
    entries = json.loads((chapter_try.docs / "results" / "cells.json").read_text())
    assert sorted(entry["cell"]["dropout"] for entry in entries) == sorted(DROPOUTS)
    for entry in entries:
        name = entry["cell"]["dropout"]
        assert entry["table"] == "dropout" and entry["sweep"] == "dropout" and entry["cell"] == {"dropout": name}
        assert entry["overrides"] == [*TRY, f"dropout={name}"]
        assert sorted(entry["seeds"]) == SEEDS and len(entry["test_by_seed"]) == 3
        assert dict(zip(entry["seeds"], entry["test_by_seed"])) == {seed: runs[name][seed]["test_acc"] for seed in SEEDS}
        values = np.array([runs[name][seed]["test_acc"] for seed in SEEDS])
        half = t_quantile(3) * values.std(ddof=1) * math.sqrt(2 / 3)
        assert entry["test_mean"] == pytest.approx(values.mean(), rel=1e-12)
        assert (entry["rerun_low"], entry["rerun_high"]) == pytest.approx((values.mean() - half, values.mean() + half),
                                                                          rel=1e-12)


@pytest.mark.slow
def test_the_try_keeps_the_template_s_prose_and_its_other_blocks(chapter_try):
    text = (chapter_try.docs / "results.md").read_text()
    # The try's page is the template's prose, every published block emptied, then its own two filled in.
    assert emptied(text) == emptied(chapter_try.template)
    others = set(BLOCK_NAMES.findall(chapter_try.template)) - {"chapter", "dropout"}
    assert others and all(f"<!-- chapter:{name} -->\n<!-- /chapter:{name} -->" in text for name in others)
    info = json.loads(next(chapter_try.runs.glob("dropout/pack-*/run_info.json")).read_text())
    chapter = block_of(text, "chapter")
    timing = campaign.read_timing(chapter_try.runs)
    assert f"Commit `{info['git']['commit'][:10]}`" in chapter and "1 thread each" in chapter
    assert f"minutes per sweep: dropout {timing[0]['seconds'] / 60:.1f}" in chapter


@pytest.mark.slow
def test_the_try_s_page_lists_every_run(chapter_try):
    page = (chapter_try.docs / "results" / "dropout.md").read_text()
    runs_section = page.split("## Runs", 1)[1]
    rows = markdown_rows(runs_section)
    listed = {row["run"]: row for row in rows}
    expected = {metrics["trial"]: (name, seed, metrics) for name, seeds in measured(chapter_try.runs).items()
                for seed, metrics in seeds.items()}
    assert len(rows) == 12 and set(listed) == set(expected)
    for trial, (name, seed, metrics) in expected.items():
        assert (listed[trial]["dropout"], listed[trial]["seed"]) == (name, str(seed))
        assert listed[trial]["test_acc"] == f"{metrics['test_acc'] * 100:.2f}%"
    assert "## Paired comparisons" in page and "## Findings" in page


@pytest.mark.slow
def test_render_again_writes_the_same_bytes(chapter_try):
    for _ in range(2):
        result = chapter_command(*chapter_try.arguments, "--render", "--", *TRY, timeout=300)
        assert result.returncode == 0, result.stderr[-3000:]
        assert "chapter: dropout" not in result.stdout  # trained nothing
        for name, content in chapter_try.written.items():
            assert (chapter_try.docs / name).read_bytes() == content, name
    assert len(campaign.read_timing(chapter_try.runs)) == 1


def verify_report(output: str) -> list[dict[str, str]]:
    return markdown_rows(output.split("# --verify", 1)[1])


@pytest.mark.slow
def test_verify_reruns_a_cell_inside_its_interval_with_the_same_bits(chapter_try):
    result = chapter_command(*chapter_try.arguments, "--verify", "1", "--", *TRY)
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    (row,) = verify_report(result.stdout)
    entry = verification.drawn(json.loads(chapter_try.written["results/cells.json"]), 1, 0)[0]
    assert row["cell"] == f"dropout: dropout={entry['cell']['dropout']}" and row["seeds"] == "3"
    assert row["inside"] == "yes" and row["same bits seed for seed"] == "yes"
    assert row["rerun mean"] == row["published mean"] == f"{entry['test_mean'] * 100:.2f} %"
    assert "Every rerun mean lies inside its published rerun interval (1 of 1)" in result.stdout
    # What made the reruns, from their records; the command as typed, --only and overrides included.
    head = campaign.head_commit(REPO)[:10]
    assert f"at commit `{head}`; " in result.stdout and "torch 2." in result.stdout
    assert f"`{shlex.join(['python', '-m', 'mlplab.chapter', *chapter_try.arguments, '--verify', '1', '--', *TRY])}`" \
        in result.stdout
    reports = list(chapter_try.runs.glob("verify/*/report.md"))
    assert len(reports) == 1 and "| yes | yes |" in reports[0].read_text()


@pytest.mark.slow
def test_verify_says_no_where_a_published_interval_is_moved_away(chapter_try, tmp_path):
    docs = tmp_path / "docs"
    shutil.copytree(chapter_try.docs, docs)
    entries = json.loads((docs / "results" / "cells.json").read_text())
    drawn = verification.drawn(entries, 1, 0)[0]
    for entry in entries:
        if entry["cell"] == drawn["cell"]:
            entry["rerun_low"], entry["rerun_high"] = entry["rerun_high"] + 0.01, entry["rerun_high"] + 0.05
    (docs / "results" / "cells.json").write_text(json.dumps(entries))
    # No overrides: each cell is rerun with the ones cells.json publishes for it.
    result = chapter_command("--only", "dropout", "--dir", str(tmp_path / "runs"), "--docs", str(docs), "--verify", "1")
    assert result.returncode == 1, (result.stdout + result.stderr)[-4000:]
    assert "Traceback" not in result.stderr
    (row,) = verify_report(result.stdout)
    assert row["inside"] == "NO" and row["same bits seed for seed"] == "yes"
    assert "Not every rerun mean lies inside its published rerun interval (0 of 1)" in result.stdout


@pytest.mark.slow
def test_verify_2_reruns_two_cells_of_one_table(chapter_try, monkeypatch, capfd, mnist):
    monkeypatch.setenv("MNIST_ROOT", str(mnist))
    monkeypatch.setenv("WANDB_MODE", "offline")
    assert main([*chapter_try.arguments, "--verify", "2", "--", *TRY]) == 0
    rows = verify_report(capfd.readouterr().out)
    assert len(rows) == 2 and len({row["cell"] for row in rows}) == 2
    assert all(row["inside"] == "yes" and row["same bits seed for seed"] == "yes" for row in rows)


@pytest.mark.slow
def test_running_the_try_again_trains_nothing_and_times_each_invocation(chapter_try):
    metrics = {path: path.stat().st_mtime_ns for path in chapter_try.runs.glob("dropout/pack-*/seed-*/metrics.json")}
    before = campaign.read_timing(chapter_try.runs)
    assert [(entry["sweep"], entry["returncode"], entry["overrides"], entry["threads_per_trial"]) for entry in before] \
        == [("dropout", 0, list(TRY), 1)]
    result = chapter_command(*chapter_try.arguments, "--", *TRY)
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    assert "12 trials, 0 finished before" not in result.stdout
    assert "12 trials, 12 finished before (skipped), 0 to run" in result.stdout
    assert "sweep: 0 finished, 0 failed, 0 interrupted, 12 skipped" in result.stdout
    assert "set aside" not in result.stdout and not (chapter_try.runs / campaign.STALE_DIR).exists()
    assert {path: path.stat().st_mtime_ns for path in metrics} == metrics
    after = campaign.read_timing(chapter_try.runs)
    assert len(after) == 2 and after[0] == before[0] and after[1]["sweep"] == "dropout"
    assert after[1]["returncode"] == 0 and after[1]["seconds"] < before[0]["seconds"] + 60
    text = (chapter_try.docs / "results.md").read_text()
    assert block_of(text, "dropout") == block_of(chapter_try.written["results.md"].decode(), "dropout")
    assert (chapter_try.docs / "results" / "cells.json").read_bytes() == chapter_try.written["results/cells.json"]
    total = sum(entry["seconds"] for entry in after)
    assert f"Wall time of the runs: {total / 3600:.2f} h" in block_of(text, "chapter")


def published_cell(table: str, overrides: tuple[str, ...], seeds: tuple[int, ...]) -> dict:
    return {"table": table, "cell": {"overrides": " ".join(overrides)}, "sweep": "s", "overrides": list(overrides),
            "seeds": list(seeds)}


# Cells of a few tables, some published by two tables at once (as the baselines are by protocols).
PUBLISHED_CELLS = st.lists(
    st.builds(published_cell, st.sampled_from(["a", "b", "c"]),
              st.tuples(st.sampled_from(["x=1", "x=2", "y=1"])), st.sampled_from([(1, 2), (1, 2, 3)])),
    max_size=12)


@given(PUBLISHED_CELLS, st.integers(0, 15), st.integers(0, 3))
def test_verify_draws_distinct_runs_round_the_tables(entries, count, seed):
    chosen = verification.drawn(entries, count, seed)
    runs = {verification.same_runs(entry) for entry in chosen}
    distinct = {verification.same_runs(entry) for entry in entries}
    assert len(runs) == len(chosen) == min(count, len(distinct))  # never the same runs twice, never short
    assert verification.drawn(entries, count, seed) == chosen  # the seed decides the draw
    if count >= len(distinct):
        assert runs == distinct
