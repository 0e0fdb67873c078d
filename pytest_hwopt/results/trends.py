"""The HTML report's trend plot: each variant's history on this machine with its change points.

No pytest, no torch; plotly's ``graph_objects`` module is passed in by the report
(:mod:`pytest_hwopt.results.html`). Reads the document's ``history`` entry
(:func:`pytest_hwopt.results.series.trend_section`, written with ``--hwopt-history``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, Final

TREND_CAPTION: Final = (
    "Each variant's median per run on this machine (same fingerprint), relative to the "
    "geometric mean of its series (log scale), oldest run first; the last point is this run. "
    "Diamonds mark change points (hover: the step and its p-value).")
EMPTY: Final = "No series in the history store for the tests of this run."


def trend_figure(go: Any, section: Mapping[str, Any], tests: Sequence[Mapping[str, Any]]
                 ) -> Any:
    """A plotly figure of ``section["series"]``, or None when there is none to draw; a test
    is labelled with its name from the document's ``tests`` (``name``), else its node id."""
    series = [s for s in section.get("series") or [] if s.get("values")]
    if not series:
        return None
    names = {str(t.get("test")): str(t.get("name") or t.get("test")) for t in tests}
    fig = go.Figure()
    for s in series:
        values = [float(v) for v in s["values"]]
        centre = math.exp(sum(math.log(v) for v in values) / len(values))
        label = f"{names.get(s['test'], s['test'])} {s['variant']}"
        hover = [f"{label}<br>run {run}, {time}<br>commit {str(commit or '-')[:10]}<br>"
                 f"median {value:.4g} ms"
                 for run, time, commit, value in zip(s["runs"], s["times"], s["commits"],
                                                     values)]
        fig.add_trace(go.Scatter(
            x=list(range(1, len(values) + 1)), y=[v / centre for v in values],
            mode="lines+markers", name=label, hovertext=hover, hoverinfo="text"))
        changes = s.get("changes") or []
        if changes:
            fig.add_trace(go.Scatter(
                x=[c["index"] + 1 for c in changes],
                y=[values[c["index"]] / centre for c in changes],
                mode="markers", marker={"symbol": "diamond", "size": 12, "color": "black"},
                name=f"{label}: change", showlegend=False, hoverinfo="text",
                hovertext=[f"{label}: {c['step']:+.1%} at run {c['run']} (p={c['p']:.2g})"
                           for c in changes]))
    fig.update_layout(template="plotly_white", height=360,
                      margin={"l": 10, "r": 20, "t": 30, "b": 50}, font={"size": 12},
                      xaxis_title="run (this machine)", yaxis_title="median / series mean",
                      yaxis_type="log")
    return fig
