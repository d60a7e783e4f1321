"""Every figure the package draws, as matplotlib `Figure`s built without pyplot.

Callers pass in data and get a figure back; what they save or log is their business. Figures own
their Agg canvas, so drawing touches no global backend and leaks into no figure registry.

- `mlplab.plots.run_figures`: a run's figures (first-layer weights, confusion matrix, augmentation preview);
- `mlplab.plots.chapter_figures`: the textbook chapter's figures (activations, sigmoid, norms, gradients);
- `mlplab.plots.report_charts`: the report's charts (a metric per swept value, learning curves).
"""

from __future__ import annotations

import base64
import io
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

DPI = 120


def new_figure(width: float, height: float, layout: str | None = "constrained") -> Figure:
    figure = Figure(figsize=(width, height), layout=layout)
    FigureCanvasAgg(figure)
    return figure


def save(figure: Figure, path: Path, dpi: int = DPI, metadata: dict[str, str] | None = None) -> Path:
    """Write the figure (a PNG's `metadata` goes into its text fields, e.g. Source and Description)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=dpi, metadata=metadata)
    return path


def png_data_uri(figure: Figure, dpi: int = 100) -> str:
    """The figure as a `data:image/png;base64,...` URI, for self-contained HTML."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")
