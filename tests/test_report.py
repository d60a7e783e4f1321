"""End to end: real tiny train.py runs, `python -m mlplab.report` over them, the page rendered in headless Chromium."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from html.parser import HTMLParser
from pathlib import Path

import pytest
from matplotlib.image import imread

from conftest import REPO, run_script

SWEPT = ("activation", "seed")
RUNS = [("relu", 1), ("gelu", 1), ("relu", 2), ("gelu", 2)]
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def runs_dir(mnist, tmp_path_factory) -> Path:
    """Four real smoke runs (activation x seed, 2 epochs so the curves are lines); one crashed run
    without status.json; a copy of it with the status.json and trial.log mlplab.sweep writes for a failed
    trial; and an earlier attempt the sweep set aside under .previous/, which the report ignores."""
    root = tmp_path_factory.mktemp("report")

    def train(index: int, activation: str, seed: int) -> subprocess.CompletedProcess:
        return run_script("train.py", "+experiment=smoke", "trainer.max_epochs=2", "trainer.log_every_n_steps=5",
                          f"activation={activation}", f"seed={seed}", f"hydra.run.dir={root}/sweep/run{index}")

    with ThreadPoolExecutor(max_workers=2) as pool:
        jobs = [pool.submit(train, index, activation, seed) for index, (activation, seed) in enumerate(RUNS)]
        crashed = pool.submit(run_script, "train.py", "+experiment=smoke", "dropout.p=1.5",
                              f"hydra.run.dir={root}/crashed")
        for job in jobs:
            assert job.result().returncode == 0, job.result().stderr[-3000:]
    assert crashed.result().returncode != 0 and not (root / "crashed" / "metrics.json").exists()
    shutil.copytree(root / "crashed", root / "failed_trial")
    overrides = ["+experiment=smoke", "dropout.p=1.5"]
    status = {"status": "failed", "returncode": crashed.result().returncode, "overrides": overrides,
              "command": [sys.executable, "train.py", *overrides], "started": "2025-01-01T00:00:00+00:00"}
    (root / "failed_trial" / "status.json").write_text(json.dumps(status))
    (root / "failed_trial" / "trial.log").write_text(crashed.result().stdout + crashed.result().stderr)
    shutil.copytree(root / "sweep" / "run0", root / "sweep" / ".previous" / "run0.1")
    return root


def run_report(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mlplab.report", *args],
                          cwd=REPO, capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def report(runs_dir) -> Path:
    result = run_report(str(runs_dir))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "4 runs, 2 failed or unfinished" in result.stdout
    return runs_dir / "report.html"


class PageParser(HTMLParser):
    """Tables' rows by table id and class, images' sources and alts, and any reference off the page."""

    def __init__(self) -> None:
        super().__init__()
        self.table_id: str | None = None
        self.rows: dict[str, list[list[str]]] = {}
        self.headers: dict[str, list[str]] = {}
        self.images: list[dict[str, str]] = []
        self.external: list[str] = []
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
        if tag in ("script", "link", "iframe") or any(re.match(r"(https?:)?//", attributes.get(name, ""))
                                                      for name in ("src", "href")):
            self.external.append(f"<{tag} {attributes}>")

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None and self.table_id:
            self.rows[self.table_id][-1].append("".join(self._cell).strip())
            self._cell = None
        elif tag == "table":
            self.table_id = None


def parse(page: str) -> PageParser:
    parser = PageParser()
    parser.feed(page)
    return parser


def check_page(page: PageParser, runs_dir: Path) -> None:
    """What a reader relies on: one row per run, best first, swept columns, embedded charts, failed trials."""
    header, *rows = page.rows["runs"]
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
    header, *failed = page.rows["failed"]
    assert sorted((row[0], row[2]) for row in failed) == [("crashed", "no metrics.json"), ("failed_trial", "failed")]
    assert all(row[1] == "+experiment=smoke dropout.p=1.5" for row in failed)
    assert "exit 1" in failed[1][3] and "dropout.p=1.5 is not allowed" in failed[1][3]

    assert all(image["src"].startswith("data:image/png;base64,") for image in page.images)
    alts = [image["alt"] for image in page.images]
    assert {"test_acc by activation", "test_acc by seed", "learning curves"} <= set(alts)
    assert len(page.images) >= len(SWEPT) + 1
    saved_figures = [p for name in ("weights.png", "confusion_matrix.png") for p in runs_dir.glob(f"sweep/*/figures/{name}")]
    assert len(saved_figures) == 8  # every run drew both
    assert sum(" of sweep/run" in alt for alt in alts) == len(saved_figures)
    assert page.external == []


def test_report_writes_html_and_markdown_with_one_row_per_run(report, runs_dir):
    check_page(parse(report.read_text()), runs_dir)
    markdown = (runs_dir / "report.md").read_text()
    table = [line for line in markdown.splitlines() if re.match(r"\| \d+ \| sweep/run\d ", line)]
    assert len(table) == len(RUNS)
    assert "| # | run | activation | seed | test_acc |" in markdown and "## Failed or unfinished runs" in markdown


def test_report_ranks_losses_lowest_first_into_out(runs_dir, tmp_path):
    result = run_report(str(runs_dir), "--metric", "test_loss", "--out", str(tmp_path / "loss.html"))
    assert result.returncode == 0, result.stderr[-3000:]
    header, *rows = parse((tmp_path / "loss.html").read_text()).rows["runs"]
    losses = [float(row[header.index("test_loss")]) for row in rows]
    assert losses == sorted(losses) and (tmp_path / "loss.md").is_file()


def test_report_errors_name_the_problem(runs_dir, tmp_path):
    unknown_metric = run_report(str(runs_dir), "--metric", "f1", "--out", str(tmp_path / "x.html"))
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


def test_report_renders_in_headless_chromium(report, runs_dir, tmp_path):
    dom = run_chromium("--dump-dom", report.as_uri(), profile=tmp_path / "profile-dom")
    assert dom.returncode == 0, dom.stderr[-3000:]
    check_page(parse(dom.stdout), runs_dir)

    screenshot = tmp_path / "report.png"
    shot = run_chromium(f"--screenshot={screenshot}", "--window-size=1400,2000", report.as_uri(),
                        profile=tmp_path / "profile-shot")
    assert shot.returncode == 0 and screenshot.is_file(), shot.stderr[-3000:]
    pixels = imread(screenshot)[..., :3]
    assert pixels.shape[:2] == (2000, 1400) and pixels.std() > 0.05
    # The page's own style is grey; coloured pixels come only from the charts, so they were decoded and drawn.
    colourful = (pixels.max(axis=-1) - pixels.min(axis=-1)) > 0.3
    assert colourful.mean() > 0.001
