"""The report page: the tables of `tables.py` and the Plotly charts of `mlplab.plots.report_charts`,
rendered through the Jinja2 template templates/report.html.j2 into one self-contained HTML file.

plotly.js is inlined once; each chart is its figure's JSON, drawn by a few lines of glue
(templates/page.js), the curves of one metric at a time, so that a page of 500 runs opens in
seconds. The figures each run saved (weights, confusion matrix) are linked by their path relative
to the page and loaded only when opened: 200 runs' images embedded made a page of ~100 MB.
"""

from __future__ import annotations

import json
import math
import os
import urllib.parse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jinja2
import pandas as pd
import plotly.offline
from plotly.graph_objects import Figure

from mlplab.plots import report_charts
from mlplab.run.records import FINISHED, RUNNING
from mlplab.tools.report import MAX_POINTS, comparisons, tables
from mlplab.tools.report.curves import Curve, mean_band, metric_names, read_curves, thin
from mlplab.tools.report.runs import SMOKE, figure_files

TEMPLATES = Path(__file__).resolve().parent / "templates"
TEMPLATE = "report.html.j2"
AVERAGED = (FINISHED, RUNNING, SMOKE)  # the runs a configuration's mean is over: not the failed ones
DEFAULT_CURVES = ("val/acc", "train/loss")


def file_link(path: Path, page_dir: Path) -> str:
    """The URL of a file relative to the page in `page_dir`, percent-encoded (spaces, #, ?, % in names)."""
    return urllib.parse.quote(Path(os.path.relpath(path, page_dir)).as_posix(), safe="/")


def figure_json(figure: Figure) -> str:
    """The figure as JSON that can sit inside a <script> element ('<' only occurs inside strings)."""
    return figure.to_json().replace("<", "\\u003c")


def sort_values(values: Sequence[Any]) -> list[Any]:
    """Distinct parameter values: numbers in numeric order, then the rest in text order."""
    distinct = {json.dumps(value, default=str): value for value in values}.values()
    return sorted(distinct, key=lambda value: (not tables.is_number(value),
                                               value if tables.is_number(value) else 0, str(value)))


def effect_charts(runs: pd.DataFrame, swept: Sequence[str], metric: str, minimize: bool) -> list[tuple[str, str]]:
    """(title, figure JSON) per swept parameter, seeds left out (a seed is a repeat, not a
    parameter: its runs are grouped in the summary): each run's metric by its value, and the mean
    with the 95 % interval `tables.aggregate` computes."""
    scores = tables.metric_values(runs, metric)
    charts = []
    for key in tables.config_keys(swept):
        labels = [tables.format_param(value) for value in sort_values(list(runs[key]))]
        by_label = runs.assign(_value=runs[key].map(tables.format_param))
        summary = tables.aggregate(by_label, ["_value"], metric, minimize).set_index("_value")
        column = {name: [summary[name].get(label, math.nan) for label in labels]
                  for name in ("mean", "ci_low", "ci_high")}
        points = [(labels.index(value), score, run) for value, score, run in
                  zip(by_label["_value"], scores, runs["label"]) if not math.isnan(score)]
        figure = report_charts.effect_figure(key, metric, labels, column["mean"], column["ci_low"], column["ci_high"],
                                             points)
        charts.append((f"{metric} by {key}", figure_json(figure)))
    return charts


def parallel_chart(runs: pd.DataFrame, swept: Sequence[str], metric: str) -> str | None:
    """Figure JSON of the configuration's parameters against the metric, one line per run; None with
    fewer than two scored runs or nothing but seeds swept."""
    keys = tables.config_keys(swept)
    scored = runs.assign(_score=tables.metric_values(runs, metric)).dropna(subset="_score")
    if not keys or len(scored) < 2:
        return None
    dimensions = []
    for key in keys:
        values = list(scored[key])
        if all(tables.is_number(value) for value in values):
            dimensions.append((key, [float(value) for value in values], None))
        else:
            labels = [tables.format_param(value) for value in sort_values(values)]
            dimensions.append((key, [labels.index(tables.format_param(value)) for value in values], labels))
    return figure_json(report_charts.parallel_figure(dimensions, metric, list(scored["_score"])))


def group_label(row: pd.Series, keys: Sequence[str]) -> str:
    return " ".join(f"{key}={tables.format_param(row[key])}" for key in keys) or "all runs"


def curve_group(label: str, members: Sequence[tuple[str, Curve, str]], named_by_config: bool,
                max_points: int) -> report_charts.CurveGroup:
    """One configuration's curves of one metric: the mean and ± std over its members (run, curve,
    status) that did not fail; a finished run alone is drawn as its own mean."""
    averaged = [curve for _, curve, status in members if status in AVERAGED] or [curve for _, curve, _ in members]
    band = mean_band(averaged, max_points)
    if len(members) == 1 and members[0][2] == FINISHED:
        name = f"{label} · {members[0][0]}" if named_by_config else members[0][0]
        return report_charts.CurveGroup(name, band.x, band.mean, None)
    runs = [(run if status == FINISHED else f"{run} ({status})", thin(curve, max_points), status)
            for run, curve, status in members]
    return report_charts.CurveGroup(label, band.x, band.mean, band.std if band.members > 1 else None,
                                    [(run, curve.x, curve.y, status) for run, curve, status in runs])


