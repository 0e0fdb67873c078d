"""A self-contained HTML report rendered from the ``--hwopt-json`` document.

:func:`render` turns the document (the dict that :func:`.schema.document` builds)
into one HTML file: the summary table, speedups with their confidence intervals
against the budgets, latency distributions, cold-start times, a roofline chart,
per-test notes and the environment. Charts are drawn by plotly.js, which is
embedded inline, so the file opens without a network.

plotly is an optional dependency (``pip install pytest-hwopt[html]``); it is
imported only when a report is rendered.
"""

from __future__ import annotations

import html
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from pytest_hwopt.results.jsonio import write_text_atomic
from pytest_hwopt.results.schema import (
    CheckRecord,
    Environment,
    Record,
    ResultRow,
    ResultsDocument,
    records_of,
)
from pytest_hwopt.results.terminal import (
    SUMMARY_HEADER,
    check_name,
    format_value,
    status_counts,
    status_text,
    summary_rows,
)

STATUS_COLOURS = {
    "passed": "#2e7d32",
    "failed": "#c62828",
    "inconclusive": "#ef8f00",
    "skipped": "#757575",
    "reported": "#1565c0",
    "measured": "#1565c0",
}
LABEL_CHARS = 44  # chart labels are cut to this; hover shows the full test id
_esc = html.escape


def render(document: ResultsDocument) -> str:
    """One self-contained HTML page (plotly.js inline) for a results document."""
    try:
        import plotly  # type: ignore[import-untyped]  # noqa: F401
        import plotly.graph_objects as go  # type: ignore[import-untyped]
        from plotly.io.json import to_json_plotly  # type: ignore[import-untyped]
        from plotly.offline import get_plotlyjs  # type: ignore[import-untyped]
    except ImportError as exc:
        raise RuntimeError(
            "the HTML report needs plotly: pip install plotly "
            "(or pip install 'pytest-hwopt[html]')") from exc

    records = records_of(document)
    figures: list[tuple[str, Any]] = []  # (section id, figure)
    sections: list[tuple[str, str, str]] = []  # (id, title, html)

    sections.append(("summary", "Summary", _summary_section(records)))

    names = names_of_tests(document)
    speed = _speedup_figure(go, document.get("checks") or [], names)
    sections.append(("speedups", "Speedups", _figure_section(
        speed, figures, "speedups",
        "Measured speedup (bar) with its confidence interval (whiskers); the budget is the "
        "black tick, 1x the dashed line.",
        "No speedup checks with a measurement.", key=_status_key())))

    lat = _latency_figure(go, document.get("results") or [], document.get("checks") or [],
                          names)
    sections.append(("latency", "Latency distributions", _figure_section(
        lat, figures, "latency",
        "Per-call times of each variant (log scale): box = quartiles, whiskers = 1.5 IQR, "
        "dots = outliers; a latency budget is the black tick on its variant.",
        "No per-call samples in the document.")))

    cold_rows = _cold_start_rows(document.get("results") or [], document.get("checks") or [])
    cold = _cold_start_figure(go, cold_rows, names)
    left_out = sum(1 for v in document.get("results") or [] if _finite(v.get("first_call_ms"))
                   ) - sum(1 for v in cold_rows if _finite(v.get("first_call_ms")))
    sections.append(("cold-start", "Cold start", _figure_section(
        cold, figures, "cold-start",
        "Time before the first result (log scale): prepare (build, export, compile) and "
        "the first call. A cold-start budget counts their sum."
        + (f" {left_out} variant(s) of tests that built nothing are left out."
           if left_out > 0 else ""),
        "No prepare or first-call times in the document.")))

    sections.append(("roofline", "Roofline", _roofline_section(go, document, figures, names)))
    serving = _serving_section(go, document.get("results") or [], figures, names)
    if serving:
        sections.append(("serving", "Serving under load", serving))
    history = dict(document).get("history")
    if isinstance(history, Mapping) and history:  # --hwopt-history: each variant's series
        from pytest_hwopt.results.trends import EMPTY, TREND_CAPTION, trend_figure

        sections.append(("history", "History", _figure_section(
            trend_figure(go, history, document.get("tests") or []), figures, "history",
            TREND_CAPTION, EMPTY)))
    sections.append(("tests", "Tests and notes", _tests_section(records)))
    sections.append(("environment", "Environment",
                     _environment_section(document.get("environment") or {})))

    plot_data = "".join(
        f'<script type="application/json" id="{_esc(pid)}-data">'
        f"{_json_for_script(to_json_plotly(fig.to_plotly_json()))}</script>\n"
        for pid, fig in figures)
    plotly_js = ""
    if figures:
        plotly_js = f"<script>{_js_for_script(get_plotlyjs())}</script>\n"
    ids = "[" + ",".join(f'"{pid}"' for pid, _ in figures) + "]"
    body = "\n".join(f'<section id="{sid}"><h2>{_esc(title)}</h2>\n{content}</section>'
                     for sid, title, content in sections)
    nav = " ".join(f'<a href="#{sid}">{_esc(title)}</a>' for sid, title, _ in sections)
    return _PAGE.format(
        title=_esc(_title(document)),
        head_script=_HEAD_SCRIPT,
        style=_STYLE,
        header=_header(document, records),
        nav=nav,
        body=body,
        plot_data=plot_data,
        plotly_js=plotly_js,
        run_script=_RUN_SCRIPT.replace("__IDS__", ids),
    )


