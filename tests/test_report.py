"""The report: run directories -> one DataFrame -> HTML (Jinja2) and Markdown.

Fast tests build run directories by hand (the files train.py and the sweep write) and call the
package in-process; the slow ones run real tiny train.py runs, `python -m mlplab.tools.report` over them,
and render the page in headless Chromium.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote

import pandas as pd
import pytest
import yaml

from helpers import coloured_fraction, mnist_root, read_png, run_script
from mlplab.run import failures
from mlplab.run import records as runfiles
from mlplab.tools.report import write_report
from mlplab.tools.report import html as report_html
from mlplab.tools.report import tables
from mlplab.tools.report.__main__ import main
from mlplab.tools.report.runs import load_runs

SWEPT = ("activation", "seed")
RUNS = [("relu", 1), ("gelu", 1), ("relu", 2), ("gelu", 2)]
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]
MNIST_ROOT_DEFAULT = "${oc.env:MNIST_ROOT,./data}"  # conf/data/mnist.yaml's root, as .hydra/config.yaml keeps it


# ---------------------------------------------------------------------------------------------
# Run directories written by hand: fast


def fake_run(directory: Path, overrides: list[str], choices: dict[str, str] | None = None,
             metrics: dict | None = None, error_log: str | None = None, trial: dict | None = None) -> Path:
    """A run directory as train.py leaves it: .hydra/ (overrides, choices, unresolved config),
    metrics.json when it finished, error.log when it crashed; trial.json when the sweep ran it."""
    hydra = directory / ".hydra"
    hydra.mkdir(parents=True)
    (hydra / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    (hydra / "hydra.yaml").write_text(yaml.safe_dump({"hydra": {"runtime": {"choices": choices or {}}}}))
    config = {"seed": 42, "data": {"root": MNIST_ROOT_DEFAULT, "seed": "${seed}"}, "optimizer": {"lr": 0.001}}
    (hydra / "config.yaml").write_text(yaml.safe_dump(config))
    if metrics is not None:
        (directory / "metrics.json").write_text(json.dumps({"epochs": 1, "global_steps": 10, **metrics}))
    if error_log is not None:
        (directory / "error.log").write_text(error_log)
    if trial is not None:
        (directory / "trial.json").write_text(json.dumps(trial))
    return directory


def test_crashed_run_shows_its_real_error_from_error_log(tmp_path):
    fake_run(tmp_path / "good", ["seed=1"], metrics={"test_acc": 0.9})
    traceback = ("Traceback (most recent call last):\n  File \"train.py\", line 20, in main\n"
                 "RuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB\n")
    fake_run(tmp_path / "crashed", ["seed=2", "model.hidden_sizes=[4096,4096]"], error_log=traceback)
    fake_run(tmp_path / "failed_trial", ["seed=3"], error_log="ValueError: bad batch\n",
             trial={"outcome": "failed", "returncode": 1, "overrides": ["seed=3"], "error": "ValueError: bad batch"})
    (tmp_path / "failed_trial" / "trial.log").write_text("error: something else entirely\n")

    frame = load_runs(tmp_path)
    failed = frame[frame["status"] != "finished"].set_index("label")
    assert failed.loc["crashed", "detail"] == "RuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB"
    assert failed.loc["crashed", "overrides"] == "seed=2 model.hidden_sizes=[4096,4096]"
    # error.log (the traceback's last line) is the real error even where trial.log says something too.
    assert failed.loc["failed_trial", ["status", "detail"]].tolist() == ["failed", "exit 1 · ValueError: bad batch"]

    write_report(tmp_path, tmp_path / "report.html", "test_acc")
    rows = {row[0]: row for row in parse((tmp_path / "report.html").read_text()).rows["failed"][1:]}
    assert rows["crashed"][3] == "RuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB"
    assert "| crashed | seed=2 model.hidden_sizes=[4096,4096] | no metrics.json | RuntimeError: CUDA out of memory" \
        in (tmp_path / "report.md").read_text()


def test_unswept_and_unresolved_values_never_become_columns(tmp_path):
    """data.root is overridden in one run only: the others' value is an interpolation of their
    environment (unknown now), so data.root is not swept. An override all runs share is not either."""
    for index, (activation, seed) in enumerate(RUNS):
        extra = ["data.root=/data/mnist"] if index == 0 else []
        fake_run(tmp_path / f"run{index}", ["trainer.max_epochs=2", f"activation={activation}", f"seed={seed}", *extra],
                 choices={"activation": activation}, metrics={"test_acc": 0.9 + index / 100})
    frame = load_runs(tmp_path)
    assert frame.attrs["swept"] == ["activation", "seed"]
    assert "data.root" not in frame.columns and "trainer.max_epochs" not in frame.columns
    assert frame.attrs["common"] == ["trainer.max_epochs=2"]

    write_report(tmp_path, tmp_path / "report.html", "test_acc")
    page, markdown = (tmp_path / "report.html").read_text(), (tmp_path / "report.md").read_text()
    assert "${" not in without_code(page) and "${" not in markdown
    header = parse(page).rows["runs"][0]
    assert header[:4] == ["#", "run", "activation", "seed"]


def test_a_value_differing_only_once_resolved_is_swept(tmp_path):
    """A key interpolated the same way everywhere but resolved differently (csv/hparams.yaml) is a real difference."""
    for index, root in enumerate(["/data/a", "/data/b"]):
        run = fake_run(tmp_path / f"run{index}", [f"data.root={MNIST_ROOT_DEFAULT}"], metrics={"test_acc": 0.9})
        (run / "csv").mkdir()
        (run / "csv" / "hparams.yaml").write_text(yaml.safe_dump({"config": {"data": {"root": root}}}))
    frame = load_runs(tmp_path)
    assert frame.attrs["swept"] == ["data.root"]
    assert sorted(frame["data.root"]) == ["/data/a", "/data/b"]


def test_intervals_match_a_hand_computed_table():
    scores = {"relu": [0.90, 0.92, 0.94], "gelu": [0.95, 0.97], "tanh": [0.80]}
    runs = [{"activation": name, "test_acc": value} for name, values in scores.items() for value in values]
    summary = tables.summarize(pd.DataFrame(runs), ["activation"], "test_acc", minimize=False).set_index("activation")
    assert summary.index.tolist() == ["gelu", "relu", "tanh"]  # best mean first
    # relu: mean 0.92, std 0.02, n 3; t_{0.975,2} = 4.302653 -> 4.302653 * 0.02 / sqrt(3) = 0.0496828
    assert summary.loc["relu", "count"] == 3
    assert summary.loc["relu", "std"] == pytest.approx(0.02)
    assert summary.loc["relu", "ci_low"] == pytest.approx(0.92 - 0.0496828, abs=1e-6)
    assert summary.loc["relu", "ci_high"] == pytest.approx(0.92 + 0.0496828, abs=1e-6)
    # gelu: mean 0.96, std 0.0141421, n 2; t_{0.975,1} = 12.706205 -> 12.706205 * 0.0141421 / sqrt(2) = 0.1270621
    assert summary.loc["gelu", "ci_high"] == pytest.approx(0.96 + 0.1270621, abs=1e-6)
    assert math.isnan(summary.loc["tanh", "ci_low"])  # one run: no interval
    table = tables.summary_table(summary.reset_index(), ["activation"], "test_acc")
    assert table.loc[1].tolist() == ["relu", "3", "92.00% ± 2.00%", "87.03% … 96.97%", "90.00%", "94.00%"]
    assert table.loc[2, "95 % interval of the mean"] == "—"


@pytest.mark.parametrize(("runs", "swept", "text"), [
    ([("relu", 1), ("relu", 2), ("gelu", 1), ("gelu", 2)], SWEPT, "activation; 2 seeds per configuration"),
    ([("relu", 1), ("relu", 2), ("relu", 3), ("gelu", 1)], SWEPT, "activation; 1–3 seeds per configuration"),
    ([("relu", 1), ("relu", 1), ("gelu", 1)], ["activation"], "activation"),
    ([("relu", 1), ("relu", 2)], ["seed"], "no parameter; 2 seeds per configuration"),
    ([("relu", 1), ("relu", 2)], ["data.seed"], "no parameter; 2 seeds per configuration"),
    ([("relu", math.nan), ("relu", 2)], SWEPT, "activation; 2 seeds per configuration"),  # an unknown seed
])
def test_the_swept_line_names_parameters_and_groups_seeds(runs, swept, text):
    frame = pd.DataFrame([{"activation": activation, "seed": seed, "data.seed": seed} for activation, seed in runs])
    assert tables.swept_text(frame, swept) == text


@pytest.mark.parametrize(("degrees", "quantile"), [(1, 12.706205), (2, 4.302653), (10, 2.228139),
                                                   (30, 2.042272), (40, 2.021075), (100, 1.983972)])
def test_intervals_use_students_t_quantile(degrees, quantile):
    """t_{0.975, df} as any statistics table prints it: the half width of std 1 times √n."""
    count = degrees + 1
    assert tables.interval_half_width(1.0, count) * math.sqrt(count) == pytest.approx(quantile, abs=1e-6)


# activation x seed, val_acc_best and test_acc by hand: relu is ahead of tanh on every seed, gelu noisy.
COMPARED = {"relu": [(0.950, 0.948), (0.955, 0.951), (0.948, 0.947)],
            "gelu": [(0.951, 0.949), (0.940, 0.941), (0.953, 0.950)],
            "tanh": [(0.930, 0.931), (0.936, 0.933), (0.927, 0.929)]}


def test_the_page_and_markdown_show_the_paired_comparisons(tmp_path):
    for activation, scores in COMPARED.items():
        for seed, (val_acc, test_acc) in enumerate(scores, start=1):
            fake_run(tmp_path / f"{activation}{seed}", [f"activation={activation}", f"seed={seed}"],
                     choices={"activation": activation}, metrics={"val_acc_best": val_acc, "test_acc": test_acc})
    fake_run(tmp_path / "crashed", ["activation=tanh", "seed=4"], error_log="RuntimeError: out of memory\n")
    (tmp_path / "sweep.yaml").write_text(yaml.safe_dump({"metric": {"name": "val/acc", "goal": "maximize"}}))
    write_report(tmp_path, tmp_path / "report.html")
    page = parse((tmp_path / "report.html").read_text())
    header, *rows = page.rows["comparisons"]
    assert header[:5] == ["family", "A", "B", "pairs", "val_acc_best A − B"] and "test_acc A − B" in header
    assert sorted((row[1], row[2]) for row in rows) == [("gelu", "tanh"), ("relu", "gelu"), ("relu", "tanh")]
    assert {row[3] for row in rows} == {"3"} and {row[header.index("tests in family")] for row in rows} == {"3"}
    verdicts = {(row[1], row[2]): row[header.index("verdict")] for row in rows}
    assert verdicts == {("relu", "tanh"): "relu beats tanh", ("gelu", "tanh"): "no difference shown",
                        ("relu", "gelu"): "no difference shown"}
    assert "Paired by seed" in page.text and "within each family of 3 comparisons" in page.text
    markdown = (tmp_path / "report.md").read_text()
    section = markdown.split("## Paired comparisons")[1].split("##")[0]
    assert "Paired by seed" in section and "not the test set's sampling noise" in section
    assert [line.strip("| ").split(" | ") for line in section.splitlines() if line.startswith("| ")][2:] == rows


def test_the_page_comes_from_the_template(tmp_path):
    fake_run(tmp_path / "runs" / "a", ["seed=1"], metrics={"test_acc": 0.9})
    fake_run(tmp_path / "runs" / "b", ["seed=2"], metrics={"test_acc": 0.8})
    templates = shutil.copytree(report_html.TEMPLATES, tmp_path / "templates")
    template = templates / report_html.TEMPLATE
    marker = "<h2>Runs</h2><p id=marker>edited {{ metric }}</p>"
    template.write_text(template.read_text().replace("<h2>Runs</h2>", marker))
    frame = load_runs(tmp_path / "runs")
    runs = tables.ranked_runs(frame, "test_acc", minimize=False)
    edited = report_html.report_html(tmp_path, frame, runs, "test_acc", False, template_dir=templates)
    assert "<p id=marker>edited test_acc</p>" in edited
    shipped = report_html.report_html(tmp_path, frame, runs, "test_acc", False)
    assert "<p id=marker>" not in shipped and [row[1] for row in parse(shipped).rows["runs"][1:]] == ["a", "b"]


def test_cli_errors_are_one_line(tmp_path, capsys):
    assert main([str(tmp_path / "missing")]) == 1
    assert main([str(tmp_path)]) == 1
    fake_run(tmp_path / "a", ["seed=1"], metrics={"test_acc": 0.9})
    assert main([str(tmp_path), "--metric", "f1"]) == 1
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 3 and all(line.startswith("error: ") for line in lines)
    assert "is not a directory" in lines[0] and "no run directories under" in lines[1]
    assert "--metric f1" in lines[2] and "test_acc" in lines[2]
    assert main([str(tmp_path)]) == 0 and (tmp_path / "report.html").is_file() and (tmp_path / "report.md").is_file()


def test_out_through_a_link_writes_its_target_and_a_folder_pipe_or_loop_is_one_line(tmp_path, capsys):
    runs = tmp_path / "runs"
    fake_run(runs / "a", ["seed=1"], metrics={"test_acc": 0.9})
    target, link = tmp_path / "target.html", tmp_path / "link.html"
    target.write_text("old")
    link.symlink_to(target)
    assert main([str(runs), "--out", str(link)]) == 0
    assert link.is_symlink() and "<html" in target.read_text()  # the link stays, the page is its target
    os.mkfifo(tmp_path / "pipe")
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    refused = {"a folder": (["--out", str(tmp_path)], "not a regular file"),
               "a pipe": (["--out", str(tmp_path / "pipe")], "not a regular file"),
               "a loop as --out": (["--out", str(tmp_path / "loop")], "symbolic link loop"),
               "under a loop": (["--out", str(tmp_path / "loop" / "x.html")], "symbolic link loop")}
    for name, (options, message) in refused.items():
        assert main([str(runs), *options]) == 1, name
        (line,) = capsys.readouterr().err.splitlines()
        assert line.startswith("error: ") and message in line, name
    for below in ("", "x"):
        assert main([str(tmp_path / "loop" / below)]) == 1
        (line,) = capsys.readouterr().err.splitlines()
        assert line.startswith("error: DIR ") and "symbolic link loop" in line
    assert (tmp_path / "pipe").is_fifo()


# ---------------------------------------------------------------------------------------------
# Real runs: slow


@pytest.fixture(scope="module")
def runs_dir(mnist, tmp_path_factory) -> Path:
    """Four real smoke runs (activation x seed, 2 epochs so the curves are lines; two of them name
    data.root, two take it from MNIST_ROOT); a run stopped by a NaN loss (its error in error.log);
    one rejected before training, without status.json; a copy of that with the status.json and
    trial.log mlplab.tools.sweep writes for a failed trial; and an earlier attempt the sweep set aside
    under .previous/, which the report ignores."""
    root = tmp_path_factory.mktemp("report")

    def train(index: int, activation: str, seed: int) -> subprocess.CompletedProcess:
        named_root = [f"data.root={mnist_root()}"] if index < 2 else []
        return run_script("train.py", "+experiment=smoke", "trainer.max_epochs=2", "trainer.log_every_n_steps=5",
                          f"activation={activation}", f"seed={seed}", *named_root,
                          f"hydra.run.dir={root}/sweep/run{index}")

    with ThreadPoolExecutor(max_workers=3) as pool:
        jobs = [pool.submit(train, index, activation, seed) for index, (activation, seed) in enumerate(RUNS)]
        diverged = pool.submit(run_script, "train.py", "+experiment=smoke", "norm=none", "optimizer.lr=1e30",
                               f"hydra.run.dir={root}/diverged")
        crashed = pool.submit(run_script, "train.py", "+experiment=smoke", "dropout.p=1.5",
                              f"hydra.run.dir={root}/crashed")
        for job in jobs:
            assert job.result().returncode == 0, job.result().stderr[-3000:]
    assert diverged.result().returncode != 0 and (root / "diverged" / "error.log").is_file()
    assert crashed.result().returncode != 0 and not (root / "crashed" / "metrics.json").exists()
    shutil.copytree(root / "crashed", root / "failed_trial")
    overrides = ["+experiment=smoke", "dropout.p=1.5"]
    (root / "failed_trial" / "trial.log").write_text(crashed.result().stdout + crashed.result().stderr)
    record = {"trial": "failed_trial", "overrides": overrides, "command": [sys.executable, "train.py", *overrides],
              "pid": 1234, "returncode": crashed.result().returncode, "outcome": "failed",
              "started": "2025-01-01T00:00:00+00:00", "ended": "2025-01-01T00:00:09+00:00",
              "error": failures.error_line(root / "failed_trial", "trial.log")}
    (root / "failed_trial" / "trial.json").write_text(json.dumps(record))
    shutil.copytree(root / "sweep" / "run0", root / "sweep" / ".previous" / "run0.1")
    return root


def run_report(*args: str) -> subprocess.CompletedProcess:
    return run_script("mlplab.tools.report", *args, timeout=120)


@pytest.fixture(scope="module")
def report(runs_dir) -> Path:
    result = run_report(str(runs_dir), "--smoke")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "4 runs, 3 failed, unfinished or smoke checks" in result.stdout
    return runs_dir / "report.html"


class PageParser(HTMLParser):
    """Tables' rows by table id and class, images' sources and alts, and any reference off the page."""

    def __init__(self) -> None:
        super().__init__()
        self.table_id: str | None = None
        self.rows: dict[str, list[list[str]]] = {}
        self.headers: dict[str, list[str]] = {}
        self.images: list[dict[str, str]] = []
        self.charts: list[str] = []
        self.external: list[str] = []
        self.text = ""  # every text of the page, its white space collapsed
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = {name: value or "" for name, value in attrs}
        if tag == "table":
            self.table_id = attributes.get("id")
        elif tag == "tr" and self.table_id:
            self.rows.setdefault(self.table_id, []).append([])
        elif tag in ("td", "th"):
            self._cell = []
        elif tag == "img":
            self.images.append(attributes)
        elif tag == "div" and "chart" in attributes.get("class", "").split():
            self.charts.append(attributes.get("data-title", ""))
        # plotly.js and the page's glue are inlined; nothing may be fetched from elsewhere.
        fetches = tag in ("script", "link", "iframe") and ("src" in attributes or "href" in attributes)
        if fetches or any(re.match(r"(https?:)?//", attributes.get(name, "")) for name in ("src", "href")):
            self.external.append(f"<{tag} {attributes}>")

    def handle_data(self, data: str) -> None:
        self.text += " ".join(data.split()) + " " if data.strip() else ""
        if self._cell is not None:
            self._cell.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None and self.table_id:
            self.rows[self.table_id][-1].append("".join(self._cell).strip())
            self._cell = None
        elif tag == "table":
            self.table_id = None


def without_code(page: str) -> str:
    """The page without its inlined JavaScript (plotly.js holds `${` of its own); data, text and the
    charts' figure JSON kept."""
    return re.sub(r"<script>.*?</script>", "", page, flags=re.DOTALL)


