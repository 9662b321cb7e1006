"""monitor: predictions + features (+ labels) -> drift and realised quality -> monitoring table
and an HTML report; with a distinct @challenger, canary (shadow) scoring beside @champion."""

from __future__ import annotations

import datetime as dt
import json
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import mlflow
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from mlops_spark import canary, lake, registry
from mlops_spark.config import AppConfig
from mlops_spark.errors import JobFailed
from mlops_spark.jobs.args import JobArgs
from mlops_spark.jobs.train import FEATURES_VERSION_TAG
from mlops_spark.monitoring import (
    ALL,
    COLUMN,
    METRIC,
    NEW,
    OTHER,
    SLICE,
    VALUE,
    ReferenceProfile,
    classification_quality,
    drift_metrics,
    pooled_bins,
    profile_reference,
    regression_quality,
    with_status,
)
from mlops_spark.registry import ModelRef
from mlops_spark.report import ReportInput, render_report, save_report
from mlops_spark.runtime import JobContext, run_job

MONITORING_COLUMNS = [
    "model_name",
    "model_version",
    "kind",
    COLUMN,
    SLICE,
    "window_days",
    METRIC,
    VALUE,
    "warn_threshold",
    "alert_threshold",
    "status",
    "reference",
    "run_id",
    "computed_at",
]
LABELS_AVAILABLE = "labels_available"


def monitoring_table(config: AppConfig) -> str:
    return config.monitoring.table or config.predictions_table


def monitored_columns(config: AppConfig, schema: T.StructType) -> tuple[list[str], list[str]]:
    """(numeric, categorical) feature columns: monitoring.columns or the model's inputs."""
    model = config.model
    if not config.monitoring.columns:
        return list(model.numeric), list(model.categorical)
    numeric: list[str] = []
    categorical: list[str] = []
    types = {f.name: f.dataType for f in schema.fields}
    for column in config.monitoring.columns:
        if column not in types:
            raise JobFailed(
                f"monitoring.columns: features.{config.features.name} has no column {column!r} "
                f"(it has: {', '.join(sorted(types))})"
            )
        is_number = isinstance(types[column], T.NumericType) and column not in model.categorical
        (numeric if is_number else categorical).append(column)
    return numeric, categorical


def prediction_columns(config: AppConfig) -> tuple[list[str], list[str]]:
    if config.model.task == "classification":
        return ["probability"], ["prediction"]
    return ["prediction"], []