def write_html(path: str | os.PathLike[str], document: ResultsDocument) -> Path:
    """Render ``document`` and write it to ``path`` atomically (temporary file, rename)."""
    return write_text_atomic(path, render(document))


# -- the header ----------------------------------------------------------------


def _title(document: ResultsDocument) -> str:
    env = document.get("environment") or {}
    where = env.get("device_name") or env.get("device") or ""
    return "pytest-hwopt report" + (f" - {where}" if where else "")


def _header(document: ResultsDocument, records: Sequence[Record]) -> str:
    env = document.get("environment") or {}
    counts = status_counts(document.get("checks") or [])
    badges = " ".join(
        f'<span class="badge status-{_esc(_status_class(s))}">{n} {_esc(s)}</span>'
        for s, n in sorted(counts.items())) or '<span class="badge">no budgets</span>'
    facts = [f"{len(records)} test(s)"]
    for key in ("device", "device_name", "hostname"):
        if env.get(key):
            facts.append(f"{key.replace('_', ' ')}: {env[key]}")
    if document.get("version"):
        facts.append(f"pytest-hwopt {document['version']}")
    return (f"<h1>{_esc(_title(document))}</h1>\n"
            f'<p class="facts">{_esc(" · ".join(facts))}</p>\n<p>checks: {badges}</p>')


# -- tables --------------------------------------------------------------------


def _status_class(status: str) -> str:
    base = status.split(" ")[0]
    return base if base in STATUS_COLOURS else "other"


def _summary_section(records: Sequence[Record]) -> str:
    """The terminal's summary table; each check's message on a line below its row."""
    if not records:
        return '<p class="empty">No tests were measured.</p>'
    head = "".join(f"<th>{_esc(h)}</th>" for h in SUMMARY_HEADER)
    rows = []
    for rec in records:
        cells_rows = summary_rows([rec])
        checks = rec.get("checks") or []
        messages = [str(c.get("message", "")) for c in checks] or [""] * len(cells_rows)
        span = len(cells_rows) + sum(1 for m in messages if m)
        for n, (cells, message) in enumerate(zip(cells_rows, messages)):
            cls = _status_class(cells[6])
            tds = ""
            if n == 0:
                tds += f'<td class="test" rowspan="{span}">{_breakable(cells[0])}</td>'
            tds += "".join(f"<td>{_esc(c)}</td>" for c in cells[1:4])
            tds += f'<td class="ci">{_esc(cells[4])}</td><td>{_esc(cells[5])}</td>'
            tds += f'<td class="status">{_esc(cells[6])}</td><td>{_esc(cells[7])}</td>'
            rows.append(f'<tr class="status-{cls}{" first" if n == 0 else ""}">{tds}</tr>')
            if message:
                rows.append(f'<tr class="status-{cls} msg"><td class="message" '
                            f'colspan="{len(SUMMARY_HEADER) - 1}">{_esc(message)}</td></tr>')
    return (f'<div class="scroll"><table class="summary"><thead><tr>{head}</tr></thead>'
            f"<tbody>{''.join(rows)}</tbody></table></div>")


