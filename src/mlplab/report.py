"""Review finished training runs without a server: one self-contained HTML page and a Markdown table.

`python -m mlplab.report DIR [--metric test_acc] [--out DIR/report.html]` finds every run directory
under DIR (a directory holding `metrics.json`, as `train.py` writes), reads its metrics, Hydra
overrides, CSV learning curves and figures, and writes `report.html` (every image embedded as a
base64 PNG: it opens anywhere, offline) and `report.md` next to it. Trials that failed (the
`status.json` of `mlplab.sweep` says so, or train.py left no metrics.json) get a section of their own.

What lives here, top to bottom: reading runs (`Run`, `FailedRun`, `find_runs`), comparing them
(`swept_keys`, `summarize`), formatting values, drawing charts with matplotlib's Agg canvas,
rendering HTML and Markdown, and the command line.
"""

from __future__ import annotations

import argparse
import base64
import csv
import html
import io
import json
import math
import statistics
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from hydra.core.override_parser.overrides_parser import OverridesParser
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator, PercentFormatter

from mlplab.errors import UserError

# The metrics.json keys shown in the runs table after the chosen metric, in this order.
METRIC_COLUMNS = ("test_acc", "test_loss", "val_acc_best", "epochs", "global_steps", "fit_seconds")
MISSING = "—"
DELETED = "(deleted)"
FIGURE_FILES = {"weights": "figures/weights.png", "confusion matrix": "figures/confusion_matrix.png"}


# ---------------------------------------------------------------------------------------------
# Reading runs
# ---------------------------------------------------------------------------------------------


@dataclass
class Run:
    """One finished training run: its directory, metrics.json, overrides and learning curves."""

    path: Path
    label: str
    metrics: dict[str, Any]
    overrides: dict[str, Any]
    override_lines: dict[str, str]
    curves: dict[str, list[tuple[float, float]]]
    figures: dict[str, Path]
    # Every override key's value for this run, filled in from the resolved config where the
    # run did not override it, so runs can be compared on keys only some of them set.
    params: dict[str, Any] = field(default_factory=dict)


@dataclass
class FailedRun:
    """A trial without a usable result: status.json says other than finished, or there is no metrics.json."""

    path: Path
    label: str
    status: str
    detail: str
    override_lines: list[str]


def read_overrides(run_dir: Path) -> tuple[dict[str, Any], dict[str, str]]:
    """The run's command-line overrides from .hydra/overrides.yaml, hydra.* left out:
    {key: typed value} (parsed by Hydra's own grammar) and {key: the override as typed}."""
    path = run_dir / ".hydra" / "overrides.yaml"
    lines = (yaml.safe_load(path.read_text()) or []) if path.is_file() else []
    values, typed = {}, {}
    for override in OverridesParser.create().parse_overrides(lines):
        if override.key_or_group.startswith(("hydra.", "hydra/")):
            continue
        values[override.key_or_group] = DELETED if override.is_delete() else override.value()
        typed[override.key_or_group] = override.input_line
    return values, typed


def read_yaml(path: Path) -> dict[str, Any]:
    """A yaml mapping, or {} when the file is missing."""
    return (yaml.safe_load(path.read_text()) or {}) if path.is_file() else {}


def config_values(run_dir: Path, keys: Sequence[str]) -> dict[str, Any]:
    """What each key was in a run that did not override it: the group option chosen, else the resolved value."""
    choices = read_yaml(run_dir / ".hydra" / "hydra.yaml").get("hydra", {}).get("runtime", {}).get("choices", {})
    config = read_yaml(run_dir / ".hydra" / "config.yaml")
    return {key: choices[key] if key in choices else dotted_value(config, key) for key in keys}


def dotted_value(config: dict[str, Any], key: str) -> Any:
    """config["a"]["b"] for key "a.b"; MISSING when absent."""
    node: Any = config
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return MISSING
        node = node[part]
    return node


