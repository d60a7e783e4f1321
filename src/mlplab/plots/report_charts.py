"""The report page's charts, as Plotly figures: one logged metric's curves per configuration (mean
with a band over seeds, each run on demand), a metric against each swept value with its interval,
and the swept parameters against the metric in parallel coordinates.

Callers pass plain data (arrays, labels) and get a `plotly.graph_objects.Figure`; the page embeds
its JSON. Arrays go in as float32, which Plotly encodes as base64: half the bytes of float64 and a
quarter of decimal text, and the page of 500 runs stays a few MB.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import plotly.graph_objects as go
from plotly.colors import qualitative

COLOURS = qualitative.Plotly + qualitative.D3
# An empty template: Plotly's default one adds ~10 kB of styling to every figure's JSON.
LAYOUT = dict(template="none", plot_bgcolor="white", paper_bgcolor="white", font=dict(size=12),
              margin=dict(l=60, r=20, t=50, b=50), hovermode="closest")
MEMBER_HOVER = "%{fullData.name}<br>%{x}: %{y:.4g}<extra></extra>"
AXIS = dict(gridcolor="#e5e5e5", zeroline=False, linecolor="#999", showline=True)


def _float32(values: Sequence[float]) -> np.ndarray:
    return np.asarray(values, dtype=np.float32)


def _rgba(colour: str, alpha: float) -> str:
    red, green, blue = (int(colour[index:index + 2], 16) for index in (1, 3, 5))
    return f"rgba({red},{green},{blue},{alpha})"


def _percent(metric: str) -> dict:
    return dict(tickformat=".1%") if "acc" in metric else {}


@dataclass
class CurveGroup:
    """One configuration's curves: its mean and std over seeds (None: a single run, drawn as the
    mean) and its members (run label, x, y, status)."""

    label: str
    x: Sequence[float]
    mean: Sequence[float]
    std: Sequence[float] | None
    members: list[tuple[str, Sequence[float], Sequence[float], str]] = field(default_factory=list)


def curves_figure(metric: str, x_name: str, groups: Sequence[CurveGroup]) -> go.Figure:
    """The metric against x_name: per configuration its mean, a band of ± one std over seeds, and
    its runs hidden until asked for (legend, or the `runs` buttons)."""
    figure = go.Figure(layout=LAYOUT)
    members = []
    for index, group in enumerate(groups):
        colour = COLOURS[index % len(COLOURS)]
        if group.std is not None:
            upper = np.asarray(group.mean) + np.asarray(group.std)
            lower = np.asarray(group.mean) - np.asarray(group.std)
            figure.add_scatter(x=_float32(np.concatenate([group.x, group.x[::-1]])),
                               y=_float32(np.concatenate([upper, lower[::-1]])), mode="lines", fill="toself",
                               fillcolor=_rgba(colour, 0.18), line=dict(width=0), hoverinfo="skip",
                               legendgroup=group.label, showlegend=False, name=f"{group.label} ± std")
        figure.add_scatter(x=_float32(group.x), y=_float32(group.mean), mode="lines", name=group.label,
                           legendgroup=group.label, line=dict(color=colour, width=2.5),
                           hovertemplate=f"{group.label}<br>%{{x}}: %{{y:.4g}}<extra>mean</extra>")
        for run, x, y, status in group.members:
            # The group's title is the first member's; the rest carry no text they do not need, which
            # keeps 500 runs' traces small.
            title = {} if members else dict(legendgrouptitle_text="runs (click to show)")
            members.append(len(figure.data))
            figure.add_scatter(x=_float32(x), y=_float32(y), mode="lines", name=run, visible="legendonly",
                               legendgroup="runs", legendrank=2000, **title, hovertemplate=MEMBER_HOVER,
                               line=dict(color=colour, width=1, dash="solid" if status == "finished" else "dot"))
    figure.update_layout(title=dict(text=f"{metric} by {x_name}", x=0), xaxis=dict(title=x_name, **AXIS),
                         yaxis=dict(title=metric, **AXIS, **_percent(metric)), height=480,
                         legend=dict(groupclick="toggleitem"), margin=dict(t=70))
    if members:
        shown, hidden = [dict(visible=True), members], [dict(visible="legendonly"), members]
        figure.update_layout(updatemenus=[dict(type="buttons", direction="right", x=1, y=1.02, xanchor="right",
                                               yanchor="bottom",
                                               buttons=[dict(label="runs hidden", method="restyle", args=hidden),
                                                        dict(label="runs shown", method="restyle", args=shown)])])
    return figure


def effect_figure(key: str, metric: str, labels: Sequence[str], means: Sequence[float], lows: Sequence[float],
                  highs: Sequence[float], runs: Sequence[tuple[int, float, str]]) -> go.Figure:
    """The metric by value of one swept parameter: each run a dot (`runs`: value index, score, run),
    the mean per value with its 95 % interval (NaN ends: one run, no interval)."""
    figure = go.Figure(layout=LAYOUT)
    if runs:
        positions, scores, names = zip(*runs)
        # Spread the dots sideways so that runs with equal scores stay visible.
        jitter = np.random.default_rng(0).uniform(-0.15, 0.15, len(positions))
        figure.add_scatter(x=_float32(np.asarray(positions) + jitter), y=_float32(scores), mode="markers",
                           text=list(names), name="runs", marker=dict(size=7, color=COLOURS[0], opacity=0.6),
                           hovertemplate="%{text}: %{y:.4g}<extra></extra>")
    upper = [high - mean for mean, high in zip(means, highs)]
    lower = [mean - low for mean, low in zip(means, lows)]
    figure.add_scatter(x=list(range(len(labels))), y=_float32(means), mode="markers", name="mean, 95 % interval",
                       marker=dict(symbol="line-ew-open", size=26, color="black", line=dict(width=3)),
                       error_y=dict(type="data", array=_float32(upper), arrayminus=_float32(lower), color="black",
                                    width=8), hovertemplate="mean %{y:.4g}<extra></extra>")
    figure.update_layout(title=dict(text=f"{metric} by {key}", x=0), showlegend=False, margin=dict(t=70),
                         width=max(320, 140 + 90 * len(labels)), height=340,
                         xaxis=dict(title=key, tickmode="array", tickvals=list(range(len(labels))),
                                    ticktext=list(labels), range=[-0.6, len(labels) - 0.4], **AXIS),
                         yaxis=dict(title=metric, **AXIS, **_percent(metric)))
    return figure


def parallel_figure(dimensions: Sequence[tuple[str, Sequence[float], Sequence[str] | None]], metric: str,
                    scores: Sequence[float]) -> go.Figure:
    """One line per run across the swept parameters (name, values, tick labels where the values stand
    for categories) and the metric, coloured by the metric. Drag along an axis to select a range."""
    axes = [dict(label=name, values=_float32(values),
                 **({} if ticks is None else dict(tickvals=list(range(len(ticks))), ticktext=list(ticks))))
            for name, values, ticks in dimensions]
    axes.append(dict(label=metric, values=_float32(scores)))
    figure = go.Figure(go.Parcoords(dimensions=axes, line=dict(color=_float32(scores), colorscale="Viridis",
                                                                showscale=True, colorbar=dict(title=metric))),
                       layout=LAYOUT)
    figure.update_layout(title=dict(text=f"swept parameters against {metric}", x=0), height=420,
                         margin=dict(l=80, r=80, t=110, b=40))
    return figure