def curve_charts(shown: pd.DataFrame, swept: Sequence[str], max_points: int = MAX_POINTS) -> list[tuple[str, str]]:
    """(metric, figure JSON) for each logged metric: per configuration (runs differing only by seed)
    the mean and ± std over the runs that did not fail, each run on demand."""
    keys = tables.config_keys(swept)
    runs = [(row, read_curves(Path(row["path"]))) for _, row in shown.iterrows()]
    charts = []
    for metric in metric_names([curves for _, curves in runs]):
        groups: dict[str, list[tuple[str, Curve, str]]] = {}
        for row, curves in runs:
            if metric in curves:
                groups.setdefault(group_label(row, keys), []).append((row["label"], curves[metric], row["status"]))
        drawn = [curve_group(label, members, bool(keys), max_points) for label, members in groups.items()]
        x_name = next(iter(groups.values()))[0][1].x_name
        charts.append((metric, figure_json(report_charts.curves_figure(metric, x_name, drawn))))
    return charts


def default_curve(names: Sequence[str], metric: str) -> str | None:
    """The curve shown first: the ranking metric's where it is logged (val/acc for val_acc_best), else val/acc."""
    wanted = [name for name in names if name.replace("/", "_") in (metric, metric.removesuffix("_best"))]
    return next(iter(wanted + [name for name in DEFAULT_CURVES if name in names] + list(names)), None)


def saved_figures(runs: pd.DataFrame, page_dir: Path) -> list[tuple[str, list[tuple[str, str]]]]:
    """(run, [(figure name, link relative to the page)]) for each run that saved a weight grid or confusion matrix."""
    cards = []
    for label, path in zip(runs["label"], runs["path"]):
        images = [(name, file_link(file, page_dir)) for name, file in figure_files(Path(path)).items()]
        if images:
            cards.append((label, images))
    return cards


def environment(template_dir: Path = TEMPLATES) -> jinja2.Environment:
    """Jinja2 with HTML escaping on and undefined names an error, so a template typo cannot pass silently."""
    return jinja2.Environment(loader=jinja2.FileSystemLoader(template_dir), autoescape=True,
                              undefined=jinja2.StrictUndefined)


def report_html(root: Path | str, frame: pd.DataFrame, runs: pd.DataFrame, metric: str, minimize: bool,
                template_dir: Path = TEMPLATES, page_dir: Path | None = None, origin: str | None = None,
                refresh: int | None = None, max_points: int = MAX_POINTS) -> str:
    """The whole page, to be saved in `page_dir` (default root). `frame` holds every run, `runs` the
    finished ones best first; `root` names what is reviewed (a folder, or several). While runs are
    running, `refresh` seconds make the browser reload it."""
    swept = list(frame.attrs["swept"])
    failed = tables.failed_table(frame)
    shown = pd.concat([runs, frame[frame["status"] != FINISHED]])
    curves = curve_charts(shown, swept, max_points)
    context: dict[str, Any] = {
        "root": root, "title": Path(root).name if isinstance(root, Path) else root, "metric": metric,
        "origin": origin or f"--metric {metric}", "swept": swept, "refresh": refresh,
        "swept_text": tables.swept_text(runs if len(runs) else frame, swept), "common": frame.attrs["common"],
        "headline": tables.headline(frame, metric, minimize), "plotly_js": plotly.offline.get_plotlyjs(),
        "all_runs": tables.page_runs_table(frame, runs, swept, metric), "statuses": list(shown["status"]),
        "runs": None, "failed": failed if len(failed) else None, "curves": curves,
        "default_curve": default_curve([name for name, _ in curves], metric),
        "figures": saved_figures(shown, Path(root) if page_dir is None else page_dir),
    }
    if len(runs):
        summary = tables.summary_table(tables.summarize(runs, swept, metric, minimize), swept, metric)
        compared = comparisons.compare(runs, swept, metric, minimize)
        context.update(
            runs=True, summary=summary, config_keys=tables.config_keys(swept),
            comparisons=comparisons.comparisons_table(compared, metric) if len(compared) else None,
            comparisons_caption=comparisons.caption(compared, metric),
            comparisons_metric=comparisons.difference_column(metric),
            summary_metric=tables.mean_column(metric), effects=effect_charts(runs, swept, metric, minimize),
            parallel=parallel_chart(runs, swept, metric),
        )
    jinja = environment(template_dir)
    context["page_js"] = jinja.loader.get_source(jinja, "page.js")[0]
    return jinja.get_template(TEMPLATE).render(context)