def parse(page: str) -> PageParser:
    parser = PageParser()
    parser.feed(page)
    return parser


def check_page(page: PageParser, runs_dir: Path) -> None:
    """What a reader relies on: one row per run, the finished ones best first, swept columns, the
    failed ones marked as such, embedded charts, failed trials with their error."""
    assert "Swept: activation; 2 seeds per configuration." in page.text
    header, *every_row = page.rows["runs"]
    statuses = {row[1]: row[header.index("status")] for row in every_row}
    assert statuses == {**{f"sweep/run{i}": "finished" for i in range(len(RUNS))},
                        "crashed": "failed", "diverged": "failed", "failed_trial": "failed"}
    rows = every_row[:len(RUNS)]
    assert len(rows) == len(RUNS)
    assert [name for name in header if name in SWEPT] == list(SWEPT)
    metrics = {f"sweep/run{i}": json.loads((runs_dir / "sweep" / f"run{i}" / "metrics.json").read_text())
               for i in range(len(RUNS))}
    assert sorted(row[1] for row in rows) == sorted(metrics)
    ranked = [metrics[row[1]]["test_acc"] for row in rows]
    assert ranked == sorted(ranked, reverse=True)
    for row in rows:
        activation, seed = RUNS[int(row[1].removeprefix("sweep/run"))]
        assert row[header.index("activation")] == activation and row[header.index("seed")] == str(seed)
        assert row[header.index("test_acc")] == f"{metrics[row[1]]['test_acc']:.2%}"
    assert sorted(row[0] for row in page.rows["summary"][1:]) == ["gelu", "relu"]
    assert all(row[1] == "2" and "±" in row[2] for row in page.rows["summary"][1:])
    assert "data.root" not in header and "${" not in "".join(cell for row in page.rows["runs"] for cell in row)
    # The two activations paired by seed: one comparison of 2 pairs, ranked by test_acc (nothing beside it).
    header, comparison = page.rows["comparisons"]
    assert {comparison[1], comparison[2]} == {"gelu", "relu"} and comparison[header.index("pairs")] == "2"
    assert "test_acc A − B" in header and "Holm" in page.text
    header, *failed = page.rows["failed"]
    failed = {row[0]: row for row in failed}
    # train.py refused crashed's config before any work (status failed, the reason in error.log);
    # diverged failed in training.
    assert {label: row[2] for label, row in failed.items()} == {
        "crashed": "failed", "diverged": "failed", "failed_trial": "failed"}
    assert "dropout.p=1.5 is not allowed" in failed["crashed"][3]
    assert failed["crashed"][1] == failed["failed_trial"][1] == "+experiment=smoke dropout.p=1.5"
    # The real error: error.log's last line (the traceback's for the NaN stop, the refusal's for the config).
    assert failed["diverged"][3].startswith("mlplab.run.stops.NonFiniteLossError: training loss became nan")
    assert failed["failed_trial"][3].startswith("exit 1 · ")
    assert "dropout.p=1.5 is not allowed" in failed["failed_trial"][3]

    # Drawn for the page: every image on it is a run's own figure, every chart a Plotly figure of the page.
    assert all(" of sweep/run" in image["alt"] for image in page.images)
    # A seed is a repeat of a configuration, never a parameter with an effect of its own.
    assert {"test_acc by activation", "learning curves", "parallel coordinates"} <= set(page.charts)
    assert not any(title.endswith(" by seed") for title in page.charts)
    saved_figures = [path for name in ("weights.png", "confusion_matrix.png")
                     for path in runs_dir.glob(f"sweep/*/figures/{name}")]
    assert len(saved_figures) == 8  # every run drew both
    # The runs' own figures are linked relative to the page (next to the runs), not embedded.
    linked = [runs_dir / unquote(image["src"]) for image in page.images if " of sweep/run" in image["alt"]]
    assert sorted(linked) == sorted(saved_figures)
    assert page.external == []