def read_curves(run_dir: Path) -> dict[str, list[tuple[float, float]]]:
    """From csv/metrics.csv: val/acc by epoch, train/loss by step (per interval, else per epoch)."""
    path = run_dir / "csv" / "metrics.csv"
    if not path.is_file():
        return {}
    with path.open(newline="") as file:
        rows = list(csv.DictReader(file))

    def series(column: str, x_column: str) -> list[tuple[float, float]]:
        return [(float(row[x_column]), float(row[column])) for row in rows if row.get(column) and row.get(x_column)]

    return {
        "val/acc": series("val/acc", "epoch"),
        "train/loss": series("train/loss", "step") or series("train/loss_epoch", "step"),
    }


def is_eval_output(metrics: dict[str, Any]) -> bool:
    """eval.py also writes metrics.json (ckpt_path, test_acc, test_loss); those are not training runs."""
    return "ckpt_path" in metrics and "epochs" not in metrics


def relative_label(path: Path, root: Path) -> str:
    """The run directory relative to DIR, as the report names it."""
    relative = path.relative_to(root).as_posix()
    return root.name if relative == "." else relative


def read_run(run_dir: Path, root: Path) -> Run:
    """Everything the report shows about one run directory."""
    figures = {name: run_dir / file for name, file in FIGURE_FILES.items() if (run_dir / file).is_file()}
    overrides, override_lines = read_overrides(run_dir)
    return Run(
        path=run_dir,
        label=relative_label(run_dir, root),
        metrics=json.loads((run_dir / "metrics.json").read_text()),
        overrides=overrides,
        override_lines=override_lines,
        curves=read_curves(run_dir),
        figures=figures,
    )


def read_status(run_dir: Path) -> dict[str, Any] | None:
    """status.json (written by mlplab.sweep per trial) as a dict, or None when there is none or it is unreadable."""
    try:
        status = json.loads((run_dir / "status.json").read_text())
    except (OSError, ValueError):
        return None
    return status if isinstance(status, dict) else None


def last_log_line(run_dir: Path) -> str:
    """The last non-empty line of trial.log (the sweep's) or train.log: for a failed run, usually its error."""
    for name in ("trial.log", "train.log"):
        path = run_dir / name
        if path.is_file():
            with path.open("rb") as log:
                log.seek(max(0, log.seek(0, 2) - 4096))
                lines = [line.strip() for line in log.read().decode(errors="replace").splitlines() if line.strip()]
            if lines:
                return lines[-1]
    return ""


def read_failed(run_dir: Path, root: Path, status: dict[str, Any] | None) -> FailedRun:
    """What the report says about a run without a usable result: its status, exit code, error, last log line."""
    override_lines = list(read_overrides(run_dir)[1].values())
    if status is None:
        status = {"status": "no metrics.json", "error": "train.py crashed, was killed or is still running"}
    returncode = status.get("returncode")
    detail = [f"exit {returncode}" if returncode is not None else "", str(status.get("error") or ""),
              last_log_line(run_dir)]
    return FailedRun(
        path=run_dir,
        label=relative_label(run_dir, root),
        status=str(status.get("status", "unknown")),
        detail=" ".join(" · ".join(part for part in detail if part).split()),
        override_lines=override_lines or [str(line) for line in status.get("overrides") or []],
    )


def is_hidden(path: Path, root: Path) -> bool:
    """Under a dot-folder below root (e.g. the sweep's .previous/ attempts, a .hydra/ folder itself)."""
    return any(part.startswith(".") for part in path.relative_to(root).parts)


