"""The monitoring report: one self-contained HTML page per monitor run.

Charts are matplotlib PNGs embedded as base64, so the page is a single file that opens
anywhere (a lake folder, an MLflow artifact, an e-mail). Inputs are small pandas frames
(the monitoring table's rows and pooled histograms), never raw data.
"""

from __future__ import annotations

import base64
import html
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

STATUS_COLOURS = {"ok": "#2e7d32", "warn": "#ef6c00", "alert": "#c62828"}


@dataclass
class ReportInput:
    """What one report shows. ``metrics`` has the monitoring table's columns (date, kind,
    column, slice, window_days, metric, value, warn_threshold, alert_threshold, status,
    model_version); ``histograms`` has (column, bin, label, ref_n, cur_n)."""

    title: str
    facts: list[tuple[str, str]]
    metrics: pd.DataFrame
    histograms: pd.DataFrame = field(default_factory=pd.DataFrame)
    drift_metric: str = "psi"
    quality_metrics: Sequence[str] = ("areaUnderROC", "positive_rate", "predicted_positive_rate", "log_loss")
    prediction_columns: Sequence[str] = ("probability", "prediction")
    max_columns: int = 24
    causes: pd.DataFrame = field(default_factory=pd.DataFrame)
    """`mlops_spark.monitoring.causes.rank_causes` of the run's partitions: what the page opens with."""
    primary_metric: str = "areaUnderROC"
    holdout: float | None = None
    """The primary metric on the training run's holdout (a reference line on the chart)."""


def _png(fig: Figure) -> str:
    # every chart lays itself out (tight_layout, or a constrained layout for the heatmaps);
    # bbox_inches="tight" would draw it twice
    # to crop a few pixels of margin (30% of the page's render time, measured)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    data = base64.b64encode(buf.getvalue()).decode("ascii")
    return f'<img class="chart" alt="chart" src="data:image/png;base64,{data}">'


def _dates(df: pd.DataFrame) -> pd.Series:
    return pd.to_datetime(df["date"])


def _grid(n: int, cols: int = 4) -> tuple[int, int]:
    cols = max(1, min(cols, n))
    return math.ceil(n / cols), cols