@pytest.mark.slow
def test_report_writes_html_and_markdown_with_one_row_per_run(report, runs_dir):
    check_page(parse(report.read_text()), runs_dir)
    markdown = (runs_dir / "report.md").read_text()
    table = [line for line in markdown.splitlines() if re.match(r"\| \d+ \| sweep/run\d ", line)]
    assert len(table) == len(RUNS)
    assert "| # | run | activation | seed | test_acc |" in markdown and "## Failed or unfinished runs" in markdown


@pytest.mark.slow
def test_report_ranks_losses_lowest_first_into_out(runs_dir, tmp_path):
    result = run_report(str(runs_dir), "--smoke", "--metric", "test_loss", "--out", str(tmp_path / "loss.html"))
    assert result.returncode == 0, result.stderr[-3000:]
    header, *rows = parse((tmp_path / "loss.html").read_text()).rows["runs"]
    finished = [row for row in rows if row[header.index("status")] == "finished"]
    assert len(finished) == len(RUNS) and rows[:len(RUNS)] == finished  # ranked first, the failed after
    losses = [float(row[header.index("test_loss")]) for row in finished]
    assert losses == sorted(losses) and (tmp_path / "loss.md").is_file()


@pytest.mark.slow
def test_report_errors_name_the_problem(runs_dir, tmp_path):
    unknown_metric = run_report(str(runs_dir), "--smoke", "--metric", "f1", "--out", str(tmp_path / "x.html"))
    assert unknown_metric.returncode == 1
    assert "--metric f1" in unknown_metric.stderr and "test_acc" in unknown_metric.stderr
    empty = run_report(str(tmp_path))
    assert empty.returncode == 1 and f"no run directories under {tmp_path}" in empty.stderr
    assert "Traceback" not in unknown_metric.stderr + empty.stderr


