"""Plotly figures from analysis frames.  Each builder takes the frame an analysis function
returned (the same rows its REST route answers with) and draws it; none computes figures of
its own beyond picking columns, so what a chart shows is what the REST query says."""

from __future__ import annotations

import plotly.graph_objects as go
import polars as pl
from plotly.colors import qualitative

from tracehouse.api.dashboard.render import short

PALETTE = qualitative.Plotly + qualitative.D3
MAX_PERIOD_LINES = 60  # period boundaries drawn on Fig 8; more would only grey the chart out
_AXIS = {"gridcolor": "#e5e8ec", "linecolor": "#9aa5b1", "zerolinecolor": "#c9d1da", "automargin": True}


def new_figure(*traces: object) -> go.Figure:
    """A figure with plain styling set directly.  A named plotly template would be resolved on
    every figure (tens of ms) and copied whole into each chart's JSON (about 8 KB), so none is used."""
    return go.Figure(
        data=list(traces),
        layout={
            "template": "none",
            "font": {"size": 12},
            "colorway": PALETTE,
            "xaxis": _AXIS,
            "yaxis": _AXIS,
            "hovermode": "closest",
            "legend": {"font": {"size": 11}},
        },
    )


def _label(value: object) -> str:
    return "(none)" if value is None else str(value)


def stacked_bars(bars: list[tuple[str, pl.DataFrame]], key: str, value: str, axis: str) -> go.Figure:
    """One bar per (label, frame), stacked by ``key`` (Fig 7): one trace per key value, so a
    key keeps its colour across bars."""
    keys = list(dict.fromkeys(_label(k) for _, frame in bars for k in frame[key].to_list()))
    fig = new_figure()
    for i, name in enumerate(keys):
        xs, ys, hover = [], [], []
        for label, frame in bars:
            rows = frame.filter(pl.col(key).fill_null("(none)") == name) if frame.height else frame
            if rows.height:
                xs.append(label)
                ys.append(rows[value].sum())
                hover.append(name)
        fig.add_bar(
            x=xs,
            y=ys,
            name=short(name, 30),
            marker_color=PALETTE[i % len(PALETTE)],
            hovertext=hover,
            hovertemplate="%{hovertext}: %{y:.4g}<extra>%{x}</extra>",
        )
    fig.update_layout(barmode="stack", yaxis_title=axis, legend={"traceorder": "normal"})
    return fig


def top_bars(frame: pl.DataFrame, key: str, value: str, axis: str) -> go.Figure:
    """Horizontal bars, largest on top: a breakdown's top N."""
    # Ranked labels: two long kernel names cut to the same prefix must stay two bars.
    labels = [f"{i}. {short(k)}" for i, k in enumerate(frame[key].to_list(), 1)]
    full = [_label(k) for k in frame[key].to_list()]
    fig = new_figure(
        go.Bar(
            x=frame[value].to_list(),
            y=labels,
            orientation="h",
            hovertext=full,
            hovertemplate="%{hovertext}<br>%{x:.4g}<extra></extra>",
            marker_color=PALETTE[0],
        )
    )
    fig.update_layout(
        xaxis_title=axis, yaxis={"autorange": "reversed", "automargin": True}, height=max(260, 30 * frame.height + 80)
    )
    return fig


def calls_chart(calls: pl.DataFrame, period: pl.DataFrame, total_calls: int) -> go.Figure:
    """Fig 8: every attention call's query length in execution order, one marker series per
    attention type, the fundamental period shaded and its repetitions marked."""
    fig = new_figure()
    types = list(dict.fromkeys(calls["attention_type"].to_list()))
    for i, kind in enumerate(types):
        part = calls.filter(pl.col("attention_type").eq_missing(kind))
        fig.add_scatter(
            x=part["call"].to_list(),
            y=part["seq_q"].to_list(),
            mode="markers",
            name=_label(kind),
            marker={"size": 5, "color": PALETTE[i % len(PALETTE)]},
            customdata=list(
                zip(part["seq_kv"].to_list(), part["component"].to_list(), part["dur_ns"].to_list(), strict=True)
            ),
            hovertemplate="call %{x}<br>seq_q %{y}<br>seq_kv %{customdata[0]}"
            "<br>%{customdata[1]}<br>%{customdata[2]} ns<extra></extra>",
        )
    if period.height and int(period["repeats"][0]) > 1:
        p, offset, repeats = (int(period[c][0]) for c in ("period", "offset", "repeats"))
        fig.add_vrect(
            x0=offset - 0.5,
            x1=offset + p - 0.5,
            fillcolor="#7fb8ff",
            opacity=0.18,
            line_width=0,
            annotation_text=f"period: {p} calls × {repeats}",
            annotation_position="top left",
        )
        for k in range(1, min(repeats, MAX_PERIOD_LINES) + 1):
            fig.add_vline(x=offset + k * p - 0.5, line={"color": "#7f8fa6", "width": 1, "dash": "dot"})
    fig.update_layout(
        xaxis_title=f"attention call (execution order, {total_calls} calls)",
        yaxis_title="query sequence length [tokens]",
        yaxis_type="log",
    )
    return fig