def find_runs(root: Path) -> tuple[list[Run], list[FailedRun]]:
    """Every run directory under root: finished runs and failed or unfinished ones.

    Finished: metrics.json, and status.json absent or "finished". Otherwise the directory (one with
    metrics.json, status.json or .hydra/overrides.yaml) goes to the failed list: status.json says
    failed, crashed, interrupted or running (mlplab.sweep writes it), or train.py left no metrics.json.
    """
    directories = {path.parent for name in ("metrics.json", "status.json") for path in root.rglob(name)}
    directories |= {path.parent.parent for path in root.rglob(".hydra/overrides.yaml")}
    runs, failed = [], []
    for run_dir in sorted(directory for directory in directories if not is_hidden(directory, root)):
        status = read_status(run_dir)
        finished = (run_dir / "metrics.json").is_file() and (status is None or status.get("status") == "finished")
        if not finished:
            failed.append(read_failed(run_dir, root, status))
            continue
        try:
            run = read_run(run_dir, root)
        except ValueError as error:  # a metrics.json or metrics.csv cut short (still being written, disk full)
            status = {"status": "unreadable", "error": f"{type(error).__name__}: {error}"}
            failed.append(read_failed(run_dir, root, status))
            continue
        if not is_eval_output(run.metrics):
            runs.append(run)
    return runs, failed


# ---------------------------------------------------------------------------------------------
# Comparing runs
# ---------------------------------------------------------------------------------------------


def value_key(value: Any) -> str:
    """A canonical string for comparing override values (lists and floats included)."""
    return json.dumps(value, sort_keys=True, default=str)


def fill_params(runs: list[Run]) -> None:
    """Give each run a value for every key any run overrides (from its own config where not overridden)."""
    keys = sorted({key for run in runs for key in run.overrides})
    for run in runs:
        missing = [key for key in keys if key not in run.overrides]
        defaults = config_values(run.path, missing) if missing else {}
        run.params = {key: run.overrides.get(key, defaults.get(key)) for key in keys}


def swept_keys(runs: list[Run]) -> list[str]:
    """The override keys whose values differ across runs, seed last."""
    keys = runs[0].params if runs else {}
    differing = [key for key in keys if len({value_key(run.params[key]) for run in runs}) > 1]
    return sorted(differing, key=lambda key: (is_seed_key(key), key))


def common_overrides(runs: list[Run], swept: Sequence[str]) -> list[str]:
    """Overrides every run shares with the same value, as typed (shown once, above the tables)."""
    shared = set.intersection(*(set(run.overrides) for run in runs)) if runs else set()
    return [runs[0].override_lines[key] for key in sorted(shared) if key not in swept]


def is_seed_key(key: str) -> bool:
    return key == "seed" or key.endswith(".seed")


def lower_is_better(metric: str) -> bool:
    """Losses, errors and times are minimized; everything else (accuracies) maximized."""
    return any(word in metric for word in ("loss", "error", "seconds"))


def metric_value(run: Run, metric: str) -> float | None:
    value = run.metrics.get(metric)
    return float(value) if is_number(value) and math.isfinite(value) else None


def sort_runs(runs: list[Run], metric: str, minimize: bool) -> list[Run]:
    """Best first by metric; runs without the metric last."""

    def key(run: Run) -> tuple[bool, float]:
        value = metric_value(run, metric)
        if value is None:
            return (True, 0.0)
        return (False, value if minimize else -value)

    return sorted(runs, key=key)


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def sort_values(values: Iterable[Any]) -> list[Any]:
    """Distinct override values: numbers in numeric order, then the rest in text order."""
    distinct = {value_key(value): value for value in values}.values()
    return sorted(distinct, key=lambda value: (not is_number(value), value if is_number(value) else 0, str(value)))


@dataclass
class ConfigSummary:
    """The metric over the runs of one configuration (runs differing only by seed)."""

    params: dict[str, Any]
    values: list[float]

    @property
    def mean(self) -> float:
        return statistics.fmean(self.values)

    @property
    def std(self) -> float | None:
        return statistics.stdev(self.values) if len(self.values) > 1 else None


def summarize(runs: list[Run], swept: Sequence[str], metric: str, minimize: bool) -> list[ConfigSummary]:
    """Mean ± std of the metric per configuration, grouping runs that differ only by seed; best mean first."""
    config_keys = [key for key in swept if not is_seed_key(key)]
    groups: dict[str, ConfigSummary] = {}
    for run in runs:
        value = metric_value(run, metric)
        if value is None:
            continue
        params = {key: run.params[key] for key in config_keys}
        groups.setdefault(value_key(params), ConfigSummary(params, [])).values.append(value)
    return sorted(groups.values(), key=lambda group: group.mean if minimize else -group.mean)