def chromium() -> str:
    """The Chromium executable; missing fails under CI (install: apt-get install -y chromium) and skips elsewhere."""
    executable = shutil.which("chromium") or shutil.which("chromium-browser")
    if executable is None:
        message = "chromium not installed: apt-get update && apt-get install -y chromium"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return executable


def run_chromium(*args: str, profile: Path) -> subprocess.CompletedProcess:
    return subprocess.run([chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args],
                          capture_output=True, text=True, timeout=120)


@pytest.mark.slow
def test_report_renders_in_headless_chromium(report, runs_dir, tmp_path):
    dom = run_chromium("--dump-dom", report.as_uri(), profile=tmp_path / "profile-dom")
    assert dom.returncode == 0, dom.stderr[-3000:]
    check_page(parse(dom.stdout), runs_dir)

    screenshot = tmp_path / "report.png"
    shot = run_chromium(f"--screenshot={screenshot}", "--window-size=1400,2000", report.as_uri(),
                        profile=tmp_path / "profile-shot")
    assert shot.returncode == 0 and screenshot.is_file(), shot.stderr[-3000:]
    pixels = read_png(screenshot)
    assert pixels.shape[:2] == (2000, 1400) and pixels.std() > 10
    # The page's own style is grey; coloured pixels come only from the charts, so they were decoded and drawn.
    assert coloured_fraction(pixels) > 0.001