def _breakable(test: str) -> str:
    """A test id that may wrap after ``::`` and before ``[``."""
    return "::<wbr>".join(_esc(part).replace("[", "<wbr>[") for part in test.split("::"))


def _tests_section(records: Sequence[Record]) -> str:
    if not records:
        return '<p class="empty">No tests were measured.</p>'
    head = "".join(f"<th>{h}</th>" for h in
                   ("test", "device", "rounds", "stopped", "elapsed", "conditions", "notes"))
    rows = []
    for rec in records:
        flags = []
        contention = rec.get("contention")
        if contention and contention.get("contended"):
            flags.append(f"contended (other busy cores "
                         f"{_num(contention.get('other_busy_cores'))}, steal "
                         f"{_num(contention.get('steal_fraction'))})")
        telemetry = rec.get("telemetry") or {}
        if telemetry.get("throttled"):
            flags.append("throttled: " + ", ".join(map(str, telemetry.get("reasons") or [])))
        if telemetry.get("nvml"):
            parts = [f"{k.replace('_', ' ')} {_num(telemetry[k])}"
                     for k in ("max_temperature_c", "min_sm_clock_mhz", "max_sm_clock_mhz",
                               "mean_power_w") if telemetry.get(k) is not None]
            if parts:
                flags.append("; ".join(parts))
        notes = rec.get("notes") or {}
        note_html = "<br>".join(f"<code>{_esc(str(k))}</code> = {_esc(_num(v))}"
                                for k, v in notes.items()) or "-"
        elapsed = rec.get("elapsed_s")
        cells = [_esc(str(rec.get("test", ""))), _esc(str(rec.get("device", "") or "-")),
                 _esc(str(rec.get("rounds", "-"))), _esc(str(rec.get("stopped", "-"))),
                 _esc(f"{elapsed:.3g} s" if isinstance(elapsed, (int, float)) else "-"),
                 _esc("; ".join(flags) or "-"), note_html]
        rows.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    return (f'<table class="plain"><thead><tr>{head}</tr></thead>'
            f"<tbody>{''.join(rows)}</tbody></table>")


def _environment_section(env: Environment) -> str:
    rows = list(_flatten(env))
    if not rows:
        return '<p class="empty">No environment recorded.</p>'
    body = "".join(f"<tr><th>{_esc(k)}</th><td>{_esc(v)}</td></tr>" for k, v in rows)
    return f'<table class="env"><tbody>{body}</tbody></table>'


def _flatten(value: object, prefix: str = "") -> Iterable[tuple[str, str]]:
    if isinstance(value, Mapping):
        if not value and prefix:
            yield prefix, "-"
        for k, v in value.items():
            yield from _flatten(v, f"{prefix}.{k}" if prefix else str(k))
    elif isinstance(value, (list, tuple)):
        if all(not isinstance(v, (Mapping, list, tuple)) for v in value):
            yield prefix, ", ".join(_num(v) for v in value) or "-"
        else:
            for i, v in enumerate(value):
                yield from _flatten(v, f"{prefix}[{i}]")
    else:
        yield prefix, _num(value)


def _si(value: float | None, unit: str) -> str:
    """``134.2 MB``, ``5.369 GFLOP``; ``-`` for nothing."""
    if value is None or not _finite(value):
        return "-"
    for factor, prefix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= factor:
            return f"{value / factor:.4g} {prefix}{unit}"
    return f"{value:.4g} {unit}"