def monitor(config: AppConfig, args: JobArgs = JobArgs(), spark: SparkSession | None = None) -> JobContext:
    """Monitor the prediction partitions not yet monitored for the model version that scored
    them, or whose labels have grown since (labels land late); --date / --from --to redo a
    range. Writes monitoring.<model> (one row per model version, partition, column, slice,
    window and metric, with thresholds and status) and a report; exits 0 with "nothing to
    monitor" when everything is up to date."""

    def body(ctx: JobContext) -> None:
        mon = config.monitoring
        spec = config.features
        date_col, entity = spec.date_column, spec.entity_id.name
        label = spec.label.name if spec.label else None
        client = registry.configure(config.mlflow)
        pred_name = f"predictions.{config.predictions_table}"
        pred_path = ctx.table_path("predictions", config.predictions_table)
        mon_name = f"monitoring.{monitoring_table(config)}"
        mon_path = ctx.table_path("monitoring", monitoring_table(config))
        preds, pred_ref = lake.read_table(ctx.spark, pred_path, pred_name)
        feats, feat_ref = lake.read_table(
            ctx.spark, ctx.table_path("features", spec.name), f"features.{spec.name}"
        )
        ctx.read(pred_ref)
        ctx.read(feat_ref)
        for column in mon.slices:
            if column not in feats.columns:
                raise JobFailed(
                    f"monitoring.slices: {feat_ref.name} has no column {column!r} (it has: "
                    f"{', '.join(sorted(feats.columns))})"
                )

        targets = choose_targets(ctx, preds, feats, mon_path, label, args)
        if not targets:
            ctx.say(
                f"nothing to monitor: every partition of {pred_name} is monitored and no new labels landed"
            )
            ctx.result["monitored_partitions"] = 0
            return
        numeric, categorical = monitored_columns(config, feats.schema)
        pred_numeric, pred_categorical = prediction_columns(config)
        longest = max([1, *mon.windows])
        span = (min(targets) - dt.timedelta(days=longest - 1), max(targets))
        pairs = (
            preds.where(lake.partition_filter(date_col, dates=targets))
            .select(date_col, "model_version")
            .distinct()
            .collect()
        )
        by_version: dict[int, list[dt.date]] = {}
        for row in pairs:
            by_version.setdefault(int(row["model_version"]), []).append(row[date_col])

        extra = [c for c in [*mon.slices, *([label] if label else [])] if c not in {*numeric, *categorical}]
        pred_cols = [entity, date_col, "model_version", "prediction", "probability"]
        if canary.ARM in preds.columns:
            pred_cols.append(canary.ARM)
        current = (
            preds.where(lake.partition_filter(date_col, date_range=span))
            .select(*pred_cols)
            .join(
                feats.where(lake.partition_filter(date_col, date_range=span)).select(
                    entity, date_col, *numeric, *categorical, *extra
                ),
                [entity, date_col],
            )
            .persist()
        )
        parts: list[DataFrame] = []
        reports: dict[int, tuple[ReferenceProfile, DataFrame]] = {}
        for version, dates in sorted(by_version.items()):
            ref = registry.resolve(client, config.mlflow.model_name, version=version)
            profile = reference_profile(
                ctx, config, ref, numeric + pred_numeric, categorical + pred_categorical
            )
            rows = current.where(F.col("model_version") == version)
            in_dates = lake.partition_filter(date_col, dates=dates)
            drift = drift_metrics(
                rows, profile, [date_col], date_col, windows=mon.windows, window_ends=dates
            ).where(in_dates)
            parts.append(_tag(drift.withColumn(SLICE, F.lit(ALL)), "drift", version, profile.description))
            if label is not None:
                quality = _quality(config, rows.where(in_dates), label, [date_col], mon.slices)
                parts.append(_tag(quality, "quality", version, profile.description, label))
            reports[version] = (profile, rows.where(in_dates))
        if label is not None:
            parts.append(labels_available(feats, label, date_col, targets, by_version))

        champion = registry.try_resolve(client, config.mlflow.model_name, config.scoring.alias)
        challenger = registry.try_resolve(client, config.mlflow.model_name, "challenger")
        if (
            mon.canary.enabled
            and challenger is not None
            and champion is not None
            and challenger.version != champion.version
        ):
            parts += shadow_and_compare(ctx, config, feats, preds, challenger, targets, label)
        if canary.ARM in preds.columns and label is not None:
            ab_rows = current.where(
                F.col(canary.ARM).isNotNull() & lake.partition_filter(date_col, dates=targets)
            )
            ab = canary.ab_comparison(ab_rows, label, [date_col], mon.confidence)
            parts.append(
                _tag(
                    ab.withColumn("window_days", F.lit(1)),
                    "ab",
                    champion.version if champion else 0,
                    "arms",
                    canary.ARM,
                )
            )

        table = parts[0]
        for part in parts[1:]:
            table = table.unionByName(part)
        table = table.transform(with_status(mon.thresholds, mon.column_thresholds)).select(
            F.col(date_col),
            F.lit(config.mlflow.model_name).alias("model_name"),
            F.col("model_version").cast("int"),
            "kind",
            COLUMN,
            SLICE,
            F.col("window_days").cast("int"),
            METRIC,
            VALUE,
            "warn_threshold",
            "alert_threshold",
            "status",
            "reference",
            F.lit(ctx.run_id).alias("run_id"),
            F.current_timestamp().alias("computed_at"),
        )
        result = lake.write_partitions(
            table,
            mon_path,
            date_col,
            targets,
            mon_name,
            f"monitor run {ctx.run_id} from {pred_name}@v{pred_ref.version}",
        )
        ctx.wrote(result)
        current.unpersist()
        written, _ = lake.read_table(ctx.spark, mon_path, mon_name, version=result.version)
        counts = {
            (r["kind"], r["status"]): int(r["count"])
            for r in written.where(lake.partition_filter(date_col, dates=targets))
            .groupBy("kind", "status")
            .count()
            .collect()
        }
        alerts = sum(n for (_, s), n in counts.items() if s == "alert")
        warnings = sum(n for (_, s), n in counts.items() if s == "warn")
        ctx.result.update(monitored_partitions=len(targets), alerts=alerts, warnings=warnings)
        ctx.say(
            f"monitored {len(targets)} partition(s) {min(targets)}..{max(targets)} of "
            f"{', '.join(f'v{v}' for v in sorted(by_version))}: {alerts} alert(s), {warnings} warning(s)"
        )
        top = (
            written.where(
                lake.partition_filter(date_col, dates=targets)
                & (F.col("status") == "alert")
                & (F.col("window_days") == 1)
            )
            .groupBy("kind", COLUMN, METRIC)
            .agg(F.countDistinct(date_col).alias("partitions"), F.max(VALUE).alias("worst"))
            .orderBy(F.desc("partitions"), F.desc("worst"))
            .limit(5)
            .collect()
        )
        for r in top:
            ctx.say(
                f"alert: {r['kind']} {r[COLUMN]} {r[METRIC]} in {r['partitions']} partition(s), "
                f"worst {r['worst']:.3g}"
            )
        if mon.report:
            latest = max(by_version)
            profile, rows = reports[latest]
            write_report(ctx, config, written, profile, rows, latest, alerts, warnings, targets)

    return run_job("monitor", config, args.as_dict(), body, spark)