def test_activation_statistics_come_from_the_last_epoch_or_not_at_all(tmp_path):
    from mlplab.tools.report.runs import final_statistics

    (tmp_path / "csv").mkdir()
    rows = "epoch,step,activation/layer0/dead_frac,train/loss\n0,10,0.25,\n,12,,0.5\n1,20,0.125,\n"
    (tmp_path / "csv" / "metrics.csv").write_text(rows)
    assert final_statistics(tmp_path, 2) == {"activation/layer0/dead_frac": 0.125}
    (tmp_path / "csv" / "metrics.csv").write_text(rows[: rows.index("1,20")])  # cut before the last epoch
    assert final_statistics(tmp_path, 2) == {}
    (tmp_path / "csv" / "metrics.csv").write_text(rows[: rows.index("1,20")] + "1,20,1.5e-")  # cut inside a number
    assert final_statistics(tmp_path, 2) == {}


@pytest.mark.slow
def test_smoke_checks_are_listed_as_such_and_never_ranked_unless_asked(runs_dir):
    frame = load_runs(runs_dir)
    smoke = frame[frame["status"] == "smoke check"]
    assert len(smoke) == 4 and all(detail.startswith("smoke check only: trainer.limit_train_batches=20")
                                   for detail in smoke["detail"])
    assert (load_runs(runs_dir, smoke=True)["status"] == "finished").sum() == 4