def _num(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


# -- charts --------------------------------------------------------------------


def _figure_section(fig: Any, figures: list[tuple[str, Any]], pid: str, caption: str,
                    empty: str, key: str = "") -> str:
    if fig is None:
        return f'<p class="empty">{_esc(empty)}</p>'
    figures.append((f"plot-{pid}", fig))
    return (f'<p class="caption">{_esc(caption)}{key}</p>'
            f'<div class="hwopt-plot" id="plot-{_esc(pid)}"></div>')


def _serving_section(go: Any, results: Sequence[ResultRow], figures: list[tuple[str, Any]],
                     names: Mapping[str, str]) -> str:
    """Serve variants as a table, and each rate sweep as a plot; "" without serve
    variants."""
    from pytest_hwopt.results import serving_report

    rows = serving_report.serve_rows(results)
    if not rows:
        return ""
    parts = [serving_report.table_html(rows, names)]
    for n, (test, sweep) in enumerate(serving_report.sweeps(rows).items()):
        parts.append(_figure_section(serving_report.sweep_figure(go, names.get(test, test),
                                                                 sweep),
                                     figures, f"sweep-{n}", serving_report.CAPTION, ""))
    return "\n".join(parts)


def _status_key() -> str:
    return "".join(f'<span class="key" style="background:{colour}"></span>{name}'
                   for name, colour in STATUS_COLOURS.items() if name != "measured")


def names_of_tests(document: ResultsDocument) -> dict[str, str]:
    """test id -> the test's name as pytest gives it (``test_op[ns::op]``), from the
    document's ``tests``; a document written before tests carried names gets the part of
    the node id after its last ``::`` outside the parameter brackets."""
    names: dict[str, str] = {}
    for meta in document.get("tests") or []:
        if isinstance(meta.get("name"), str):
            names[str(meta["test"])] = str(meta["name"])
    for row in [*(document.get("results") or []), *(document.get("checks") or [])]:
        test = str(row.get("test", ""))
        if test not in names:
            head, bracket, params = test.partition("[")  # ids may hold "::", paths do not
            names[test] = head.rsplit("::", 1)[-1] + bracket + params
    return names


def _short(test: str, names: Mapping[str, str]) -> str:
    name = names.get(test, test)
    return name if len(name) <= LABEL_CHARS else name[:LABEL_CHARS - 1] + "…"


def _unique(labels: list[str]) -> list[str]:
    """Chart categories must differ: the second ``x`` becomes ``x (2)``."""
    seen: dict[str, int] = {}
    out = []
    for label in labels:
        seen[label] = seen.get(label, 0) + 1
        out.append(label if seen[label] == 1 else f"{label} ({seen[label]})")
    return out


def _layout(go: Any, rows: int, **kwargs: Any) -> Any:
    height = max(190, 26 * rows + 130)
    return go.Layout(template="plotly_white", height=height,
                     margin={"l": 10, "r": 20, "t": 30, "b": 50},
                     font={"size": 12}, hoverlabel={"align": "left"}, **kwargs)


def _speedup_figure(go: Any, checks: Sequence[CheckRecord], names: Mapping[str, str]) -> Any:
    rows = [c for c in checks if c.get("kind") == "speedup" and _finite(c.get("measured"))]
    if not rows:
        return None
    rows = rows[::-1]  # plotly draws the first category at the bottom
    labels = _unique([_esc(f"{c.get('variant')} vs {c.get('vs')} · {_short(str(c['test']), names)}")
                      for c in rows])
    measured = [_float(c["measured"]) for c in rows]
    low = [_float(c["low"]) if _finite(c.get("low")) else m for c, m in zip(rows, measured)]
    high = [_float(c["high"]) if _finite(c.get("high")) else m for c, m in zip(rows, measured)]
    hover = [_esc(str(c["test"])) + "<br>" + _esc(f"{check_name(c)}: {format_value(m, 'x')} "
                    f"[{format_value(lo, 'x')}, {format_value(hi, 'x')}], "
                    f"budget {format_value(c.get('budget'), 'x')}, {status_text(c)}")
             for c, m, lo, hi in zip(rows, measured, low, high)]
    colours = [STATUS_COLOURS.get(_status_class(str(c.get("status"))), "#555") for c in rows]
    fig = go.Figure(layout=_layout(go, len(rows), showlegend=False, bargap=0.35))
    fig.add_trace(go.Bar(
        x=measured, y=labels, orientation="h", marker={"color": colours, "opacity": 0.8},
        error_x={"type": "data", "symmetric": False,
                 "array": [h - m for h, m in zip(high, measured)],
                 "arrayminus": [m - lo for m, lo in zip(measured, low)],
                 "color": "#222", "thickness": 1.5, "width": 4},
        hovertext=hover, hoverinfo="text", name="speedup"))
    budgets = [(label, _float(c["budget"])) for label, c in zip(labels, rows)
               if _finite(c.get("budget"))]
    _budget_ticks(go, fig, budgets, "budget %{x:.3g}x")
    fig.add_vline(x=1.0, line={"dash": "dash", "color": "#888", "width": 1})
    fig.update_xaxes(title_text="speedup (x)", rangemode="tozero", zeroline=True)
    fig.update_yaxes(automargin=True, type="category")
    return fig


def _budget_ticks(go: Any, fig: Any, ticks: Sequence[tuple[str, float]], hover: str) -> None:
    """Black ticks at each ``(category, budget)``; nothing without ticks."""
    if ticks:
        fig.add_trace(go.Scatter(
            x=[b for _, b in ticks], y=[label for label, _ in ticks], mode="markers",
            marker={"symbol": "line-ns", "size": 18, "line": {"width": 3, "color": "#000"}},
            hovertemplate=f"{hover}<extra></extra>", name="budget"))


def _samples(var: ResultRow) -> list[float]:
    values = var.get("samples")
    if not isinstance(values, (list, tuple)):
        values = var.get("rounds_ms")
    if not isinstance(values, (list, tuple)):
        return []
    return [float(f"{v:.6g}") for v in values if _finite(v) and v > 0]


def _latency_figure(go: Any, results: Sequence[ResultRow],
                    checks: Sequence[CheckRecord], names: Mapping[str, str]) -> Any:
    rows = [(var, _samples(var)) for var in results]
    rows = [(var, s) for var, s in rows if s]
    if not rows:
        return None
    rows = rows[::-1]
    labels = _unique([_esc(f"{var.get('variant')} · {_short(str(var.get('test', '')), names)}")
                      for var, _ in rows])
    palette = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
               "#7f7f7f", "#bcbd22", "#17becf"]
    tests = list(dict.fromkeys(str(var.get("test", "")) for var, _ in rows[::-1]))
    fig = go.Figure(layout=_layout(go, len(rows), showlegend=False))
    for label, (var, samples) in zip(labels, rows):
        colour = palette[tests.index(str(var.get("test", ""))) % len(palette)]
        fig.add_trace(go.Box(
            x=samples, y=[label] * len(samples), name=label, orientation="h",
            boxpoints="outliers", marker={"color": colour, "size": 3},
            line={"color": colour, "width": 1.5},
            hovertext=_esc(f"{var.get('test')} / {var.get('variant')}: median "
                           f"{format_value(var.get('median_ms'), 'ms')}, p95 "
                           f"{format_value(var.get('p95_ms'), 'ms')}, n={len(samples)}"),
            hoverinfo="x+text"))
    by_key = {(str(var.get("test", "")), str(var.get("variant"))): label
              for label, (var, _) in zip(labels, rows)}
    ticks = [(by_key[key], _float(c["budget"]))
             for c in checks if c.get("kind") == "latency" and _finite(c.get("budget"))
             for key in [(str(c.get("test", "")), str(c.get("variant")))] if key in by_key]
    _budget_ticks(go, fig, ticks, "latency budget %{x:.4g} ms")
    fig.update_xaxes(type="log", title_text="per-call time (ms, log scale)")
    fig.update_yaxes(automargin=True, type="category")
    return fig


