"""The report page's charts, as Plotly figures: one logged metric's curves per configuration (mean
with a band over seeds, its runs on demand behind one legend entry), a metric against each swept
value with its interval, and the swept parameters against the metric in parallel coordinates.

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


def whole_number_ticks(values: Sequence[np.ndarray]) -> dict:
    """Axis settings that put ticks on whole numbers only: epochs and steps have no 0.5. Plotly's
    automatic ticks split a range of a few epochs into halves; a whole-number step of 1, 2 or 5
    times a power of ten, about 8 ticks over the data, keeps them whole when zoomed in too."""
    finite = np.concatenate([np.asarray(array, dtype=float).ravel() for array in values] or [np.zeros(1)])
    finite = finite[np.isfinite(finite)]
    span = float(finite.max() - finite.min()) if finite.size else 0.0
    wanted = max(span / 8, 1.0)
    power = 10.0 ** np.floor(np.log10(wanted))
    step = next(factor * power for factor in (1, 2, 5, 10) if factor * power >= wanted)
    return dict(tickmode="linear", tick0=0, dtick=int(step), tickformat="d")


def _band(figure: go.Figure, group: CurveGroup, colour: str, legend_group: str) -> None:
    """The area of ± one std around the group's mean, toggled with its mean."""
    upper = np.asarray(group.mean) + np.asarray(group.std)
    lower = np.asarray(group.mean) - np.asarray(group.std)
    figure.add_scatter(x=_float32(np.concatenate([group.x, group.x[::-1]])),
                       y=_float32(np.concatenate([upper, lower[::-1]])), mode="lines", fill="toself",
                       fillcolor=_rgba(colour, 0.18), line=dict(width=0), hoverinfo="skip",
                       legendgroup=legend_group, showlegend=False, name=f"{group.label} ± std")


def _members(figure: go.Figure, group: CurveGroup, colour: str, legend_group: str, first: bool) -> list[int]:
    """The group's runs, hidden, behind one legend entry of their own: a click on it shows or hides
    them all, so that 50 runs make one entry per configuration, not 50. The entry is a trace of one
    empty point (Plotly drops a trace of none from the legend); the runs keep their names for the
    hover. Returns the indices of the traces."""
    count = len(group.members)
    title = dict(legendgrouptitle_text="runs (click to show)") if first else {}
    indices = [len(figure.data)]
    figure.add_scatter(x=[None], y=[None], mode="lines", name=f"{group.label} · {count} run{'s' * (count != 1)}",
                       visible="legendonly", legendgroup=legend_group, legendrank=2000, hoverinfo="skip",
                       line=dict(color=colour, width=1), **title)
    for run, x, y, status in group.members:
        indices.append(len(figure.data))
        figure.add_scatter(x=_float32(x), y=_float32(y), mode="lines", name=run, visible="legendonly",
                           legendgroup=legend_group, showlegend=False, hovertemplate=MEMBER_HOVER,
                           line=dict(color=colour, width=1, dash="solid" if status == "finished" else "dot"))
    return indices


def curves_figure(metric: str, x_name: str, groups: Sequence[CurveGroup]) -> go.Figure:
    """The metric against x_name (epoch or step, ticked on whole numbers): per configuration its
    mean, a band of ± one std over seeds, and its runs hidden until asked for (the configuration's
    runs entry in the legend, or the `runs` buttons for all)."""
    figure = go.Figure(layout=LAYOUT)
    members: list[int] = []
    for index, group in enumerate(groups):
        colour = COLOURS[index % len(COLOURS)]
        if group.std is not None:
            _band(figure, group, colour, f"config{index}")
        figure.add_scatter(x=_float32(group.x), y=_float32(group.mean), mode="lines", name=group.label,
                           legendgroup=f"config{index}", line=dict(color=colour, width=2.5),
                           hovertemplate=f"{group.label}<br>%{{x}}: %{{y:.4g}}<extra>mean</extra>")
        if group.members:
            members += _members(figure, group, colour, f"runs{index}", first=not members)
    xs = [group.x for group in groups] + [x for group in groups for _, x, _, _ in group.members]
    figure.update_layout(title=dict(text=f"{metric} by {x_name}", x=0),
                         xaxis=dict(title=x_name, **AXIS, **whole_number_ticks(xs)),
                         yaxis=dict(title=metric, **AXIS, **_percent(metric)), height=480,
                         legend=dict(groupclick="togglegroup", tracegroupgap=4), margin=dict(t=70))
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