# --------------------------------------------------------------------------- pieces


def _tag(df: DataFrame, kind: str, version: int, reference: str, column: str | None = None) -> DataFrame:
    out = (
        df.withColumn("kind", F.lit(kind))
        .withColumn("model_version", F.lit(version))
        .withColumn("reference", F.lit(reference))
    )
    if column is not None:
        out = out.withColumn(COLUMN, F.lit(column))
    if "window_days" not in out.columns:
        out = out.withColumn("window_days", F.lit(1))
    return out


def _quality(
    config: AppConfig, rows: DataFrame, label: str, keys: Sequence[str], slices: Sequence[str]
) -> DataFrame:
    if config.model.task == "classification":
        return classification_quality(rows, label, keys, slices)
    return regression_quality(rows, label, keys, slices)


def labels_available(
    feats: DataFrame,
    label: str,
    date_col: str,
    targets: Sequence[dt.date],
    by_version: dict[int, list[dt.date]],
) -> DataFrame:
    """How many labelled rows each partition had when monitored (a later run re-monitors a
    partition whose labels have grown: labels land late)."""
    version_of = {d: v for v, ds in by_version.items() for d in ds}
    counts = (
        feats.where(lake.partition_filter(date_col, dates=targets))
        .groupBy(date_col)
        .agg(F.count(F.col(label)).cast("double").alias(VALUE))
    )
    spark = feats.sparkSession
    versions = spark.createDataFrame(
        [(d, v) for d, v in version_of.items()],
        T.StructType(
            [T.StructField(date_col, T.DateType()), T.StructField("model_version", T.IntegerType())]
        ),
    )
    return counts.join(versions, date_col).select(
        date_col,
        "model_version",
        F.lit("quality").alias("kind"),
        F.lit(label).alias(COLUMN),
        F.lit(ALL).alias(SLICE),
        F.lit(1).alias("window_days"),
        F.lit(LABELS_AVAILABLE).alias(METRIC),
        VALUE,
        F.lit("features").alias("reference"),
    )


def choose_targets(
    ctx: JobContext, preds: DataFrame, feats: DataFrame, mon_path: str, label: str | None, args: JobArgs
) -> list[dt.date]:
    """Prediction partitions to (re)monitor: the selected range, else those not monitored
    for the version that scored them or whose labelled rows have grown since."""
    date_col = ctx.config.features.date_column
    available = lake.list_partitions(
        ctx.spark, ctx.table_path("predictions", ctx.config.predictions_table), date_col
    )
    if args.date_range is not None:
        selected = [d for d in available if args.selects(d)]
        if not selected:
            lo, hi = args.date_range
            raise JobFailed(f"predictions.{ctx.config.predictions_table} has no partitions in {lo}..{hi}")
        return selected
    scored = {
        (r[date_col], int(r["model_version"]))
        for r in preds.select(date_col, "model_version").distinct().collect()
    }
    if not lake.is_table(ctx.spark, mon_path):
        return sorted({d for d, _ in scored})
    mon, _ = lake.read_table(ctx.spark, mon_path)
    seen = {
        (r[date_col], int(r["model_version"])): r["labels"]
        for r in mon.where(F.col("kind").isin("drift", "quality"))
        .groupBy(date_col, "model_version")
        .agg(F.max(F.when(F.col(METRIC) == LABELS_AVAILABLE, F.col(VALUE))).alias("labels"))
        .collect()
    }
    targets = {d for d, v in scored if (d, v) not in seen}
    if label is not None:
        known = {d: seen.get((d, v)) for d, v in scored if (d, v) in seen}
        if known:
            now = {
                r[date_col]: int(r["n"])
                for r in feats.where(lake.partition_filter(date_col, dates=list(known)))
                .groupBy(date_col)
                .agg(F.count(F.col(label)).alias("n"))
                .collect()
            }
            targets |= {d for d, before in known.items() if now.get(d, 0) > int(before or 0)}
    return sorted(targets)