def _cold_start_rows(results: Sequence[ResultRow],
                     checks: Sequence[CheckRecord]) -> list[ResultRow]:
    """Variants with a prepare or first-call time; when some test built something (a
    prepare time above zero) or has a cold-start budget, only such tests' variants."""
    rows = [var for var in results
            if _finite(var.get("prepare_s")) or _finite(var.get("first_call_ms"))]
    built = {str(var.get("test", "")) for var in rows
             if _finite(var.get("prepare_s")) and _float(var["prepare_s"]) > 0}
    built |= {str(c.get("test", "")) for c in checks if c.get("kind") == "cold_start"}
    if built:
        rows = [var for var in rows if str(var.get("test", "")) in built]
    return rows


def _cold_start_figure(go: Any, rows: Sequence[ResultRow], names: Mapping[str, str]) -> Any:
    if not rows:
        return None
    rows = list(rows)[::-1]
    labels = _unique([_esc(f"{var.get('variant')} · {_short(str(var.get('test', '')), names)}")
                      for var in rows])
    prepare = [_float(var["prepare_s"]) if _finite(var.get("prepare_s")) else None
               for var in rows]
    first = [_float(var["first_call_ms"]) / 1000.0 if _finite(var.get("first_call_ms"))
             else None for var in rows]
    hover = [_esc(f"{var.get('test')} / {var.get('variant')}: prepare "
                  f"{format_value(p, 's')}, first call {format_value(f, 's')}, total "
                  f"{format_value((p or 0.0) + (f or 0.0), 's')}")
             for var, p, f in zip(rows, prepare, first)]
    fig = go.Figure(layout=_layout(go, int(len(rows) * 1.3), barmode="group", bargap=0.25,
                                   legend={"orientation": "h", "y": 1.0, "yanchor": "bottom",
                                           "x": 0, "traceorder": "reversed"}))
    # log axis: a zero prepare time (nothing built) has no bar
    fig.add_trace(go.Bar(x=[f if f else None for f in first], y=labels, orientation="h",
                         name="first call (s)", marker={"color": "#fd8d3c"}, hovertext=hover,
                         hoverinfo="text"))
    fig.add_trace(go.Bar(x=[p if p else None for p in prepare], y=labels, orientation="h",
                         name="prepare (s)", marker={"color": "#6a51a3"}, hovertext=hover,
                         hoverinfo="text"))
    fig.update_xaxes(type="log", title_text="seconds (log scale)")
    fig.update_yaxes(automargin=True, type="category")
    return fig