# ---------------------------------------------------------------------------------------------
# Formatting
# ---------------------------------------------------------------------------------------------


def format_param(value: Any) -> str:
    """An override value as the user would type it."""
    if isinstance(value, str):
        return value
    if value is None:
        return "null"
    return json.dumps(value) if isinstance(value, (list, dict)) else str(value)


def format_metric(name: str, value: Any) -> str:
    """Accuracies in percent, losses to 4 places, seconds to 0.1, counts as integers."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return MISSING if value is None else str(value)
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return str(value)
    if name.endswith("acc") or name.endswith("acc_best"):
        return f"{value:.2%}"
    if "seconds" in name:
        return f"{value:.1f}"
    return str(value) if isinstance(value, int) else f"{value:.4f}"


def format_spread(name: str, summary: ConfigSummary) -> str:
    """mean ± std (std omitted for a single run)."""
    mean = format_metric(name, summary.mean)
    return mean if summary.std is None else f"{mean} ± {format_metric(name, summary.std)}"


def table_columns(metric: str) -> list[str]:
    """The metrics.json keys in the runs table: the chosen metric first."""
    return [metric, *(column for column in METRIC_COLUMNS if column != metric)]


# ---------------------------------------------------------------------------------------------
# Charts (matplotlib's Agg canvas through Figure.savefig: no pyplot, no display, no global state)
# ---------------------------------------------------------------------------------------------


def png_data_uri(figure: Figure) -> str:
    """The figure as a data: URI holding a PNG."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def file_data_uri(path: Path) -> str:
    """A PNG file on disk as a data: URI."""
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def format_axis(axis: Any, metric: str) -> None:
    """Accuracy axes in percent."""
    if "acc" in metric:
        axis.yaxis.set_major_formatter(PercentFormatter(xmax=1.0))


def parameter_chart(runs: list[Run], key: str, metric: str) -> str:
    """The metric by value of one swept parameter: each run a dot, mean ± std as a black bar."""
    values = sort_values(run.params[key] for run in runs)
    figure = Figure(figsize=(max(4.0, 1.0 + 0.9 * len(values)), 3.2))
    axis = figure.add_subplot()
    for position, value in enumerate(values):
        matching = [run for run in runs if value_key(run.params[key]) == value_key(value)]
        scores = [score for run in matching if (score := metric_value(run, metric)) is not None]
        if not scores:
            continue
        # Spread the dots sideways so runs with equal scores stay visible.
        offsets = [0.0] if len(scores) == 1 else [-0.15 + 0.3 * i / (len(scores) - 1) for i in range(len(scores))]
        axis.scatter([position + offset for offset in offsets], scores, s=18, color="tab:blue", alpha=0.7, zorder=2)
        spread = statistics.stdev(scores) if len(scores) > 1 else 0.0
        axis.errorbar([position], [statistics.fmean(scores)], yerr=[spread], fmt="_", markersize=22,
                      color="black", capsize=6, zorder=3)
    labels = [format_param(value) for value in values]
    axis.set_xticks(range(len(values)), labels, rotation=30 if len(values) > 5 else 0)
    axis.set_xlim(-0.6, len(values) - 0.4)
    axis.set_xlabel(key)
    axis.set_ylabel(metric)
    axis.set_title(f"{metric} by {key} (dots: runs; bar: mean ± std)", fontsize=9)
    axis.grid(axis="y", alpha=0.3)
    format_axis(axis, metric)
    return png_data_uri(figure)


def run_legend_label(run: Run, swept: Sequence[str]) -> str:
    """Short label for a legend: the run's swept values, else its directory."""
    return " ".join(f"{key}={format_param(run.params[key])}" for key in swept) or run.label


