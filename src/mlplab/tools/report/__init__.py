"""Review training runs without a server: one self-contained, interactive HTML page and a Markdown file.

`python -m mlplab.tools.report DIR [DIR ...] [--metric test_acc] [--out DIR/report.html] [--watch [--every SECONDS]]`
finds every run directory under each DIR (several are compared on one page), loads them into one
pandas DataFrame (`runs.py`), groups and formats it (`tables.py`), compares configurations paired
by seed (`comparisons.py`), and writes `report.html`
(`html.py` through templates/report.html.j2: plotly.js inlined once, the runs table sortable and
filterable, each logged metric's curves per configuration over seeds, the swept parameters against
the metric; each run's saved figures linked by their path relative to the page, so the page stays
small for hundreds of runs) and `report.md` (`markdown.py`) from the same tables. A sweep dir ranks
by its sweep's own metric and goal (`sweeps.py`). Runs without a result (failed, crashed,
interrupted, still running) are shown as such, with their real error; `--watch` rewrites the page
while any runs (`watch.py`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

from mlplab.errors import UserError
from mlplab.run.records import RUNNING, write_text

# Points per curve on the page, at most: the page of 500 runs stays ~14 MB and opens in seconds.
MAX_POINTS = 50


class Written(NamedTuple):
    """What write_report wrote, and how many runs were finished, not (failed, running, smoke), running."""

    html: Path
    markdown: Path
    finished: int
    unfinished: int
    running: int


def check_roots(roots: Sequence[Path]) -> None:
    for root in roots:
        if not root.is_dir():
            raise UserError(f"DIR={root} is not a directory: pass the folder holding the run directories "
                            "(e.g. outputs/).")


def write_report(roots: Path | Sequence[Path], out: Path, metric: str | None = None, minimize: bool | None = None,
                 smoke: bool = False, refresh: int | None = None, max_points: int = MAX_POINTS) -> Written:
    """Write the HTML report of the runs under the root(s) to `out` and the Markdown next to it.
    Without `metric`, a sweep dir ranks by its sweep's metric, anything else by test_acc. Smoke checks
    are ranked only with `smoke` (a page from a quick try of the tools). With `refresh`, a page of
    runs still running makes the browser reload it every `refresh` seconds. Curves keep at most
    `max_points` points each."""
    # Imported here so that `--help` and a wrong DIR answer without loading pandas and plotly.
    from mlplab.tools.report import html, markdown, tables
    from mlplab.tools.report.runs import load_runs
    from mlplab.tools.report.sweeps import default_ranking

    roots = [roots] if isinstance(roots, Path) else list(roots)
    if out.suffix.lower() == ".md":
        raise UserError(f"--out {out}: the Markdown goes next to the HTML page with .md: pass the page's name, "
                        f"e.g. --out {out.with_suffix('.html')}")
    check_roots(roots)
    frame = load_runs(roots, smoke)
    if frame.empty:
        raise UserError(f"no run directories under {' '.join(map(str, roots))}: none holds a metrics.json, "
                        "status.json, trial.json or .hydra/overrides.yaml. Pass the folder train.py wrote to "
                        "(hydra.run.dir or outputs/).")
    ranking = default_ranking(roots, metric, minimize)
    tables.check_metric(frame, ranking.metric)
    minimize = tables.lower_is_better(ranking.metric) if ranking.minimize is None else ranking.minimize
    runs = tables.ranked_runs(frame, ranking.metric, minimize)
    running = int((frame["status"] == RUNNING).sum())
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UserError(f"--out {out}: cannot create {out.parent}: {error.strerror or error}.") from None
    title = roots[0] if len(roots) == 1 else " ".join(str(root) for root in roots)
    write_text(out, html.report_html(title, frame, runs, ranking.metric, minimize, page_dir=out.parent,
                                     origin=ranking.origin, refresh=refresh if running else None,
                                     max_points=max_points))
    markdown_path = write_text(out.with_suffix(".md"),
                               markdown.report_markdown(title, frame, runs, ranking.metric, minimize))
    return Written(out, markdown_path, len(runs), len(frame) - len(runs), running)
