"""The HTML report's serving section: each test's serve variants as a table, and a test
that loads one server at several request rates as a rate sweep plot.

A sweep is what the lesson's trade-off looks like under load: as the offered rate
rises, the output throughput rises and then flattens at the server's capacity, while
p95 TTFT climbs (requests queue). Rows come from the results document (``serve``
variants, :class:`pytest_hwopt.core.served.ServeMeasurement`); plotly is the caller's.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from pytest_hwopt.results.schema import ResultRow

#: columns of the table: (result key, heading, format)
COLUMNS: Final = (
    ("request_throughput", "requests/s", ".3g"),
    ("output_throughput", "tokens/s", ".4g"),
    ("ttft_p50_ms", "TTFT p50 ms", ".4g"),
    ("ttft_p95_ms", "TTFT p95 ms", ".4g"),
    ("tpot_p95_ms", "TPOT p95 ms", ".3g"),
    ("itl_p95_ms", "ITL p95 ms", ".3g"),
    ("e2e_p95_ms", "e2e p95 ms", ".4g"),
    ("completed", "completed", "d"),
    ("failed", "failed", "d"),
    ("send_lag_p99_ms", "send lag p99 ms", ".3g"),
)
CAPTION: Final = ("Offered request rate against output throughput (left axis) and p95 time "
                  "to first token (right axis): throughput rises, then flattens at the "
                  "server's capacity while requests queue and TTFT climbs.")


@dataclass(frozen=True)
class ServeRow:
    """One serve variant of a test, with the rate its load was offered at (requests/s;
    ``math.inf``: all at once)."""

    test: str
    variant: str
    rate: float
    url: str
    result: Mapping[str, Any]


def serve_rows(results: Sequence[ResultRow]) -> list[ServeRow]:
    """The serve variants of a results document, in its order."""
    rows = []
    for var in results:
        if not var.get("serve"):
            continue
        load = var.get("load") or {}
        rate = load.get("rate")
        rows.append(ServeRow(test=str(var.get("test", "")), variant=str(var.get("variant")),
                             rate=math.inf if rate is None else float(rate),
                             url=str(load.get("url", "")), result=var))
    return rows


def sweeps(rows: Sequence[ServeRow]) -> dict[str, list[ServeRow]]:
    """Tests that offered one server (one URL) at least three different finite rates:
    test -> its rows by rising rate."""
    out: dict[str, list[ServeRow]] = {}
    for test in dict.fromkeys(r.test for r in rows):
        mine = [r for r in rows if r.test == test and math.isfinite(r.rate)]
        urls = {r.url for r in mine}
        if len(urls) == 1 and len({r.rate for r in mine}) >= 3:
            out[test] = sorted(mine, key=lambda r: r.rate)
    return out


def table_html(rows: Sequence[ServeRow], short: Mapping[str, str]) -> str:
    """Every serve variant's figures as one HTML table (``short``: test id -> name)."""
    head = "".join(f"<th>{html.escape(h)}</th>" for h in
                   ("test", "variant", "rate req/s", *(c[1] for c in COLUMNS)))
    body = []
    for r in rows:
        cells = [short.get(r.test, r.test), r.variant,
                 "all at once" if math.isinf(r.rate) else f"{r.rate:g}"]
        cells += [_cell(r.result.get(key), fmt) for key, _, fmt in COLUMNS]
        body.append("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>")
    return (f'<table class="summary"><thead><tr>{head}</tr></thead>'
            f"<tbody>{''.join(body)}</tbody></table>")


def sweep_figure(go: Any, test: str, rows: Sequence[ServeRow]) -> Any:
    """A plotly figure of one rate sweep: output throughput and p95 TTFT by rate."""
    rates = [r.rate for r in rows]
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=rates, y=[r.result.get("output_throughput") for r in rows],
                             name="output tokens/s", mode="lines+markers", yaxis="y"))
    fig.add_trace(go.Scatter(x=rates, y=[r.result.get("ttft_p95_ms") for r in rows],
                             name="TTFT p95 (ms)", mode="lines+markers", yaxis="y2",
                             line={"dash": "dot"}))
    fig.update_layout(
        title={"text": html.escape(test), "font": {"size": 13}}, height=360,
        margin={"l": 60, "r": 60, "t": 40, "b": 50},
        xaxis={"title": {"text": "offered rate (requests/s)"}},
        yaxis={"title": {"text": "output tokens/s"}, "rangemode": "tozero"},
        yaxis2={"title": {"text": "TTFT p95 (ms)"}, "overlaying": "y", "side": "right",
                "rangemode": "tozero"},
        legend={"orientation": "h", "y": -0.25})
    return fig


def _cell(value: object, fmt: str) -> str:
    if value is None or isinstance(value, bool):
        return "-"
    if isinstance(value, (int, float)):
        if isinstance(value, float) and not math.isfinite(value):
            return "-"
        return format(int(value), "d") if fmt == "d" else format(float(value), fmt)
    return str(value)