def line_styles(runs: list[Run], swept: Sequence[str]) -> list[tuple[str, str]]:
    """(color, line style) per run: one color per configuration, seeds of it told apart by line style."""
    config_keys = [key for key in swept if not is_seed_key(key)]
    colors: dict[str, str] = {}
    seen: dict[str, int] = {}
    styles = []
    for run in runs:
        config = value_key([run.params[key] for key in config_keys])
        colors.setdefault(config, f"C{len(colors) % 10}")
        styles.append((colors[config], ("-", "--", ":", "-.")[seen.get(config, 0) % 4]))
        seen[config] = seen.get(config, 0) + 1
    return styles


def learning_curves_chart(runs: list[Run], swept: Sequence[str]) -> str:
    """val/acc per epoch and train/loss per step, one line per run, side by side."""
    figure = Figure(figsize=(12, 4))
    val_axis, loss_axis = figure.subplots(1, 2)
    for run, (color, style) in zip(runs, line_styles(runs, swept)):
        for axis, name in ((val_axis, "val/acc"), (loss_axis, "train/loss")):
            points = run.curves.get(name) or []
            if points:
                xs, ys = zip(*points)
                axis.plot(xs, ys, color=color, linestyle=style, marker="o" if len(points) < 20 else None,
                          markersize=3, label=run_legend_label(run, swept))
    val_axis.set(xlabel="epoch", ylabel="val/acc", title="validation accuracy per epoch")
    loss_axis.set(xlabel="step", ylabel="train/loss", title="training loss")
    format_axis(val_axis, "val/acc")
    for axis in (val_axis, loss_axis):
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        axis.grid(alpha=0.3)
    if len(runs) <= 20:
        loss_axis.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False)
    return png_data_uri(figure)


# ---------------------------------------------------------------------------------------------
# HTML
# ---------------------------------------------------------------------------------------------

STYLE = """
body { font-family: sans-serif; margin: 24px; color: #222; background: #fff; }
table { border-collapse: collapse; margin: 8px 0 24px; font-size: 14px; }
th, td { border: 1px solid #ccc; padding: 4px 8px; text-align: right; }
th { background: #f0f0f0; }
td.text, th.text { text-align: left; }
td.metric { font-weight: bold; }
.charts img { margin: 4px 12px 12px 0; border: 1px solid #ddd; }
.cards { display: flex; flex-wrap: wrap; gap: 12px; }
.card { border: 1px solid #ddd; padding: 6px; font-size: 12px; }
.card img { width: 220px; display: block; margin-top: 4px; }
.note { color: #555; }
"""


def cell(text: str, css: str = "") -> str:
    return f'<td class="{css}">{html.escape(text)}</td>' if css else f"<td>{html.escape(text)}</td>"


def header_row(names: Sequence[str], text_columns: int) -> str:
    cells = [f'<th class="{css}">{html.escape(name)}</th>'
             for css, name in zip(["text"] * text_columns + [""] * len(names), names)]
    return "<tr>" + "".join(cells) + "</tr>"


def runs_table_html(runs: list[Run], swept: Sequence[str], metric: str) -> str:
    """One row per run, best first: rank, directory, swept parameters, metrics."""
    columns = table_columns(metric)
    rows = [header_row(["#", "run", *swept, *columns], 2 + len(swept))]
    for rank, run in enumerate(runs, 1):
        directory = f'<td class="text" title="{html.escape(str(run.path))}">{html.escape(run.label)}</td>'
        cells = [cell(str(rank)), directory]
        cells += [cell(format_param(run.params[key]), "text") for key in swept]
        cells += [cell(format_metric(name, run.metrics.get(name)), "metric" if name == metric else "")
                  for name in columns]
        rows.append('<tr class="run">' + "".join(cells) + "</tr>")
    return '<table id="runs">' + "".join(rows) + "</table>"


