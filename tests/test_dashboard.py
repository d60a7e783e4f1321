"""The report page as a dashboard, driven in a real headless Chromium through selenium: a real
offline sweep's page sorted, filtered and switched to another metric; several folders on one page;
a sweep's own metric as the ranking; `--watch` while a run runs; curves thinned for hundreds of runs.

Fast tests fabricate the records they are about; the sweep is real (tiny smoke trials on MNIST).
Under CI (CI=true) a missing chromium or chromedriver fails the browser tests instead of skipping them.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from selenium import webdriver
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select

from helpers import REPO, run_script, script_env, start_script, wait_until
from mlplab.tools.report import MAX_POINTS, write_report

CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
# SwiftShader draws WebGL (the parallel coordinates) without a GPU.
BROWSER_FLAGS = ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1000",
                 "--enable-unsafe-swiftshader", "--use-angle=swiftshader")
DROPOUTS, SEEDS = (0.0, 0.2), (1, 2)
RUNS_TITLE = "runs (click to show)"  # the legend's title above the runs' entries


# ---------------------------------------------------------------------------------------------
# The browser


@pytest.fixture(scope="module")
def browser():
    """Headless Chromium under chromedriver; missing, it fails under CI and skips elsewhere."""
    missing = [str(path) for path in (CHROMIUM, CHROMEDRIVER) if not path.is_file()]
    if missing:
        message = f"{' and '.join(missing)} not found: apt-get update && apt-get install -y chromium chromium-driver"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in BROWSER_FLAGS:
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(str(CHROMEDRIVER)))
    yield driver
    driver.quit()


def curves_drawn(browser, after_reload: bool = False) -> bool:
    """Whether the curves chart is drawn (on a page loaded since `window.beforeReload` was set)."""
    fresh = "window.beforeReload === undefined && " if after_reload else ""
    try:
        return browser.execute_script(f"return {fresh}document.querySelectorAll('#curves .main-svg').length > 0")
    except WebDriverException:  # asked while a page reloading itself was unloading
        return False


def open_page(browser, page: Path) -> None:
    """Load the page from disk and wait until its curves are drawn; no script may have failed."""
    browser.get(page.as_uri())
    assert wait_until(lambda: curves_drawn(browser), 60), "the curves were never drawn"
    errors = [entry["message"] for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]
    assert errors == []


def wait_for_reload(browser) -> None:
    """Wait until the page has reloaded itself (its meta refresh) and drawn its curves again."""
    browser.execute_script("window.beforeReload = true")
    assert wait_until(lambda: curves_drawn(browser, after_reload=True), 30), "the page did not reload itself"


def column(browser, table: str, name: str, visible_only: bool = True) -> list[str]:
    """The text of one column of a table on the page, rows in the order shown."""
    return browser.execute_script("""
        const [table, name, visibleOnly] = arguments;
        const element = document.getElementById(table);
        const index = Array.from(element.tHead.rows[0].cells)
            .findIndex(cell => cell.querySelector('button').textContent === name);
        return Array.from(element.tBodies[0].rows).filter(row => !visibleOnly || !row.hidden)
            .map(row => row.cells[index].textContent.trim());""", table, name, visible_only)


def header_button(browser, table: str, name: str):
    return browser.find_element(By.XPATH, f"//table[@id='{table}']//th/button[text()='{name}']")


def filter_box(browser, table: str, name: str):
    return browser.find_element(By.XPATH, f"//table[@id='{table}']//th[button[text()='{name}']]/input")


def curves(browser) -> dict:
    """What the curves chart shows now: its title, y axis, the names of its visible lines (means and
    runs shown), of its hidden runs, and the text of its legend's entries (its title for the runs apart)."""
    return browser.execute_script("""
        const chart = document.getElementById('curves');
        const run = t => t.showlegend === false && t.fill !== 'toself';
        return {title: chart.layout.title.text, y: chart.layout.yaxis.title.text,
                shown: chart.data.filter(t => t.visible !== 'legendonly' && t.fill !== 'toself'
                                              && !(t.x.length === 1 && t.x[0] === null)).map(t => t.name),
                hidden: chart.data.filter(t => t.visible === 'legendonly' && run(t)).map(t => t.name),
                legend: Array.from(chart.querySelectorAll('.legend .traces .legendtext')).map(e => e.textContent)
                    .filter(text => text !== arguments[0])};""", RUNS_TITLE)


