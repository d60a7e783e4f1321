"""Review finished training runs without a server: one self-contained HTML page and a Markdown file.

`python -m mlplab.tools.report DIR [--metric test_acc] [--out DIR/report.html]` finds every run directory
under DIR, loads them into one pandas DataFrame (`runs.py`), groups and formats it (`tables.py`),
and writes `report.html` (`html.py` through templates/report.html.j2, charts from `mlplab.plots`
embedded, each run's saved figures linked by their path relative to the page, so the page stays small
for hundreds of runs) and `report.md` (`markdown.py`) from the same tables. Runs without a result
(failed, crashed, interrupted, still running) get a table of their own with their real error.
"""

from __future__ import annotations

from pathlib import Path

from mlplab.errors import UserError
from mlplab.run.records import write_text


def write_report(root: Path, out: Path, metric: str, minimize: bool | None = None,
                 smoke: bool = False) -> tuple[Path, Path, int, int]:
    """Write the HTML report of the runs under root to `out` and the Markdown next to it; return
    both paths, the number of finished runs and of the others. Smoke checks are ranked only with
    `smoke` (a page from a quick try of the tools)."""
    # Imported here so that `--help` and a wrong DIR answer without loading pandas and matplotlib.
    from mlplab.tools.report import html, markdown, tables
    from mlplab.tools.report.runs import load_runs

    if out.suffix.lower() == ".md":
        raise UserError(f"--out {out}: the Markdown goes next to the HTML page with .md: pass the page's name, "
                        f"e.g. --out {out.with_suffix('.html')}")
    if not root.is_dir():
        raise UserError(f"DIR={root} is not a directory: pass the folder holding the run directories "
                        "(e.g. outputs/).")
    frame = load_runs(root, smoke)
    if frame.empty:
        raise UserError(f"no run directories under {root}: none holds a metrics.json, status.json, "
                        "trial.json or .hydra/overrides.yaml. Pass the folder train.py wrote to (hydra.run.dir or outputs/).")
    tables.check_metric(frame, metric)
    minimize = tables.lower_is_better(metric) if minimize is None else minimize
    runs = tables.ranked_runs(frame, metric, minimize)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UserError(f"--out {out}: cannot create {out.parent}: {error.strerror or error}.") from None
    write_text(out, html.report_html(root, frame, runs, metric, minimize, page_dir=out.parent))
    markdown_path = write_text(out.with_suffix(".md"), markdown.report_markdown(root, frame, runs, metric, minimize))
    return out, markdown_path, len(runs), len(frame) - len(runs)