def _roofline_section(go: Any, document: ResultsDocument,
                      figures: list[tuple[str, Any]], names: Mapping[str, str]) -> str:
    work = [var for var in document.get("results") or []
            if _finite(var.get("achieved_gbs")) or _finite(var.get("achieved_tflops"))]
    if not work:
        return '<p class="empty">No variant declared bytes= or flops= (no roofline data).</p>'
    points = [var for var in work
              if _finite(var.get("achieved_intensity")) and _float(var["achieved_intensity"]) > 0
              and _finite(var.get("achieved_tflops")) and _float(var["achieved_tflops"]) > 0]
    roofs = sorted({(_float(v["peak_gbs"]), _float(v["peak_tflops"])) for v in work
                    if _finite(v.get("peak_gbs")) and _finite(v.get("peak_tflops"))
                    and _float(v["peak_gbs"]) > 0 and _float(v["peak_tflops"]) > 0})
    parts = []
    if points and roofs:
        fig = _roofline_figure(go, points, roofs, names)
        parts.append(_figure_section(
            fig, figures, "roofline",
            "Achieved TFLOP/s against arithmetic intensity (log-log); each line is the "
            "roof min(peak TFLOP/s, intensity × peak GB/s) of a measured device peak.", ""))
    unplaced = len(work) - len(points)
    if not (points and roofs):
        parts.append('<p class="empty">No variant declared both bytes= and flops= with a '
                     "device peak, so nothing can be placed on a roofline chart.</p>")
    elif unplaced:
        parts.append(f'<p class="caption">{unplaced} variant(s) declared only bytes or only '
                     "FLOPs (intensity undefined) and are listed below, not charted.</p>")
    head = "".join(f"<th>{h}</th>" for h in (
        "test", "variant", "bytes", "FLOPs", "GB/s", "TFLOP/s", "FLOP/byte",
        "roofline fraction", "peak GB/s", "peak TFLOP/s"))
    body = []
    for var in work:
        cells = [var.get("test", ""), var.get("variant", ""), _si(var.get("bytes"), "B"),
                 _si(var.get("flops"), "FLOP"), _num(var.get("achieved_gbs")),
                 _num(var.get("achieved_tflops")), _num(var.get("achieved_intensity")),
                 _num(var.get("roofline_fraction")), _num(var.get("peak_gbs")),
                 _num(var.get("peak_tflops"))]
        body.append("<tr>" + "".join(f"<td>{_esc(str(c))}</td>" for c in cells) + "</tr>")
    parts.append(f'<table class="plain"><thead><tr>{head}</tr></thead>'
                 f"<tbody>{''.join(body)}</tbody></table>")
    return "\n".join(parts)