def training_reference(client: Any, ref: ModelRef) -> tuple[int | None, tuple[dt.date, dt.date] | None]:
    """The features version and train range that a model's training run recorded."""
    run = client.get_run(ref.run_id)
    version = run.data.tags.get(FEATURES_VERSION_TAG)
    rng = run.data.params.get("train_range")
    dates = None
    if rng and ".." in rng:
        lo, hi = rng.split("..", 1)
        dates = (dt.date.fromisoformat(lo), dt.date.fromisoformat(hi))
    return (int(version) if version is not None else None), dates


def reference_profile(
    ctx: JobContext, config: AppConfig, ref: ModelRef, numeric: list[str], categorical: list[str]
) -> ReferenceProfile:
    """Profile the reference: the model's training rows at the features version its run
    recorded (or the fixed baseline window), scored by the same model for prediction drift."""
    mon, spec = config.monitoring, config.features
    version: int | None = None
    if mon.reference == "baseline":
        assert mon.baseline is not None
        rng = (mon.baseline.start, mon.baseline.end)
    else:
        client = registry.configure(config.mlflow)
        version, recorded = training_reference(client, ref)
        rng = recorded or (config.split.train.start, config.split.train.end)
        if version is None:
            ctx.say(f"{ref.describe()}: its run recorded no features version; using the latest")
    df, table_ref = lake.read_table(
        ctx.spark,
        ctx.table_path("features", spec.name),
        f"features.{spec.name}",
        version=version,
        date_column=spec.date_column,
        date_range=rng,
    )
    ctx.read(table_ref)
    keys = [spec.entity_id.name, spec.date_column]
    scored = canary.score_with(df, config, ref, table_ref.name).join(
        df.select(*keys, *[c for c in {*numeric, *categorical} if c in df.columns]), keys
    )
    description = f"{table_ref.name} v{table_ref.version} {rng[0]}..{rng[1]} ({mon.reference})"
    return profile_reference(
        scored.select(*numeric, *categorical),
        numeric,
        categorical,
        bins=mon.bins,
        grid_size=mon.grid_size,
        relative_error=mon.relative_error,
        max_categories=mon.max_categories,
        description=description,
    )


def shadow_and_compare(
    ctx: JobContext,
    config: AppConfig,
    feats: DataFrame,
    preds: DataFrame,
    challenger: ModelRef,
    dates: Sequence[dt.date],
    label: str | None,
) -> list[DataFrame]:
    """Score ``dates`` with @challenger into the shadow table and compare with the
    champion's predictions: agreement rows (kind canary) and realised quality of the
    challenger (kind canary_quality), both under the challenger's version."""
    spec = config.features
    date_col, entity = spec.date_column, spec.entity_id.name
    selected = lake.partition_filter(date_col, dates=dates)
    ctx.wrote(canary.score_shadow(feats.where(selected), config, challenger, dates, ctx.run_id))
    name = canary.shadow_table(config)
    shadow, ref = lake.read_table(
        ctx.spark,
        ctx.table_path("predictions", name),
        f"predictions.{name}",
        date_column=date_col,
        dates=dates,
    )
    ctx.read(ref)
    champion = preds.where(selected)
    if canary.ARM in champion.columns:
        champion = champion.where(F.col(canary.ARM) == canary.CHAMPION_ARM)
    agreement = canary.agreement_metrics(
        champion, shadow, entity, [date_col], config.model.task == "classification"
    ).withColumn(SLICE, F.lit(ALL))
    out = [_tag(agreement, "canary", challenger.version, f"champion predictions vs {challenger.describe()}")]
    if label is not None:
        labelled = shadow.join(
            feats.where(selected).select(entity, date_col, label, *config.monitoring.slices),
            [entity, date_col],
        )
        quality = _quality(config, labelled, label, [date_col], config.monitoring.slices)
        out.append(_tag(quality, "canary_quality", challenger.version, "shadow predictions", label))
    ctx.say(
        f"canary: {challenger.describe()} shadow-scored {len(dates)} partition(s) into predictions.{name}"
    )
    return out