def histogram_chart(by_count: pl.DataFrame, by_time: pl.DataFrame) -> go.Figure:
    """Fig 9: the share of calls and the share of attention time at each sequence length."""
    fig = new_figure()
    for i, (name, frame) in enumerate((("by call count", by_count), ("by time", by_time))):
        fig.add_bar(
            x=[str(v) for v in frame["seq_len"].to_list()],
            y=frame["fraction"].to_list(),
            name=name,
            marker_color=PALETTE[i],
            hovertemplate="seq_len %{x}<br>%{y:.3f}<extra>" + name + "</extra>",
        )
    fig.update_layout(
        barmode="group", xaxis_title="query sequence length [tokens]", yaxis_title="fraction", xaxis_type="category"
    )
    return fig


def roofline_points(frame: pl.DataFrame) -> pl.DataFrame:
    """The rows a log-log roofline can place: known, positive intensity and throughput."""
    return frame.filter((pl.col("ai_dram") > 0) & (pl.col("gflops_per_s") > 0))


def roofline_chart(frame: pl.DataFrame, key: str) -> go.Figure:
    """Fig 5: one point per group at (FLOP/byte, FLOP/s), counters and analytic marked apart,
    under the device's compute and bandwidth ceilings."""
    points = roofline_points(frame)
    fig = new_figure()
    for i, (source, symbol) in enumerate((("analytic", "circle"), ("counters", "diamond"))):
        part = points.filter(pl.col("source") == source)
        if part.height:
            fig.add_scatter(
                x=part["ai_dram"].to_list(),
                y=(part["gflops_per_s"] * 1e9).to_list(),
                mode="markers",
                name=source,
                marker={"symbol": symbol, "size": 11, "color": PALETTE[i]},
                hovertext=[_label(k) for k in part[key].to_list()],
                hovertemplate="%{hovertext}<br>%{x:.3g} FLOP/byte<br>%{y:.3g} FLOP/s<extra></extra>",
            )
    peak, bandwidth = _first(frame, "peak_flops_s"), _first(frame, "peak_bandwidth_bytes_s")
    if peak and bandwidth:
        xs = [*points["ai_dram"].to_list(), peak / bandwidth]
        lo, hi = min(xs) / 10, max(xs) * 10
        ridge = peak / bandwidth
        fig.add_scatter(
            x=[lo, ridge, hi],
            y=[lo * bandwidth, peak, peak],
            mode="lines",
            name="device ceilings",
            line={"color": "#333", "width": 2},
            hovertemplate="%{y:.3g} FLOP/s at %{x:.3g} FLOP/byte<extra>ceiling</extra>",
        )
    fig.update_layout(
        xaxis={"type": "log", "title": "arithmetic intensity [FLOP/byte, DRAM]"},
        yaxis={"type": "log", "title": "achieved [FLOP/s]"},
    )
    return fig


def _first(frame: pl.DataFrame, column: str) -> float | None:
    if not frame.height:
        return None
    values = frame[column].drop_nulls()
    return float(values[0]) if len(values) else None