def _roofline_figure(go: Any, points: Sequence[ResultRow],
                     roofs: Sequence[tuple[float, float]], names: Mapping[str, str]) -> Any:
    ridges = [tflops * 1000.0 / gbs for gbs, tflops in roofs]
    xs = [_float(v["achieved_intensity"]) for v in points] + ridges
    x_lo, x_hi = min(xs) / 4.0, max(xs) * 4.0
    fig = go.Figure(layout=_layout(go, 14, legend={"orientation": "h", "y": -0.2, "x": 0}))
    for gbs, tflops in roofs:
        ridge = tflops * 1000.0 / gbs
        grid = [x_lo] + ([ridge] if x_lo < ridge < x_hi else []) + [x_hi]
        fig.add_trace(go.Scatter(
            x=grid, y=[min(tflops, x * gbs / 1000.0) for x in grid], mode="lines",
            line={"color": "#444", "width": 2},
            name=f"roof: {gbs:.4g} GB/s, {tflops:.4g} TFLOP/s",
            hovertemplate="intensity %{x:.3g} FLOP/B<br>bound %{y:.3g} TFLOP/s<extra></extra>"))
    symbols = ["circle", "square", "diamond", "triangle-up", "x", "star", "cross", "hexagon"]
    tests = list(dict.fromkeys(str(v.get("test", "")) for v in points))
    for var in points:
        label = _esc(f"{var.get('variant')} · {_short(str(var.get('test', '')), names)}")
        fig.add_trace(go.Scatter(
            x=[_float(var["achieved_intensity"])], y=[_float(var["achieved_tflops"])],
            mode="markers", name=label,
            marker={"size": 11, "symbol": symbols[tests.index(str(var.get("test", "")))
                                                 % len(symbols)],
                    "line": {"width": 1, "color": "#000"}},
            hovertext=_esc(f"{var.get('test')} / {var.get('variant')}: "
                           f"{_num(var.get('achieved_tflops'))} TFLOP/s at "
                           f"{_num(var.get('achieved_intensity'))} FLOP/B, "
                           f"{_num(var.get('roofline_fraction'))} of the roof"),
            hoverinfo="text"))
    fig.update_xaxes(type="log", title_text="arithmetic intensity (FLOP/byte)")
    ys = [_float(v["achieved_tflops"]) for v in points] + [t for _, t in roofs]
    ys.append(x_lo * min(g for g, _ in roofs) / 1000.0)
    fig.update_yaxes(type="log", title_text="attainable performance (TFLOP/s)",
                     range=[math.log10(min(ys) / 2.0), math.log10(max(ys) * 2.5)])
    fig.update_xaxes(range=[math.log10(x_lo), math.log10(x_hi)])
    fig.update_layout(height=480)
    return fig


def _finite(value: object) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(value))


def _float(value: object) -> float:
    """A number already checked with :func:`_finite`, as a float."""
    assert isinstance(value, (int, float)), value
    return float(value)


# -- page ----------------------------------------------------------------------


def _json_for_script(text: str) -> str:
    """JSON safe inside <script>: plotly's encoder already escapes ``<``, ``>``, ``/``."""
    return text.replace("<", "\\u003c").replace(">", "\\u003e")


def _js_for_script(js: str) -> str:
    # plotly.js has no closing script tag in it; guard anyway, as its own to_html does not
    return js.replace("</script", "<\\/script")