def summary_table_html(summaries: list[ConfigSummary], swept: Sequence[str], metric: str) -> str:
    """One row per configuration: its parameters, number of runs, mean ± std, min, max."""
    keys = [key for key in swept if not is_seed_key(key)]
    rows = [header_row([*keys, "runs", f"{metric} mean ± std", "min", "max"], len(keys))]
    for summary in summaries:
        cells = [cell(format_param(summary.params[key]), "text") for key in keys]
        cells += [cell(str(len(summary.values))), cell(format_spread(metric, summary), "metric"),
                  cell(format_metric(metric, min(summary.values))), cell(format_metric(metric, max(summary.values)))]
        rows.append('<tr class="config">' + "".join(cells) + "</tr>")
    return '<table id="summary">' + "".join(rows) + "</table>"


def failed_table_html(failed: list[FailedRun]) -> str:
    """One row per failed or unfinished run: directory, overrides, status, exit code and last log line."""
    rows = [header_row(["run", "overrides", "status", "detail"], 4)]
    for trial in failed:
        cells = [trial.label, " ".join(trial.override_lines), trial.status, shorten(trial.detail)]
        rows.append('<tr class="failed">' + "".join(cell(text, "text") for text in cells) + "</tr>")
    return '<table id="failed">' + "".join(rows) + "</table>"