def utilization_chart(frame: pl.DataFrame) -> go.Figure:
    """Per device: the span split into compute, other busy time (communication, memory) and idle."""
    labels = [f"device {d}" if d is not None else "host" for d in frame["device"].to_list()]
    fig = new_figure()
    for i, (column, name) in enumerate(
        (("compute_ns", "compute"), ("non_compute_ns", "communication / memory"), ("idle_ns", "idle"))
    ):
        fig.add_bar(
            y=labels,
            x=frame[column].to_list(),
            name=name,
            orientation="h",
            marker_color=PALETTE[i],
            hovertemplate="%{x:,} ns<extra>" + name + "</extra>",
        )
    fig.update_layout(
        barmode="stack", xaxis_title="time [ns] (union of kernel intervals)", height=max(220, 50 * frame.height + 140)
    )
    return fig


def paired_bars(
    frame: pl.DataFrame, key: str, series: list[tuple[str, str]], axis: str, log: bool = False
) -> go.Figure:
    """Grouped bars: for each ``key`` row, one bar per (column, legend name)."""
    labels = [short(k, 36) for k in frame[key].to_list()]
    fig = new_figure()
    for i, (column, name) in enumerate(series):
        fig.add_bar(
            x=labels,
            y=frame[column].to_list(),
            name=name,
            marker_color=PALETTE[i % len(PALETTE)],
            hovertemplate="%{x}<br>%{y:.4g}<extra>" + name + "</extra>",
        )
    fig.update_layout(barmode="group", yaxis_title=axis, yaxis_type="log" if log else "linear")
    return fig


def sweep_chart(frame: pl.DataFrame, knob: str, series_keys: list[str]) -> go.Figure:
    """Fig 10 / 14: operator time against the knob on log-log axes, one line per series ×
    operator, its fitted exponent in the legend."""
    fig = new_figure()
    groups = frame.partition_by([*series_keys, "operator"], maintain_order=True) if frame.height else []
    for i, part in enumerate(groups):
        exponent = part["exponent"][0]
        varying = [f"{part[k][0]}" for k in series_keys if part[k][0] is not None]
        name = f"{part['operator'][0]} ({', '.join(varying)})" + (f" k={exponent:.2f}" if exponent is not None else "")
        fig.add_scatter(
            x=part[knob].to_list(),
            y=part["total_ns"].to_list(),
            mode="lines+markers",
            name=short(name, 60),
            marker={"size": 8, "color": PALETTE[i % len(PALETTE)]},
            hovertemplate=f"{knob} %{{x}}<br>%{{y:,.0f}} ns<extra></extra>",
        )
    fig.update_layout(xaxis={"type": "log", "title": knob}, yaxis={"type": "log", "title": "time [ns]"})
    return fig


def error_bars(frame: pl.DataFrame, key: str, value: str, spread: str | None, axis: str) -> go.Figure:
    """Fig 1: one bar per group, with its spread as an error bar when there is one."""
    error = {"type": "data", "array": frame[spread].to_list(), "visible": True} if spread else None
    fig = new_figure(
        go.Bar(
            x=[_label(k) for k in frame[key].to_list()],
            y=frame[value].to_list(),
            error_y=error,
            marker_color=PALETTE[0],
            hovertemplate="%{x}: %{y:.4g}<extra></extra>",
        )
    )
    fig.update_layout(yaxis_title=axis)
    return fig


def memory_chart(frame: pl.DataFrame) -> go.Figure:
    """``memory_timeline``'s rows: per device, the largest allocated total of each time bucket
    (a marker per bucket) and the reserved total under it, against time from the first event."""
    fig = new_figure()
    for i, device in enumerate(sorted(frame["device"].unique().to_list())):
        rows = frame.filter(pl.col("device") == device)
        color = PALETTE[i % len(PALETTE)]
        fig.add_scatter(
            x=rows["offset_ns"].to_list(),
            y=rows["allocated_bytes"].to_list(),
            mode="lines+markers",
            name=f"{device} allocated",
            line={"color": color},
            hovertemplate="%{x:,} ns<br>%{y:,} bytes<extra>" + device + " allocated</extra>",
        )
        fig.add_scatter(
            x=rows["offset_ns"].to_list(),
            y=rows["reserved_bytes"].to_list(),
            mode="lines",
            name=f"{device} reserved",
            line={"color": color, "dash": "dot"},
            hovertemplate="%{x:,} ns<br>%{y:,} bytes<extra>" + device + " reserved</extra>",
        )
    fig.update_layout(xaxis_title="time from the first memory event [ns]", yaxis_title="bytes")
    return fig