def drift_heatmap(metrics: pd.DataFrame, metric: str, columns: Sequence[str]) -> str | None:
    d = metrics[(metrics.kind == "drift") & (metrics.metric == metric) & (metrics.window_days == 1)]
    d = d[d.column.isin(columns)]
    if d.empty:
        return None
    # each column against its own alert limit (calibrated limits differ by column): 1 = alert
    ratio = d.value / d.alert_threshold.where(d.alert_threshold > 0)
    d = d.assign(ratio=ratio)
    table = d.pivot_table(index="column", columns="date", values="ratio", aggfunc="mean").reindex(
        [c for c in columns if c in set(d.column)]
    )
    if table.isna().all().all():
        return None
    fig = Figure(figsize=(12, 0.35 * len(table) + 1.6), layout="constrained")
    ax = fig.add_subplot()
    im = ax.imshow(table.values, aspect="auto", cmap="YlOrRd", vmin=0, vmax=2, interpolation="nearest")
    ax.set_yticks(range(len(table)), table.index)
    dates = list(table.columns)
    step = max(1, len(dates) // 12)
    ax.set_xticks(range(0, len(dates), step), [str(x) for x in dates[::step]], rotation=45, ha="right")
    ax.set_title(f"{metric} per partition and column, as a share of the column's alert limit (1 = alert)")
    fig.colorbar(im, ax=ax, fraction=0.025)
    return _png(fig)


def drift_lines(metrics: pd.DataFrame, metric: str, columns: Sequence[str]) -> str | None:
    d = metrics[(metrics.kind == "drift") & (metrics.metric == metric) & metrics.column.isin(columns)]
    if d.empty:
        return None
    present = [c for c in columns if c in set(d.column)]
    rows, cols = _grid(len(present))
    fig = Figure(figsize=(4 * cols, 2.6 * rows))
    for i, column in enumerate(present):
        ax = fig.add_subplot(rows, cols, i + 1)
        part = d[d.column == column].sort_values("date")
        for days, sub in part.groupby("window_days"):
            ax.plot(
                _dates(sub),
                sub.value,
                lw=0.8 if days == 1 else 2.0,
                label="partition" if days == 1 else f"{days}d",
            )
        for kind, colour in (
            ("warn_threshold", STATUS_COLOURS["warn"]),
            ("alert_threshold", STATUS_COLOURS["alert"]),
        ):
            bound = part[part.window_days == 1][kind].dropna()
            if not bound.empty:
                ax.axhline(float(bound.iloc[0]), color=colour, ls="--", lw=0.8)
        ax.set_title(column, fontsize=9)
        ax.tick_params(labelsize=7)
        for label in ax.get_xticklabels():
            label.set_rotation(30)
        if i == 0:
            ax.legend(fontsize=7)
    fig.suptitle(f"{metric} over time (dashed: the single-partition warn / alert limits)")
    fig.tight_layout()
    return _png(fig)


def histogram_grid(hist: pd.DataFrame, columns: Sequence[str]) -> str | None:
    if hist.empty:
        return None
    present = [c for c in columns if c in set(hist.column)]
    if not present:
        return None
    rows, cols = _grid(len(present))
    fig = Figure(figsize=(4 * cols, 2.6 * rows))
    for i, column in enumerate(present):
        ax = fig.add_subplot(rows, cols, i + 1)
        part = hist[hist.column == column].sort_values("order")
        ref = part.ref_n / max(part.ref_n.sum(), 1)
        cur = part.cur_n / max(part.cur_n.sum(), 1)
        x = np.arange(len(part))
        ax.bar(x - 0.2, ref, width=0.4, label="reference", color="#90a4ae")
        ax.bar(x + 0.2, cur, width=0.4, label="current", color="#1565c0")
        ax.set_xticks(x, [str(v) for v in part.label], rotation=60, ha="right", fontsize=6)
        ax.set_title(column, fontsize=9)
        ax.tick_params(axis="y", labelsize=7)
        if i == 0:
            ax.legend(fontsize=7)
    fig.suptitle("Reference vs current distribution (share of rows per reference bin)")
    fig.tight_layout()
    return _png(fig)


def quality_lines(metrics: pd.DataFrame, names: Sequence[str]) -> str | None:
    q = metrics[(metrics.kind == "quality") & (metrics.slice == "all") & metrics.metric.isin(names)]
    if q.empty:
        return None
    present = [m for m in names if m in set(q.metric)]
    rows, cols = _grid(len(present), 2)
    fig = Figure(figsize=(6 * cols, 2.8 * rows))
    for i, metric in enumerate(present):
        ax = fig.add_subplot(rows, cols, i + 1)
        part = q[q.metric == metric].sort_values("date")
        ax.plot(_dates(part), part.value, marker=".", lw=1)
        if len(part) >= 7:
            ax.plot(_dates(part), part.value.rolling(7, min_periods=3).mean(), lw=2, label="7-partition mean")
            ax.legend(fontsize=7)
        for kind, colour in (
            ("warn_threshold", STATUS_COLOURS["warn"]),
            ("alert_threshold", STATUS_COLOURS["alert"]),
        ):
            bound = part[kind].dropna()
            if not bound.empty:
                ax.axhline(float(bound.iloc[0]), color=colour, ls="--", lw=0.8)
        ax.set_title(metric, fontsize=9)
        ax.tick_params(labelsize=7)
    fig.suptitle("Realised quality per partition (labels joined to predictions)")
    fig.tight_layout()
    return _png(fig)


def estimated_vs_realised(metrics: pd.DataFrame, metric: str, holdout: float | None) -> str | None:
    """The quality estimated from calibrated probabilities beside the realised quality, per
    partition: the estimate is there from the day a partition is scored, the realised line
    once its labels land; a gap that opens between them is what concept drift looks like."""
    one = metrics[(metrics.slice == "all") & (metrics.window_days == 1) & (metrics.metric == metric)]
    est = one[one.kind == "estimated_quality"].sort_values("date")
    real = one[one.kind == "quality"].sort_values("date")
    if est.empty and real.empty:
        return None
    fig = Figure(figsize=(12, 3.2))
    ax = fig.add_subplot()
    if not est.empty:
        ax.plot(_dates(est), est.value, lw=1.5, label=f"estimated {metric} (before labels)")
    if not real.empty:
        ax.plot(_dates(real), real.value, marker=".", lw=0.8, label=f"realised {metric} (labels)")
    if holdout is not None:
        ax.axhline(holdout, color="#555", ls=":", lw=1, label="training holdout")
    for part in (est, real):
        flagged = part[part.status.isin(["warn", "alert"])]
        for status in ("warn", "alert"):
            f = flagged[flagged.status == status]
            if not f.empty:
                ax.scatter(_dates(f), f.value, color=STATUS_COLOURS[status], s=18, zorder=3)
    bound = pd.concat([est, real]).alert_threshold.dropna()
    if not bound.empty:
        ax.axhline(float(bound.iloc[0]), color=STATUS_COLOURS["alert"], ls="--", lw=0.8, label="alert limit")
    ax.set_title(f"{metric}: estimated vs realised per partition")
    ax.legend(fontsize=7)
    ax.tick_params(labelsize=7)
    fig.tight_layout()
    return _png(fig)


def slice_heatmap(metrics: pd.DataFrame, metric: str = "areaUnderROC") -> str | None:
    q = metrics[(metrics.kind == "quality") & (metrics.metric == metric) & (metrics.slice != "all")]
    if q.empty:
        return None
    q = q.assign(month=pd.to_datetime(q.date).dt.to_period("M").astype(str))
    table = q.pivot_table(index="slice", columns="month", values="value", aggfunc="median")
    fig = Figure(figsize=(12, 0.3 * len(table) + 1.6), layout="constrained")
    ax = fig.add_subplot()
    im = ax.imshow(table.values, aspect="auto", cmap="RdYlGn", interpolation="nearest")
    ax.set_yticks(range(len(table)), table.index, fontsize=7)
    ax.set_xticks(range(len(table.columns)), list(table.columns), rotation=45, ha="right")
    ax.set_title(f"{metric} per slice (median over the month's partitions)")
    fig.colorbar(im, ax=ax, fraction=0.025)
    return _png(fig)


def canary_lines(metrics: pd.DataFrame) -> str | None:
    c = metrics[metrics.kind == "canary"]
    if c.empty:
        return None
    fig = Figure(figsize=(12, 3))
    ax1, ax2 = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    for metric in ("agreement", "mean_abs_diff", "ks"):
        part = c[(c.metric == metric) & (c.slice == "all")].sort_values("date")
        if not part.empty:
            ax1.plot(_dates(part), part.value, marker=".", label=metric)
    ax1.set_title("challenger vs champion: agreement and prediction drift")
    ax1.legend(fontsize=7)
    for kind, label in (("quality", "champion"), ("canary_quality", "challenger")):
        part = metrics[(metrics.kind == kind) & (metrics.metric == "areaUnderROC") & (metrics.slice == "all")]
        part = part[part.date.isin(set(c.date))].sort_values("date")
        if not part.empty:
            ax2.plot(_dates(part), part.value, marker=".", label=label)
    ax2.set_title("realised areaUnderROC on shadow partitions")
    ax2.legend(fontsize=7)
    for ax in (ax1, ax2):
        ax.tick_params(labelsize=7)
    fig.tight_layout()
    return _png(fig)


def _table(df: pd.DataFrame, limit: int = 40) -> str:
    if df.empty:
        return "<p>None.</p>"
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in df.columns)
    body = []
    for _, row in df.head(limit).iterrows():
        cells = []
        for c in df.columns:
            v = row[c]
            text = f"{v:.4g}" if isinstance(v, float) else str(v)
            style = (
                f' style="color:{STATUS_COLOURS[v]};font-weight:bold"'
                if c == "status" and v in STATUS_COLOURS
                else ""
            )
            cells.append(f"<td{style}>{html.escape(text)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    more = f"<p>... and {len(df) - limit} more.</p>" if len(df) > limit else ""
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>{more}"


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px;color:#222;max-width:1400px}
h1{font-size:22px} h2{font-size:18px;margin-top:32px;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:13px} td,th{border:1px solid #ddd;padding:3px 8px;text-align:left}
th{background:#f5f5f5} img.chart{max-width:100%;display:block;margin:8px 0}
.facts td:first-child{font-weight:bold}
.badge{display:inline-block;padding:2px 10px;border-radius:10px;color:#fff}
#render-check{color:#c62828;font-weight:bold}
"""

# Marks the page when a chart fails to decode, so a broken report is visible to a person
# and to the browser test.
_SCRIPT = """
window.addEventListener('load', function () {
  var imgs = Array.prototype.slice.call(document.querySelectorAll('img.chart'));
  var ok = imgs.filter(function (i) { return i.complete && i.naturalWidth > 0; }).length;
  document.body.setAttribute('data-charts', imgs.length);
  document.body.setAttribute('data-charts-rendered', ok);
  if (ok < imgs.length) {
    document.getElementById('render-check').textContent = (imgs.length - ok) + ' chart(s) failed to render';
  }
});
"""


def render_report(inp: ReportInput) -> str:
    """The whole page as one HTML string."""
    m = inp.metrics
    drift_columns = list(dict.fromkeys([*inp.prediction_columns, *sorted(set(m[m.kind == "drift"].column))]))
    drift_columns = [c for c in drift_columns if c in set(m.column)][: inp.max_columns]
    latest = m.date.max() if not m.empty else None
    counts = m[m.date == latest].status.value_counts() if latest is not None else pd.Series(dtype=int)
    badges = " ".join(
        f'<span class="badge" style="background:{STATUS_COLOURS[s]}">{s}: {int(counts.get(s, 0))}</span>'
        for s in ("ok", "warn", "alert")
    )
    flagged = m[m.status.isin(["warn", "alert"]) & (m.date == latest)]
    cols = [
        "date",
        "kind",
        "column",
        "slice",
        "window_days",
        "metric",
        "value",
        "warn_threshold",
        "alert_threshold",
        "status",
        "relative",
        "threshold_source",
    ]
    flagged = flagged.sort_values(["status", "value"], ascending=[True, False])[
        [c for c in cols if c in m.columns]
    ]
    worst = (
        m[(m.kind == "drift") & (m.metric == inp.drift_metric) & (m.window_days == 1)]
        .groupby("column")
        .value.agg(["mean", "max"])
        .sort_values("max", ascending=False)
        .reset_index()
    )
    causes = inp.causes
    if not causes.empty:
        causes = causes.sort_values("date", ascending=False)
    summary = (
        "<p>Per partition of this run, newest first: the feature columns that changed, by how many "
        "standard deviations of their own reference spread (calibrated limits), whether the "
        "prediction moved with them, and the quality estimated before labels beside the realised "
        "quality once labels are in.</p>" + _table(causes)
        if not causes.empty
        else None
    )
    sections = [
        ("What changed, and what it did to quality", summary),
        (
            f"{inp.primary_metric}: estimated vs realised",
            estimated_vs_realised(m, inp.primary_metric, inp.holdout),
        ),
        (
            "Status of the newest partition",
            f"<p>{html.escape(str(latest))} &nbsp; {badges}</p>" + _table(flagged),
        ),
        (f"Drift overview ({inp.drift_metric})", drift_heatmap(m, inp.drift_metric, drift_columns)),
        (
            f"Columns by largest {inp.drift_metric}",
            _table(worst.rename(columns={"mean": "mean over partitions", "max": "max"})),
        ),
        ("Drift over time per column", drift_lines(m, inp.drift_metric, drift_columns)),
        ("Reference vs current", histogram_grid(inp.histograms, drift_columns)),
        ("Realised quality over time", quality_lines(m, inp.quality_metrics)),
        ("Quality per slice", slice_heatmap(m)),
        ("Canary: @challenger beside @champion", canary_lines(m)),
        (
            "A/B comparison",
            _table(
                m[m.kind == "ab"].sort_values("date", ascending=False)[[c for c in cols if c in m.columns]]
            )
            if (m.kind == "ab").any()
            else None,
        ),
    ]
    facts = "".join(f"<tr><td>{html.escape(k)}</td><td>{html.escape(v)}</td></tr>" for k, v in inp.facts)
    body = "".join(f"<h2>{html.escape(title)}</h2>{content}" for title, content in sections if content)
    return (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>{html.escape(inp.title)}</title><style>{_CSS}</style></head><body>"
        f"<h1>{html.escape(inp.title)}</h1><div id='render-check'></div>"
        f"<table class='facts'>{facts}</table>{body}<script>{_SCRIPT}</script></body></html>"
    )


def save_report(text: str, uri: str, spark: Any = None) -> str:
    """Write the page to a local path or any Hadoop-compatible URI; returns the location."""
    scheme = urlparse(uri).scheme
    if scheme in ("", "file"):
        path = Path(urlparse(uri).path if scheme == "file" else uri)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        return str(path.resolve())
    if spark is None:
        raise ValueError(f"writing a report to {uri} needs the Spark session (Hadoop FileSystem)")
    jvm = spark.sparkContext._jvm
    hpath = jvm.org.apache.hadoop.fs.Path(uri)
    fs = hpath.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration())
    out = fs.create(hpath, True)
    try:
        out.write(bytearray(text.encode("utf-8")))
    finally:
        out.close()
    return uri