# ---------------------------------------------------------------------------------------------
# A real sweep


@pytest.fixture(scope="module")
def sweep_page(mnist, tmp_path_factory) -> Path:
    """An offline grid sweep of dropout.p (0.0, 0.2, and 1.5, which train.py refuses) x 2 seeds, smoke-sized
    and 2 epochs, its page ranked by the sweep's own metric."""
    root = tmp_path_factory.mktemp("dashboard")
    sweep_file = root / "tiny.yaml"
    sweep_file.write_text(yaml.safe_dump({
        "program": "train.py", "method": "grid", "metric": {"name": "val/acc", "goal": "maximize"},
        "parameters": {"dropout.p": {"values": [*DROPOUTS, 1.5]}, "seed": {"values": list(SEEDS)}},
        "command": ["${env}", "${interpreter}", "${program}", "+experiment=smoke", "trainer.max_epochs=2",
                    "trainer.log_every_n_steps=5", "${args_no_hyphens}"]}))
    sweep_dir = root / "sweep"
    launched = subprocess.run([sys.executable, "-m", "mlplab.tools.sweep", str(sweep_file), "--offline",
                               "--agents", "2",
                               "--stagger", "0", "--sweep-dir", str(sweep_dir), "--program-root", str(REPO)],
                              env=script_env(), capture_output=True, text=True, timeout=600)
    assert "4 finished, 2 failed" in launched.stdout, launched.stdout[-3000:] + launched.stderr[-3000:]
    result = run_script("mlplab.tools.report", str(sweep_dir), "--smoke", timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "4 runs, 2 failed" in result.stdout
    return sweep_dir / "report.html"


def metrics_by_run(page: Path) -> dict[str, dict]:
    return {path.parent.name: json.loads(path.read_text()) for path in page.parent.glob("*/metrics.json")}


@pytest.mark.slow
def test_a_sweeps_page_sorts_filters_and_switches_the_metric_in_chromium(browser, sweep_page, tmp_path):
    open_page(browser, sweep_page)
    metrics = metrics_by_run(sweep_page)
    # Ranked by the sweep's metric (val/acc: the best epoch's), the test metric beside it; failed runs after.
    assert column(browser, "runs", "status") == ["finished"] * 4 + ["failed"] * 2
    ranked = [metrics[run]["val_acc_best"] for run in column(browser, "runs", "run")[:4]]
    assert ranked == sorted(ranked, reverse=True)
    assert column(browser, "runs", "test_acc")[:4] == [f"{metrics[run]['test_acc']:.2%}"
                                                       for run in column(browser, "runs", "run")[:4]]

    header_button(browser, "runs", "test_loss").click()
    losses = [float(text) for text in column(browser, "runs", "test_loss")[:4]]
    assert losses == sorted(losses) and column(browser, "runs", "test_loss")[4:] == ["—", "—"]  # no value: last
    header_button(browser, "runs", "test_loss").click()
    assert [float(text) for text in column(browser, "runs", "test_loss")[:4]] == sorted(losses, reverse=True)

    filter_box(browser, "runs", "status").send_keys("fail")
    assert column(browser, "runs", "status") == ["failed", "failed"]
    assert column(browser, "runs", "dropout.p") == ["1.5", "1.5"]
    filter_box(browser, "runs", "status").clear()
    filter_box(browser, "runs", "status").send_keys("finished")
    filter_box(browser, "runs", "dropout.p").send_keys("=0.2")
    assert column(browser, "runs", "dropout.p") == ["0.2", "0.2"]
    assert sorted(column(browser, "runs", "seed")) == ["1", "2"]
    assert browser.find_element("id", "runs-count").text == "2 of 6 shown"

    # The sweep's metric is the curve shown first: per configuration its mean over the seeds, the runs hidden.
    shown = curves(browser)
    assert shown["y"] == "val/acc" and sorted(shown["shown"]) == [f"dropout.p={p}" for p in DROPOUTS]
    assert len(shown["hidden"]) == 4
    assert sorted(shown["legend"]) == sorted([f"dropout.p={p}" for p in DROPOUTS]
                                             + [f"dropout.p={p} · 2 runs" for p in DROPOUTS])
    # Seeds are repeats of a configuration, not a parameter.
    assert "Swept: dropout.p; 2 seeds per configuration." in browser.find_element(By.TAG_NAME, "body").text
    Select(browser.find_element("id", "curve-metric")).select_by_visible_text("train/loss")
    assert wait_until(lambda: curves(browser)["y"] == "train/loss", 10)
    assert curves(browser)["title"] == "train/loss by step" and len(curves(browser)["hidden"]) == 4
    # Each run on demand: the legend entry of one run shows it.
    run = column(browser, "runs", "run")[0]
    browser.execute_script("""const chart = document.getElementById('curves');
        Plotly.restyle(chart, {visible: true}, [chart.data.findIndex(t => t.name === arguments[0])]);""", run)
    assert run in curves(browser)["shown"]

    assert browser.execute_script("return document.querySelectorAll('#parallel .parcoords').length") == 1
    effects = browser.execute_script(
        "return Array.from(document.querySelectorAll('.effects .chart')).map(chart => chart.dataset.title)")
    assert effects == ["val_acc_best by dropout.p"]
    assert parallel_axes(browser) == ["dropout.p", "val_acc_best"]

    # A run's weights load only when its figures are opened.
    image = browser.find_element("css selector", "details.run img")
    assert browser.execute_script("return arguments[0].naturalWidth", image) == 0
    browser.find_element("css selector", "details.run summary").click()
    assert wait_until(lambda: browser.execute_script("return arguments[0].naturalWidth", image) > 0, 10)

    screenshot = tmp_path / "dashboard.png"
    assert browser.save_screenshot(str(screenshot)) and screenshot.stat().st_size > 10_000


def parallel_axes(browser) -> list[str]:
    return browser.execute_script("return document.getElementById('parallel').data[0].dimensions.map(d => d.label)")


# ---------------------------------------------------------------------------------------------
# Fabricated records


def fabricated_run(directory: Path, overrides: dict, metrics: dict | None, steps: int = 40,
                   status: str = "finished", pid: int | None = None, epochs: int = 2, loss_scale: float = 2.0) -> Path:
    """A run directory as train.py leaves it: .hydra/, status.json, csv/metrics.csv with train/loss per
    step and val/acc per epoch, metrics.json once finished."""
    hydra = directory / ".hydra"
    hydra.mkdir(parents=True)
    (hydra / "overrides.yaml").write_text(yaml.safe_dump([f"{key}={value}" for key, value in overrides.items()]))
    (hydra / "config.yaml").write_text(yaml.safe_dump({"seed": 0}))
    (directory / "csv").mkdir()
    per_epoch = max(1, steps // epochs)
    lines = ["epoch,step,train/loss,val/acc"]
    lines += [f",{step},{loss_scale / (1 + step / 10):.6g}," for step in range(1, steps + 1)]
    lines += [f"{epoch},{(epoch + 1) * per_epoch - 1},,{0.8 + 0.01 * epoch}" for epoch in range(epochs)]
    (directory / "csv" / "metrics.csv").write_text("\n".join(lines) + "\n")
    record = {"status": status, "pid": pid or 1, "host": socket.gethostname()}
    (directory / "status.json").write_text(json.dumps(record))
    if metrics is not None:
        (directory / "metrics.json").write_text(json.dumps({"epochs": epochs, "global_steps": steps, **metrics}))
    return directory


def test_several_folders_compare_on_one_page_with_each_runs_origin(tmp_path):
    for folder, lr in (("first", 0.1), ("second", 0.01)):
        for seed in SEEDS:
            fabricated_run(tmp_path / folder / f"run{seed}", {"optimizer.lr": lr, "seed": seed},
                           {"test_acc": 0.9 + lr, "val_acc_best": 0.9})
    result = run_script("mlplab.tools.report", str(tmp_path / "first"), str(tmp_path / "second"),
                        "--out", str(tmp_path / "both.html"), timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    page = (tmp_path / "both.html").read_text()
    markdown = (tmp_path / "both.md").read_text()
    for label in ("first/run1", "first/run2", "second/run1", "second/run2"):
        assert f">{label}<" in page and f"| {label} |" in markdown
    assert "| 1 | first/run1 | 0.1 | 1 |" in markdown  # ranked across both folders, lr swept between them


def ranked_in_markdown(path: Path) -> list[str]:
    """The runs of report.md's runs table, in their rank order."""
    return [line.split(" | ")[1] for line in path.read_text().splitlines() if line.split(" | ")[0][2:].isdigit()]


def test_a_sweep_dir_ranks_by_its_own_metric_and_goal_unless_told(tmp_path):
    losses = {"a": 0.3, "b": 0.1, "c": 0.2}
    for name, loss in losses.items():
        fabricated_run(tmp_path / name, {"optimizer.lr": loss}, {"test_loss": loss, "test_acc": 1 - loss,
                                                                 "val_acc_best": loss})
    (tmp_path / "sweep.yaml").write_text(yaml.safe_dump({"metric": {"name": "test/loss", "goal": "minimize"}}))
    write_report(tmp_path, tmp_path / "report.html")
    assert ranked_in_markdown(tmp_path / "report.md") == ["b", "c", "a"]
    assert "Ranking: the sweep&#39;s metric test/loss, to minimize." in (tmp_path / "report.html").read_text()
    (tmp_path / "sweep.yaml").write_text(yaml.safe_dump({"metric": {"name": "val/acc", "goal": "maximize"}}))
    write_report(tmp_path, tmp_path / "report.html")
    assert ranked_in_markdown(tmp_path / "report.md") == ["a", "c", "b"]  # val/acc is val_acc_best, highest first
    write_report(tmp_path, tmp_path / "report.html", "test_acc")  # --metric wins over the sweep's
    assert ranked_in_markdown(tmp_path / "report.md") == ["b", "c", "a"]


def decoded(array) -> np.ndarray:
    """An array of a figure's JSON: a list, or Plotly's typed array (base64 bytes and their dtype)."""
    if isinstance(array, dict):
        return np.frombuffer(base64.b64decode(array["bdata"]), dtype=array["dtype"])
    return np.asarray(array)


def curve_figures(page: str) -> list[dict]:
    """The curves' figures embedded in the page, one per metric."""
    return [json.loads(part.split(">", 1)[1].split("</script>", 1)[0])
            for part in page.split('<script type="application/json" id="curves-')[1:]]


def test_curves_are_thinned_and_averaged_over_seeds(tmp_path):
    for seed in range(1, 4):
        fabricated_run(tmp_path / f"run{seed}", {"seed": seed}, {"test_acc": 0.9}, steps=5000,
                       loss_scale=1.9 + seed / 10)
    write_report(tmp_path, tmp_path / "report.html")
    page = (tmp_path / "report.html").read_text()
    figures = {figure["layout"]["yaxis"]["title"]["text"]: figure["data"] for figure in curve_figures(page)}
    assert sorted(figures) == ["train/loss", "val/acc"]
    loss = figures["train/loss"]
    assert all(len(decoded(trace["x"])) <= 2 * MAX_POINTS for trace in loss)  # a band: its upper and lower edge
    mean = next(trace for trace in loss if trace["name"] == "all runs")
    members = [trace for trace in loss if trace.get("visible") == "legendonly" and trace.get("showlegend") is False]
    assert len(members) == 3 and all(len(decoded(trace["x"])) == MAX_POINTS for trace in members)
    assert decoded(mean["x"])[[0, -1]].tolist() == decoded(members[0]["x"])[[0, -1]].tolist() == [1, 5000]
    # The mean of the three seeds' losses (scaled 2.0, 2.1, 2.2) at the first and last step, from the full curves.
    assert decoded(mean["y"])[[0, -1]] == pytest.approx([2.1 / 1.1, 2.1 / 501], rel=1e-5)
    assert len(page) < 6_000_000
    assert run_script("mlplab.tools.report", str(tmp_path), "--points", "10", timeout=120).returncode == 0
    page = (tmp_path / "report.html").read_text()
    loss = next(figure for figure in curve_figures(page) if figure["layout"]["yaxis"]["title"]["text"] == "train/loss")
    assert max(len(decoded(trace["x"])) for trace in loss["data"] if trace.get("fill") != "toself") == 10


ACTIVATIONS, RATES, MANY_SEEDS = ("relu", "gelu", "tanh", "elu", "silu"), (0.1, 0.01), (1, 2, 3, 4, 5)
GRID = [(activation, lr, seed) for activation in ACTIVATIONS for lr in RATES for seed in MANY_SEEDS]
NOISE = np.random.default_rng(0).integers(0, 20, len(GRID)) / 10_000  # seed-to-seed, for the paired t-tests


@pytest.fixture(scope="module")
def fifty_runs(tmp_path_factory) -> Path:
    """The page of a fabricated 50-run sweep: 5 activations x 2 learning rates x 5 seeds, 2 epochs, 6 steps
    (few enough epochs and steps that Plotly's own ticks would fall between them)."""
    root = tmp_path_factory.mktemp("fifty")
    for index, (activation, lr, seed) in enumerate(GRID):
        fabricated_run(root / f"{index:02d}", {"activation": activation, "optimizer.lr": lr, "seed": seed},
                       {"test_acc": 0.9 + lr - seed / 1000 + NOISE[index], "val_acc_best": 0.9},
                       steps=6, loss_scale=1 + seed / 10)
    write_report(root, root / "report.html")
    return root / "report.html"


def config_name(activation: str, lr: float) -> str:
    return f"activation={activation} optimizer.lr={lr}"


@pytest.mark.slow
def test_seeds_are_grouped_never_a_parameter_in_chromium(browser, fifty_runs):
    open_page(browser, fifty_runs)
    assert "Swept: activation, optimizer.lr; 5 seeds per configuration." in browser.find_element(By.TAG_NAME,
                                                                                                 "body").text
    effects = browser.execute_script(
        "return Array.from(document.querySelectorAll('.effects .chart')).map(chart => chart.dataset.title)")
    assert effects == ["test_acc by activation", "test_acc by optimizer.lr"]
    assert parallel_axes(browser) == ["activation", "optimizer.lr", "test_acc"]
    assert len(column(browser, "summary", "runs")) == len(ACTIVATIONS) * len(RATES)
    # Paired by seed: every pair of the 5 activations at each rate (2 x 10), each activation's 2 rates (5 x 1).
    assert len(column(browser, "comparisons", "pairs")) == 25 and set(column(browser, "comparisons", "pairs")) == {"5"}
    header_button(browser, "comparisons", "test_acc A − B").click()
    differences = [float(text.removesuffix(" pp")) for text in column(browser, "comparisons", "test_acc A − B")]
    assert differences == sorted(differences) and differences[-1] >= 9  # lr 0.1 is ~9 pp above 0.01
    filter_box(browser, "comparisons", "family").send_keys("lr · activation")  # the lr families
    assert column(browser, "comparisons", "tests in family") == ["1"] * 5
    assert all(verdict.endswith("beats 0.01") for verdict in column(browser, "comparisons", "verdict"))
    assert browser.find_element("id", "comparisons-count").text == "5 of 25 shown"


def x_ticks(browser) -> list[str]:
    return browser.execute_script(
        "return Array.from(document.querySelectorAll('#curves .xtick text')).map(tick => tick.textContent)")


@pytest.mark.slow
def test_epochs_and_steps_are_ticked_on_whole_numbers_in_chromium(browser, fifty_runs):
    open_page(browser, fifty_runs)
    for metric, x_name in (("val/acc", "epoch"), ("train/loss", "step")):
        Select(browser.find_element("id", "curve-metric")).select_by_visible_text(metric)
        assert wait_until(lambda: curves(browser)["title"] == f"{metric} by {x_name}", 10)
        # Zoomed in to less than one epoch or step too, no tick falls between two.
        for zoom in (None, [0.1, 1.9]):
            if zoom:
                browser.execute_script("Plotly.relayout('curves', {'xaxis.range': arguments[0]})", zoom)
            ticks = x_ticks(browser)
            assert len(ticks) >= 1 and all(tick.isdigit() for tick in ticks), (metric, zoom, ticks)
        assert "1" in x_ticks(browser)


def click_legend(browser, text: str) -> None:
    entry = next(entry for entry in browser.find_elements(By.CSS_SELECTOR, "#curves .legend .traces")
                 if entry.find_element(By.CSS_SELECTOR, ".legendtext").text == text)
    entry.find_element(By.CSS_SELECTOR, ".legendtoggle").click()


@pytest.mark.slow
def test_a_50_run_sweep_has_two_legend_entries_per_configuration_in_chromium(browser, fifty_runs):
    configurations = len(ACTIVATIONS) * len(RATES)
    for figure in curve_figures(fifty_runs.read_text()):
        assert sum(trace.get("showlegend") is not False for trace in figure["data"]) <= 2 * configurations
    open_page(browser, fifty_runs)
    legend = curves(browser)["legend"]
    assert len(legend) == 2 * configurations and len(curves(browser)["hidden"]) == 50
    names = [config_name(activation, lr) for activation in ACTIVATIONS for lr in RATES]
    assert sorted(legend) == sorted(names + [f"{name} · 5 runs" for name in names])
    # One configuration's runs on demand: a click on its runs entry shows them, and only them.
    first = f"{config_name(ACTIVATIONS[0], RATES[0])} · 5 runs"
    click_legend(browser, first)
    assert wait_until(lambda: len(curves(browser)["hidden"]) == 45, 10)
    members = browser.execute_script("""const chart = document.getElementById('curves');
        return chart.data.filter(t => t.showlegend === false && t.visible === true).map(t => t.name)""")
    assert sorted(members) == [f"{index:02d}" for index, (activation, lr, _) in enumerate(GRID)
                               if (activation, lr) == (ACTIVATIONS[0], RATES[0])]
    click_legend(browser, first)
    assert wait_until(lambda: len(curves(browser)["hidden"]) == 50, 10)
    # Every run at once: the buttons.
    buttons = browser.find_elements(By.CSS_SELECTOR, "#curves .updatemenu-button")
    next(button for button in buttons if button.text == "runs shown").click()
    assert wait_until(lambda: curves(browser)["hidden"] == [] and len(curves(browser)["shown"]) == 60, 10)


def watched(tmp_path: Path) -> tuple[Path, subprocess.Popen]:
    """A folder with one finished run and one running (a live process stands for its train.py), watched every second."""
    fabricated_run(tmp_path / "done", {"seed": 1}, {"test_acc": 0.9})
    stand_in = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    fabricated_run(tmp_path / "live", {"seed": 2}, None, steps=10, status="running", pid=stand_in.pid)
    return tmp_path / "report.html", stand_in


@pytest.mark.slow
def test_watch_rewrites_the_page_while_a_run_runs_then_stops(browser, tmp_path):
    page, stand_in = watched(tmp_path)
    watcher = start_script("mlplab.tools.report", str(tmp_path), "--watch", "--every", "3")
    try:
        assert wait_until(page.is_file, 60), watcher.communicate()[1][-3000:] if watcher.poll() is not None else ""
        assert '<meta http-equiv="refresh" content="3">' in page.read_text()
        open_page(browser, page)
        wait_for_reload(browser)  # then act within one period, between two reloads
        assert sorted(column(browser, "runs", "status")) == ["finished", "running"]
        assert "live (running)" in curves(browser)["hidden"]
        # What the reader picked survives the page's reloads.
        Select(browser.find_element("id", "curve-metric")).select_by_visible_text("train/loss")
        filter_box(browser, "runs", "status").send_keys("run")
        wait_for_reload(browser)
        assert curves(browser)["y"] == "train/loss" and column(browser, "runs", "status") == ["running"]
        first = page.stat().st_mtime_ns
        assert wait_until(lambda: page.stat().st_mtime_ns != first, 30)  # rewritten while it runs
        stand_in.kill()
        stand_in.wait()
        (tmp_path / "live" / "status.json").write_text(json.dumps({"status": "finished"}))
        (tmp_path / "live" / "metrics.json").write_text(json.dumps({"epochs": 2, "global_steps": 10, "test_acc": 0.8}))
        out, err = watcher.communicate(timeout=60)
    finally:
        stand_in.kill()
        watcher.kill()
    assert watcher.returncode == 0, err[-3000:]
    assert "http-equiv" not in page.read_text() and "2 runs, 0 failed" in out.splitlines()[-1]


@pytest.mark.slow
def test_ctrl_c_stops_watching_with_130_and_leaves_the_page_whole(tmp_path):
    page, stand_in = watched(tmp_path)
    watcher = start_script("mlplab.tools.report", str(tmp_path), "--watch", "--every", "1")
    try:
        assert wait_until(page.is_file, 60)
        time.sleep(1.5)
        watcher.send_signal(signal.SIGINT)
        _, err = watcher.communicate(timeout=60)
    finally:
        stand_in.kill()
        watcher.kill()
    assert watcher.returncode == 130 and "Traceback" not in err
    assert page.read_text().rstrip().endswith("</html>")
    assert not list(tmp_path.glob(".report.html.*"))  # no temporary file left behind