def write_report(
    ctx: JobContext,
    config: AppConfig,
    table: DataFrame,
    profile: ReferenceProfile,
    rows: DataFrame,
    version: int,
    alerts: int,
    warnings: int,
    targets: Sequence[dt.date],
) -> None:
    """Render the HTML report, save it under <lake.root>/reports/<model>/ and log it to MLflow."""
    date_col = config.features.date_column
    metrics = (
        table.where(F.col("model_name") == config.mlflow.model_name)
        .drop("computed_at", "run_id", "reference", "model_name")
        .withColumnRenamed(date_col, "date")
        .toPandas()
    )
    hist: Any = pooled_bins(rows, profile, []).toPandas()
    hist["label"] = [_bin_label(profile, c, b) for c, b in zip(hist[COLUMN], hist["bin"], strict=True)]
    hist["order"] = [
        _bin_order(profile, c, b, n) for c, b, n in zip(hist[COLUMN], hist["bin"], hist["ref_n"], strict=True)
    ]
    model = config.mlflow.model_name
    facts = [
        ("model", f"{model} v{version}"),
        ("reference", profile.description),
        ("partitions in this run", f"{len(targets)}: {min(targets)}..{max(targets)}"),
        ("alerts / warnings in this run", f"{alerts} / {warnings}"),
        ("monitoring table", ctx.table_path("monitoring", monitoring_table(config))),
        ("job run", ctx.run_id),
        ("generated", dt.datetime.now(dt.UTC).isoformat(timespec="seconds")),
    ]
    page = render_report(
        ReportInput(
            title=f"Monitoring report: {model}",
            facts=facts,
            metrics=metrics,
            histograms=hist,
            prediction_columns=prediction_columns(config)[0] + prediction_columns(config)[1],
            quality_metrics=(
                ("areaUnderROC", "positive_rate", "predicted_positive_rate", "log_loss")
                if config.model.task == "classification"
                else ("rmse", "mae", "bias")
            ),
        )
    )
    folder = f"{config.lake.root.rstrip('/')}/reports/{model}"
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S")
    saved = save_report(page, f"{folder}/monitor-{stamp}-{ctx.run_id}.html", ctx.spark)
    save_report(page, f"{folder}/latest.html", ctx.spark)
    ctx.result["report"] = saved
    tags = {"mlops.job": "monitor", "mlops.job_run_id": ctx.run_id, "model_version": str(version)}
    with (
        registry.start_run(config.mlflow, f"monitor-{ctx.run_id}", tags),
        tempfile.TemporaryDirectory() as tmp,
    ):
        local = Path(tmp) / "monitoring_report.html"
        local.write_text(page, encoding="utf-8")
        mlflow.log_artifact(str(local), artifact_path="monitoring")
        summary = Path(tmp) / "summary.json"
        summary.write_text(
            json.dumps({"partitions": [str(d) for d in targets], "alerts": alerts, "warnings": warnings})
        )
        mlflow.log_artifact(str(summary), artifact_path="monitoring")
        mlflow.log_metrics(
            {"alerts": float(alerts), "warnings": float(warnings), "partitions": float(len(targets))}
        )
    ctx.say(f"report: {saved} (also an MLflow artifact of run monitor-{ctx.run_id})")


def _bin_label(profile: ReferenceProfile, column: str, bin_: str) -> str:
    if column in profile.numeric:
        labels = profile.numeric[column].bin_labels()
        i = int(bin_)
        return labels[i] if i < len(labels) else bin_
    return {OTHER: "(other)", NEW: "(new)"}.get(bin_, bin_)


def _bin_order(profile: ReferenceProfile, column: str, bin_: str, ref_n: Any) -> float:
    if column in profile.numeric:
        return float(bin_)
    if bin_ == NEW:
        return 1e12
    if bin_ == OTHER:
        return 1e11
    return -float(ref_n or 0)


__all__ = ["MONITORING_COLUMNS", "monitor", "monitoring_table"]