def shorten(text: str, limit: int = 300) -> str:
    """At most `limit` characters."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def image_html(uri: str, alt: str) -> str:
    return f'<img src="{uri}" alt="{html.escape(alt)}">'


def figures_html(runs: list[Run]) -> str:
    """A card per run holding its weight grid and confusion matrix thumbnails (when it saved them)."""
    cards = []
    for run in runs:
        if run.figures:
            images = "".join(f"<div>{html.escape(name)}{image_html(file_data_uri(path), f'{name} of {run.label}')}"
                             "</div>" for name, path in run.figures.items())
            cards.append(f'<div class="card"><b>{html.escape(run.label)}</b>{images}</div>')
    return '<div class="cards">' + "".join(cards) + "</div>"


def headline(runs: list[Run], failed: list[FailedRun], metric: str, minimize: bool) -> str:
    """The first line under the title, the same in HTML and Markdown."""
    better = "lower" if minimize else "higher"
    return f"{len(runs)} runs sorted by {metric} ({better} is better); {len(failed)} failed or unfinished."


def report_html(root: Path, runs: list[Run], failed: list[FailedRun], metric: str, minimize: bool) -> str:
    """The whole page; runs are already sorted best first and have their params filled."""
    swept = swept_keys(runs)
    common = " ".join(common_overrides(runs, swept)) or "none"
    parts = [
        f"<h1>Training runs under {html.escape(str(root))}</h1>",
        f'<p class="note">{html.escape(headline(runs, failed, metric, minimize))} '
        f"Swept: {html.escape(', '.join(swept) or 'nothing')}. Common overrides: {html.escape(common)}.</p>",
    ]
    if runs:
        summaries = summarize(runs, swept, metric, minimize)
        parts += ["<h2>Runs</h2>", runs_table_html(runs, swept, metric),
                  "<h2>Summary by configuration (runs differing only by seed grouped)</h2>",
                  summary_table_html(summaries, swept, metric)]
        charts = [image_html(parameter_chart(runs, key, metric), f"{metric} by {key}") for key in swept]
        if charts:
            parts += [f"<h2>{html.escape(metric)} by parameter</h2>", charts_html(charts)]
        curves = image_html(learning_curves_chart(runs, swept), "learning curves")
        parts += ["<h2>Learning curves</h2>", charts_html([curves])]
        if any(run.figures for run in runs):
            parts += ["<h2>Weights and confusion matrices</h2>", figures_html(runs)]
    if failed:
        parts += ["<h2>Failed or unfinished runs</h2>", failed_table_html(failed)]
    body = "\n".join(parts)
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f"<title>mlplab report: {html.escape(root.name)}</title><style>{STYLE}</style></head>\n"
            f"<body>\n{body}\n</body></html>\n")


def charts_html(images: list[str]) -> str:
    return '<div class="charts">' + "".join(images) + "</div>"


# ---------------------------------------------------------------------------------------------
# Markdown
# ---------------------------------------------------------------------------------------------


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(" ".join(text.split()).replace("|", "\\|") for text in cells) + " |"

    return "\n".join([line(header), line(["---"] * len(header)), *(line(row) for row in rows)])


def report_markdown(root: Path, runs: list[Run], failed: list[FailedRun], metric: str, minimize: bool) -> str:
    """The runs table, the per-configuration summary and the failed trials, as Markdown."""
    swept = swept_keys(runs)
    sections = [f"# Training runs under {root}", "", headline(runs, failed, metric, minimize), ""]
    if runs:
        columns = table_columns(metric)
        rows = [[str(rank), run.label, *(format_param(run.params[key]) for key in swept),
                 *(format_metric(name, run.metrics.get(name)) for name in columns)]
                for rank, run in enumerate(runs, 1)]
        keys = [key for key in swept if not is_seed_key(key)]
        summary_rows = [[*(format_param(summary.params[key]) for key in keys), str(len(summary.values)),
                         format_spread(metric, summary)] for summary in summarize(runs, swept, metric, minimize)]
        sections += ["## Runs", "", markdown_table(["#", "run", *swept, *columns], rows), "",
                     "## Summary by configuration", "",
                     markdown_table([*keys, "runs", f"{metric} mean ± std"], summary_rows), ""]
    if failed:
        failed_rows = [[trial.label, " ".join(trial.override_lines), trial.status, shorten(trial.detail)]
                       for trial in failed]
        sections += ["## Failed or unfinished runs", "",
                     markdown_table(["run", "overrides", "status", "detail"], failed_rows), ""]
    return "\n".join(sections).rstrip("\n") + "\n"


# ---------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------


def check_metric(runs: list[Run], metric: str) -> None:
    """Stop with the keys that do exist when no run recorded the metric."""
    if runs and all(metric_value(run, metric) is None for run in runs):
        seen = ", ".join(sorted({key for run in runs for key, value in run.metrics.items() if is_number(value)}))
        raise UserError(f"--metric {metric}: no run's metrics.json has it as a number; use one of: {seen}.")


def write_report(root: Path, out: Path, metric: str, minimize: bool | None = None) -> tuple[Path, Path, int, int]:
    """Find the runs under root, write the HTML report to `out` and Markdown next to it; return paths and counts."""
    if not root.is_dir():
        raise UserError(f"DIR={root} is not a directory: pass the folder holding the run directories "
                        "(e.g. outputs/).")
    runs, failed = find_runs(root)
    if not runs and not failed:
        raise UserError(f"no run directories under {root}: none holds a metrics.json, status.json or "
                        ".hydra/overrides.yaml. Pass the folder train.py wrote to (hydra.run.dir or outputs/).")
    check_metric(runs, metric)
    minimize = lower_is_better(metric) if minimize is None else minimize
    fill_params(runs)
    runs = sort_runs(runs, metric, minimize)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(report_html(root, runs, failed, metric, minimize), encoding="utf-8")
    markdown = out.with_suffix(".md")
    markdown.write_text(report_markdown(root, runs, failed, metric, minimize), encoding="utf-8")
    return out, markdown, len(runs), len(failed)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m mlplab.report", description=__doc__.split("\n\n")[0])
    parser.add_argument("dir", type=Path, help="folder searched recursively for run directories (holding metrics.json)")
    parser.add_argument("--metric", default="test_acc", help="metrics.json key to rank runs by (default test_acc)")
    parser.add_argument("--out", type=Path,
                        help="HTML file to write (default DIR/report.html); the Markdown table goes next to it (.md)")
    order = parser.add_mutually_exclusive_group()
    order.add_argument("--lower-is-better", dest="minimize", action="store_true", default=None,
                       help="rank ascending (default: ascending only for losses, errors and seconds)")
    order.add_argument("--higher-is-better", dest="minimize", action="store_false", default=None)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    root = args.dir.resolve()
    out = args.out or root / "report.html"
    try:
        html_path, markdown_path, n_runs, n_failed = write_report(root, out, args.metric, args.minimize)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"{n_runs} runs, {n_failed} failed or unfinished -> {html_path} and {markdown_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