_HEAD_SCRIPT = """<script>
window.hwoptErrors = [];
function hwoptError(msg) {
  window.hwoptErrors.push(String(msg));
  var el = document.body || document.documentElement;
  el.dataset.hwoptErrors = window.hwoptErrors.join(" | ");
}
window.addEventListener("error", function (e) { hwoptError(e.message || e); });
window.addEventListener("unhandledrejection", function (e) { hwoptError(e.reason); });
</script>"""

_RUN_SCRIPT = """<script>
(function () {
  var ids = __IDS__;
  var config = {displaylogo: false, responsive: true};
  var jobs = ids.map(function (id) {
    var fig = JSON.parse(document.getElementById(id + "-data").textContent);
    return Plotly.newPlot(id, fig.data, fig.layout, config);
  });
  Promise.all(jobs).then(function () {
    if (window.hwoptErrors.length) {
      document.body.dataset.hwoptErrors = window.hwoptErrors.join(" | ");
    }
    document.body.dataset.hwoptPlots = String(ids.length);
    document.body.dataset.hwoptRendered = "1";
  }, function (err) { hwoptError(err); });
})();
</script>"""

_STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 0;
       color: #222; background: #fafafa; }
header { background: #263238; color: #fff; padding: 14px 28px 10px; }
header h1 { margin: 0 0 4px; font-size: 22px; }
header p { margin: 4px 0; }
header .facts { color: #cfd8dc; font-size: 13px; }
nav { padding: 8px 28px; background: #eceff1; font-size: 14px; position: sticky; top: 0;
      z-index: 10; border-bottom: 1px solid #cfd8dc; }
nav a { margin-right: 16px; color: #1565c0; text-decoration: none; }
main { padding: 4px 28px 40px; }
section { background: #fff; border: 1px solid #e0e0e0; border-radius: 6px;
          padding: 8px 16px 14px; margin: 14px 0; }
h2 { font-size: 18px; margin: 6px 0 8px; }
.caption { color: #555; font-size: 13px; margin: 2px 0 6px; }
.key { display: inline-block; width: 10px; height: 10px; margin: 0 3px 0 10px;
       border-radius: 2px; }
.empty { color: #777; font-style: italic; }
table { border-collapse: collapse; font-size: 12.5px; width: 100%; }
th, td { padding: 3px 8px; border-bottom: 1px solid #eee; text-align: left;
         vertical-align: top; }
thead th { position: sticky; top: 0; background: #f5f5f5; border-bottom: 2px solid #ccc; }
.scroll { max-height: 440px; overflow: auto; border: 1px solid #eee; }
table.summary td { white-space: nowrap; border-bottom: none; }
table.summary td.test { white-space: normal; background: #fff; min-width: 180px;
                        max-width: 420px; }
table.summary td.ci { white-space: normal; }
table.summary tr.first td { border-top: 1px solid #cfd8dc; }
table.summary td.message { color: #666; font-size: 11.5px; white-space: normal;
                           padding: 0 8px 5px 20px; }
td.status { font-weight: 600; }
tr.status-passed td.status { color: #2e7d32; }
tr.status-failed td.status { color: #c62828; }
tr.status-failed { background: #ffebee; }
tr.status-inconclusive td.status { color: #ef8f00; }
tr.status-inconclusive { background: #fff8e1; }
tr.status-skipped td.status { color: #757575; }
tr.status-reported td.status, tr.status-measured td.status { color: #1565c0; }
.badge { display: inline-block; padding: 1px 8px; border-radius: 10px; font-size: 13px;
         background: #546e7a; color: #fff; margin-right: 4px; }
.badge.status-passed { background: #2e7d32; }
.badge.status-failed { background: #c62828; }
.badge.status-inconclusive { background: #ef8f00; }
.badge.status-skipped { background: #757575; }
.badge.status-reported { background: #1565c0; }
table.env th { width: 260px; font-weight: 500; color: #444; }
code { font-size: 12px; }
"""

_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
{head_script}
<style>{style}</style>
</head>
<body>
<header>
{header}
</header>
<nav>{nav}</nav>
<main>
{body}
</main>
{plot_data}{plotly_js}{run_script}</body>
</html>
"""
