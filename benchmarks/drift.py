"""How well do the calibrated drift limits find real change, and how often do they cry wolf?

    make demo            # a lake under ./lake and a champion in ./mlflow.db
    python benchmarks/drift.py [--config conf/flights.yml] [--from 2013-01-01 --to 2013-04-30]

Real feature days of the range (by default the demo champion's training range) are split in
two interleaved halves: the even days are the reference (limits calibrated on them exactly as
the monitor does: each day against the rest, `mlops_spark.monitoring.calibration`), the odd
days are *untouched* days of the same season the limits never saw. Copies of the untouched
days get one known change in one column:

* a mean shift of 0.5, 1 and 2 reference standard deviations (numeric columns);
* a variance change (deviations from the reference mean times 1.5);
* 20% of the column's values set to null;
* a category replaced by another one (the most frequent reference category of a categorical
  column becomes the second most frequent);
* a label-rate change (10% of the negative labels turned positive: no feature moves).

Per metric, the table gives the recall on changed (column, day) pairs (an alert on the
changed column) and the false-alert rate on untouched ones (any monitored column), with the
calibrated limits and with the fixed defaults they replace. With a champion in the registry,
its monitoring baseline's probability calibration estimates the AUC of every day before
labels, compared with the realised AUC (the estimate cannot see a label-rate change: it is
there to show what only labels tell). Writes a chart (``--chart``).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SHIFTS = (0.5, 1.0, 2.0)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", default=str(ROOT / "conf" / "flights.yml"))
    parser.add_argument("--env", default="local")
    parser.add_argument("--set", action="append", default=[], dest="sets")
    parser.add_argument("--from", dest="start", type=dt.date.fromisoformat)
    parser.add_argument("--to", dest="end", type=dt.date.fromisoformat)
    parser.add_argument("--chart", default=str(ROOT / "docs" / "img" / "drift_benchmark.png"))
    parser.add_argument("--json", default=str(ROOT / "benchmarks" / "results" / "drift.json"))
    args = parser.parse_args()

    import pandas as pd
    from pyspark.sql import DataFrame
    from pyspark.sql import functions as F

    from mlops_spark import lake
    from mlops_spark.catalog import Catalog
    from mlops_spark.config import load_config
    from mlops_spark.monitoring.calibration import calibrate
    from mlops_spark.monitoring.drift import drift_metrics
    from mlops_spark.monitoring.profile import ReferenceProfile, profile_reference
    from mlops_spark.monitoring.reference import monitored_columns
    from mlops_spark.session import get_spark

    started = time.perf_counter()
    config = load_config(args.config, args.env, args.sets)
    mon, spec = config.monitoring, config.features
    date_col, label = spec.date_column, spec.label.name if spec.label else None
    spark = get_spark(config.spark, "bench-drift")
    features = Catalog(config).features()
    start = args.start or config.split.train.start
    end = args.end or config.split.train.end
    feats, ref = lake.read_table(spark, features, date_range=(start, end))
    numeric, categorical = monitored_columns(config, feats.schema)
    days = sorted(d for d in lake.list_partitions(spark, features) if start <= d <= end)
    reference_days, untouched_days = days[0::2], days[1::2]
    print(
        f"{ref.name} v{ref.version}: {len(days)} days {start}..{end}; reference {len(reference_days)} "
        f"even days, {len(untouched_days)} untouched odd days; columns: {len(numeric)} numeric, "
        f"{len(categorical)} categorical"
    )
    reference = feats.where(lake.partition_filter(date_col, dates=reference_days)).persist()
    untouched = feats.where(lake.partition_filter(date_col, dates=untouched_days)).persist()
    profile = profile_reference(
        reference,
        numeric,
        categorical,
        bins=mon.bins,
        grid_size=mon.grid_size,
        relative_error=mon.relative_error,
        max_categories=mon.max_categories,
        description="even days",
    )
    chunks = drift_metrics(reference, profile, [date_col], date_col, leave_out=True)
    calibration = calibrate(
        [r.asDict() for r in chunks.select("column", "metric", "window_days", "value").collect()],
        mon.calibration,
        mon.calibration.metrics,
    )
    metrics = list(mon.calibration.metrics)
    fixed = {m: mon.thresholds[m].alert for m in metrics if m in mon.thresholds}

    def measured(df: DataFrame, prof: ReferenceProfile) -> pd.DataFrame:
        out = drift_metrics(df, prof, ["variant", date_col]).where(F.col("metric").isin(metrics))
        pdf: Any = out.select("variant", date_col, "column", "metric", "value").toPandas()
        limits = [calibration.get(c, m, 1) for c, m in zip(pdf.column, pdf.metric, strict=True)]
        pdf["calibrated"] = [lim.alert if lim else float("nan") for lim in limits]
        pdf["fixed"] = [fixed.get(m, float("nan")) for m in pdf.metric]
        return pdf

    # untouched days, every column: false alerts
    base = measured(untouched.withColumn("variant", F.lit("untouched")), profile)

    # changed copies, one column at a time (only that column's drift is measured)
    changed: list[pd.DataFrame] = []
    for column in [*numeric, *categorical]:
        one = ReferenceProfile(
            {column: profile.numeric[column]} if column in profile.numeric else {},
            {column: profile.categorical[column]} if column in profile.categorical else {},
            profile.description,
            profile.rows,
        )
        variants: list[DataFrame] = []
        c = F.col(column)
        if column in profile.numeric:
            p = profile.numeric[column]
            if p.std <= 0:
                continue
            for k in SHIFTS:
                variants.append(
                    untouched.withColumn(column, c + F.lit(k * p.std)).withColumn(
                        "variant", F.lit(f"shift {k}σ")
                    )
                )
            variants.append(
                untouched.withColumn(column, F.lit(p.mean) + (c - F.lit(p.mean)) * 1.5).withColumn(
                    "variant", F.lit("variance ×1.5")
                )
            )
        else:
            ranked = sorted(profile.categorical[column].counts.items(), key=lambda kv: -kv[1])
            if len(ranked) >= 2:
                top, second = ranked[0][0], ranked[1][0]
                variants.append(
                    untouched.withColumn(column, F.when(c == top, F.lit(second)).otherwise(c)).withColumn(
                        "variant", F.lit("category replaced")
                    )
                )
        variants.append(
            untouched.withColumn(column, F.when(F.rand(7) < 0.2, F.lit(None)).otherwise(c)).withColumn(
                "variant", F.lit("20% nulls")
            )
        )
        frame = variants[0]
        for v in variants[1:]:
            frame = frame.unionByName(v)
        changed.append(measured(frame.select("variant", date_col, column), one))
        print(f"  {column}: {len(variants)} change(s) x {len(untouched_days)} days measured")
    hits = pd.concat(changed)

    def rate(df: pd.DataFrame, limit: str) -> float:
        usable = df[df[limit].notna()]
        return float((usable.value > usable[limit]).mean()) if len(usable) else float("nan")

    rows = []
    order = [f"shift {k}σ" for k in SHIFTS] + ["variance ×1.5", "20% nulls", "category replaced"]
    for metric in metrics:
        row: dict[str, Any] = {"metric": metric}
        m_base, m_hits = base[base.metric == metric], hits[hits.metric == metric]
        for variant in order:
            row[variant] = rate(m_hits[m_hits.variant == variant], "calibrated")
        row["false alerts"] = rate(m_base, "calibrated")
        row["false alerts (fixed)"] = rate(m_base, "fixed")
        rows.append(row)

    def any_metric(df: pd.DataFrame, limit: str) -> pd.Series:
        flagged = df.assign(hit=df.value > df[limit]).groupby(["variant", date_col, "column"]).hit.any()
        return flagged

    row = {"metric": "any of them"}
    for variant in order:
        sub = hits[hits.variant == variant]
        row[variant] = float(any_metric(sub, "calibrated").mean()) if len(sub) else float("nan")
    row["false alerts"] = float(any_metric(base, "calibrated").mean())
    row["false alerts (fixed)"] = float(any_metric(base, "fixed").mean())
    rows.append(row)
    table = pd.DataFrame(rows)
    print()
    print("Recall on changed (column, day) pairs and false-alert rate on untouched ones (alert level)")
    print(_markdown(table))

    # per column: how much of its spread is between days (the std of the daily means over the
    # std of all rows): a column that is one value a day moves by 1σ from day to day anyway
    spread = {}
    for column in profile.numeric:
        p = profile.numeric[column]
        daily = reference.groupBy(date_col).agg(F.avg(column).alias("m")).agg(F.stddev_pop("m")).first()
        spread[column] = float(daily[0]) / p.std if daily and daily[0] is not None and p.std > 0 else None
    by_column = []
    for column in [*numeric, *categorical]:
        sub = hits[hits.column == column]
        crow: dict[str, Any] = {"column": column, "daily spread": spread.get(column)}
        for variant in order:
            v = sub[sub.variant == variant]
            crow[variant] = float(any_metric(v, "calibrated").mean()) if len(v) else float("nan")
        crow["false alerts"] = float(any_metric(base[base.column == column], "calibrated").mean())
        by_column.append(crow)
    columns_table = pd.DataFrame(by_column).sort_values("daily spread", na_position="last")
    print()
    print("Per column (any metric): recall by change, false alerts, and its daily spread")
    print(_markdown(columns_table))

    quality = _estimation(spark, config, untouched, label, date_col)
    if quality is not None:
        print()
        print(
            "Estimated (before labels) vs realised AUC per untouched day; 10% of negatives relabelled"
        )
        print(_markdown(quality))
    _chart(table, order, args.chart)
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(
        json.dumps(
            {
                "table": table.to_dict("records"),
                "columns": columns_table.to_dict("records"),
                "quality": quality.to_dict("records") if quality is not None else None,
                "days": [str(start), str(end)],
                "features": f"{ref.name} v{ref.version}",
            },
            indent=1,
            default=str,
        )
    )
    print(f"\nchart: {args.chart}; numbers: {args.json}; {time.perf_counter() - started:.0f}s")


def _estimation(spark: Any, config: Any, untouched: Any, label: str | None, date_col: str) -> Any:
    """Estimated vs realised AUC on the untouched days (and a label-rate change) with the
    champion and the probability calibration of its monitoring baseline (built by monitor)."""
    import mlflow.artifacts
    import pandas as pd
    from pyspark.sql import functions as F

    from mlops_spark import registry
    from mlops_spark.metrics import task_metrics
    from mlops_spark.metrics.estimated import estimated_binary_metrics
    from mlops_spark.monitoring.baseline import ARTIFACT, Baseline
    from mlops_spark.outputs import PROBABILITY
    from mlops_spark.scoring import prepare_scorer

    if label is None or config.model.resolved_task != "binary":
        return None
    client = registry.configure(config.mlflow)
    champion = registry.try_resolve(client, config.mlflow.model_name, config.scoring.alias)
    if champion is None:
        print("(no champion: run `make demo` for the estimated-vs-realised part)")
        return None
    with tempfile.TemporaryDirectory() as tmp:
        try:
            local = mlflow.artifacts.download_artifacts(
                run_id=champion.run_id, artifact_path=ARTIFACT, dst_path=tmp
            )
        except Exception:  # the baseline is built by the first monitor run
            print(f"({champion.describe()} has no monitoring baseline yet: run monitor first)")
            return None
        baseline = Baseline.from_json(json.loads(Path(local).read_text()))
    if baseline.probability is None:
        return None
    keys = [config.features.entity_id.name, date_col]
    scorer = prepare_scorer(
        spark, config.model, champion, untouched, "features", "auto", config.scoring.max_compiled_tree_nodes
    )
    scored = untouched.transform(scorer.score(keys)).join(untouched.select(*keys, label), keys)
    scored = scored.where(F.col(label).isNotNull())
    relabelled = scored.withColumn(
        label, F.when((F.col(label) == 0) & (F.rand(11) < 0.1), F.lit(1.0)).otherwise(F.col(label))
    )
    calibrated = baseline.probability.column(F.col(PROBABILITY))
    out = []
    for name, frame in (("untouched", scored), ("10% negatives relabelled", relabelled)):
        frame = frame.persist()
        est = estimated_binary_metrics(frame, calibrated, [date_col]).where("metric = 'areaUnderROC'")
        real = task_metrics(frame, "binary", label, [date_col]).where("metric = 'areaUnderROC'")
        pdf = (
            est.select(date_col, F.col("value").alias("estimated"))
            .join(real.select(date_col, F.col("value").alias("realised")), date_col)
            .toPandas()
        )
        err = (pdf.estimated - pdf.realised).abs()
        out.append(
            {
                "days": name,
                "n": len(pdf),
                "mean estimated AUC": pdf.estimated.mean(),
                "mean realised AUC": pdf.realised.mean(),
                "mean |error|": err.mean(),
                "max |error|": err.max(),
                "days within 0.03": float((err <= 0.03).mean()),
            }
        )
        frame.unpersist()
    return pd.DataFrame(out)


def _markdown(df: Any) -> str:
    cols = list(df.columns)
    lines = [
        "| " + " | ".join(cols) + " |",
        "|" + "|".join("---" if i == 0 else "---:" for i in range(len(cols))) + "|",
    ]
    for r in df.itertuples(index=False):
        cells = [f"{v:.3f}" if isinstance(v, float) else str(v) for v in r]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _chart(table: Any, order: list[str], path: str) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 3.6))
    ax1, ax2 = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    shifts = [o for o in order if o.startswith("shift")]
    xs = list(SHIFTS)
    for r in table.to_dict("records"):
        ax1.plot(
            xs,
            [r[s] for s in shifts],
            marker="o",
            label=r["metric"],
            lw=2 if r["metric"] == "any of them" else 1,
        )
    ax1.axhline(0.95, color="#888", ls=":", lw=1)
    ax1.set_xlabel("mean shift (reference standard deviations)")
    ax1.set_ylabel("recall (alert)")
    ax1.set_title("recall on shifted days")
    ax1.legend(fontsize=7)
    names = [r["metric"] for r in table.to_dict("records")]
    pos = range(len(names))
    ax2.bar(
        [p - 0.2 for p in pos],
        table["false alerts (fixed)"],
        width=0.4,
        label="fixed thresholds",
        color="#c62828",
    )
    ax2.bar([p + 0.2 for p in pos], table["false alerts"], width=0.4, label="calibrated", color="#2e7d32")
    ax2.set_xticks(list(pos), names, rotation=30, ha="right", fontsize=7)
    ax2.set_yscale("symlog", linthresh=0.01)
    ax2.axhline(0.01, color="#888", ls=":", lw=1)
    ax2.set_title("false-alert rate on untouched days")
    ax2.legend(fontsize=7)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)


if __name__ == "__main__":
    main()
