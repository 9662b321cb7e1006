"""One segmented training run: fit a scikit-learn model per segment (and the global
fallback) in parallel on Spark, measure the routed model overall and per segment, log it as
ONE MLflow model and record the per-segment table (``monitoring.<model>_segments``)."""

from __future__ import annotations

import datetime as dt
import re
import time
from typing import Any, cast

import mlflow
import pandas as pd
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from mlops_spark import lake, registry
from mlops_spark.config import AppConfig, resolved_dict
from mlops_spark.errors import JobFailed, MissingColumnError, ModelNotFoundError
from mlops_spark.metrics import evaluate, primary_metric
from mlops_spark.results import TrainSegmentedResult
from mlops_spark.runtime import JobContext
from mlops_spark.segmented.estimators import check_estimator, import_estimator, ship_by_value
from mlops_spark.segmented.evaluation import segment_metrics, with_positive_probability
from mlops_spark.segmented.fitting import (
    FAILED,
    FITTED,
    SINGLE_CLASS,
    TOO_SMALL,
    UNSEEN,
    SegmentFits,
    SegmentTuning,
    fit_segments,
)
from mlops_spark.segmented.router import SegmentRouter
from mlops_spark.segmented.serving import log_segmented_model
from mlops_spark.segmented.spec import GLOBAL, ROLE, FitSpec, fit_spec, segmented_app_config
from mlops_spark.training import time_split
from mlops_spark.training.fit import read_training_data


def prepare_segmented_frame(df: DataFrame, spec: FitSpec, date_column: str, table: str) -> DataFrame:
    """Labelled rows with the segment, typed inputs (strings / doubles), label and date."""
    route = spec.route
    for col in [route.segment_column, *route.inputs, spec.label, date_column]:
        if col not in df.columns:
            raise MissingColumnError(table, col, df.columns)
    return df.where(F.col(spec.label).isNotNull()).select(
        F.col(route.segment_column).cast("string").alias(route.segment_column),
        *[F.col(c).cast("string").alias(c) for c in route.categorical],
        *[F.col(c).cast("double").alias(c) for c in route.numeric],
        F.col(spec.label).cast("double").alias(spec.label),
        F.col(date_column),
    )


def fit_and_log_segmented(ctx: JobContext, config: AppConfig) -> TrainSegmentedResult:
    """Fit, check, evaluate, log, register and record the per-segment table."""
    seg = config.segmented
    assert seg is not None
    spec = fit_spec(config)
    route = spec.route
    split, date_col = config.split, config.features.date_column
    derived = segmented_app_config(config)
    metric, _ = primary_metric(derived.model.resolved_task, config.promotion.metric, where="promotion.metric")

    factory = import_estimator(seg.estimator)
    shipped = ship_by_value(factory)
    tuning: SegmentTuning | None = None
    if seg.tuning is not None and seg.tuning.search_space:
        if split.validation is None:
            raise JobFailed(
                "train_segmented: segmented.tuning.search_space is set but split.validation is not: "
                "per-segment tuning needs a validation date range between train and test"
            )
        from mlops_spark.tuning import tuning_metric

        t_metric, t_higher = tuning_metric(derived.model, seg.tuning, config.promotion.metric)
        tuning = SegmentTuning(seg.tuning, t_metric, t_higher)
    check_estimator(factory, seg, route.task, list(seg.tuning.search_space) if tuning and seg.tuning else [])

    data, ref = read_training_data(ctx, config, None)
    prepared = prepare_segmented_frame(data, spec, date_col, ref.name)
    parts = time_split(prepared, date_col, split)
    fit_input = parts.train.withColumn(ROLE, F.lit("train"))
    if tuning is not None and parts.validation is not None:
        fit_input = fit_input.unionByName(parts.validation.withColumn(ROLE, F.lit("validation")))

    started = time.time()
    fits = SegmentFits.collect(
        fit_segments(fit_input, spec, factory, seg.params, tuning, seg.fallback == "global")
    )
    fit_wall = time.time() - started
    _check_fits(ctx, config, fits)
    train_rows = sum(r["train_rows"] for r in fits.rows if r["segment"] != GLOBAL)
    global_row = fits.global_row
    if global_row is not None:
        train_rows = int(global_row["train_rows"])
    ctx.rows_read += train_rows

    router = SegmentRouter(route, fits.blobs)
    test_df = parts.test.persist()
    try:
        scored = with_positive_probability(router.transform(test_df), route.task).persist()
        test_rows = scored.count()
        if not test_rows:
            raise JobFailed(
                f"train_segmented: no labelled rows in {ref.name} v{ref.version} for the test range "
                f"{split.test.start}..{split.test.end}"
            )
        test_metrics = evaluate(scored, route.task, spec.label)
        metrics = {f"test_{k}": v for k, v in test_metrics.items()}
        baseline: DataFrame | None = None
        if seg.fallback == "global":  # the same rows scored by the global model alone
            global_scored = router.global_only().transform(test_df)
            baseline = with_positive_probability(global_scored, route.task).persist()
            global_metrics = evaluate(baseline, route.task, spec.label)
            metrics.update({f"global_test_{k}": v for k, v in global_metrics.items() if k != "rows"})
        per_segment = _segment_table(scored, baseline, fits, spec)
        example = test_df.select(route.segment_column, *route.inputs).limit(5).toPandas()
        scored.unpersist()
        if baseline is not None:
            baseline.unpersist()
        if parts.validation is not None:
            val_scored = with_positive_probability(router.transform(parts.validation), route.task)
            metrics.update({f"val_{k}": v for k, v in evaluate(val_scored, route.task, spec.label).items()})
    finally:
        test_df.unpersist()

    counts = {s: len(fits.by_status(s)) for s in (FITTED, TOO_SMALL, SINGLE_CLASS, FAILED)}
    metrics.update(
        {
            "train_rows": float(train_rows),
            "segments": float(sum(counts.values())),
            "segments_fitted": float(counts[FITTED]),
            "segments_fallback": float(sum(counts.values()) - counts[FITTED]),
            "segments_failed": float(counts[FAILED]),
            "fit_seconds_wall": fit_wall,
            "fit_seconds_sum": float(sum(r["fit_seconds"] for r in fits.rows)),
        }
    )
    tags = registry.run_tags(
        "train_segmented",
        ctx.run_id,
        {
            **registry.training_tags(ref, split.seed),
            "mlops.model_kind": "segmented",
            "mlops.segment_column": route.segment_column,
        },
    )
    with registry.start_run(config.mlflow, run_name=f"train_segmented-{ctx.run_id}", tags=tags) as run:
        run_id = str(run.info.run_id)
        mlflow.log_params(
            {
                "estimator": seg.estimator,
                **{f"param.{k}": v for k, v in seg.params.items()},
                "segment_column": route.segment_column,
                "categorical": ",".join(route.categorical),
                "numeric": ",".join(route.numeric),
                "min_rows": seg.min_rows,
                "fallback": seg.fallback,
                "on_fit_error": seg.on_fit_error,
                "one_hot": seg.one_hot,
                "impute": seg.impute,
                "class_weight": seg.class_weight,
                "threshold": route.threshold,
                "task": route.task,
                "train_range": f"{split.train.start}..{split.train.end}",
                "test_range": f"{split.test.start}..{split.test.end}",
                "seed": split.seed,
                "tuned": tuning is not None,
                "shipped_by_value": shipped or "",
            }
        )
        mlflow.log_metrics(metrics)
        mlflow.log_metrics(_segment_metric_keys(per_segment, metric))
        mlflow.log_table(per_segment, "segments/metrics.json")
        registry.log_lineage(resolved_dict(config), ctx.reads)
        info = log_segmented_model(router, example, seg.model_name, factory)
        version = info.registered_model_version
        if version is None:
            raise ModelNotFoundError(f"MLflow did not register {seg.model_name!r}")
        model_ref = registry.ModelRef(seg.model_name, int(version), run_id)

    ctx.wrote(_write_segments_table(ctx, config, per_segment, model_ref))
    fallback = sum(counts.values()) - counts[FITTED]
    served = "the global model" if seg.fallback == "global" else "no model (fallback: error)"
    ctx.say(
        f"{sum(counts.values())} segments of {route.segment_column}: {counts[FITTED]} own models, "
        f"{fallback} served by {served} "
        f"(too small {counts[TOO_SMALL]}, one class {counts[SINGLE_CLASS]}, failed {counts[FAILED]}); "
        f"fitted in {fit_wall:.0f}s wall for {metrics['fit_seconds_sum']:.0f}s of fits"
    )
    value = test_metrics.get(metric, float("nan"))
    alone = metrics.get(f"global_test_{metric}")
    versus = f" (the global model alone: {alone:.4f})" if alone is not None else ""
    ctx.say(f"{seg.estimator} per {route.segment_column}: test {metric} = {value:.4f}{versus}")
    return TrainSegmentedResult(run_id, model_ref, metrics, per_segment, fits)


def _check_fits(ctx: JobContext, config: AppConfig, fits: SegmentFits) -> None:
    """Apply on_fit_error and fallback: fail with every segment's reason, or warn."""
    seg = config.segmented
    assert seg is not None
    failed = fits.by_status(FAILED)
    if failed and seg.on_fit_error == "fail":
        detail = "; ".join(f"{r['segment']}: {r['error']}" for r in failed[:5])
        more = f" (and {len(failed) - 5} more)" if len(failed) > 5 else ""
        raise JobFailed(
            f"train_segmented: the fit of {len(failed)} segment(s) failed{more}: {detail}; fix the estimator "
            "or set segmented.on_fit_error: fallback to serve them with the global model"
        )
    glob = fits.global_row
    if seg.fallback == "global" and (glob is None or glob["status"] != FITTED):
        reason = glob["error"] if glob else "no train rows"
        raise JobFailed(
            f"train_segmented: the global fallback model could not be fitted ({reason}); fix the estimator "
            "or set segmented.fallback: error"
        )
    if not any(r["status"] == FITTED for r in fits.rows):
        raise JobFailed("train_segmented: no segment model could be fitted (see the per-segment errors)")
    for r in failed:
        ctx.say(f"segment {r['segment']!r}: fit failed ({r['error'][:300]}); the global model serves it")


def _segment_table(
    scored: DataFrame, baseline: DataFrame | None, fits: SegmentFits, spec: FitSpec
) -> pd.DataFrame:
    """One row per segment (fitted, fallen back or only seen in the test range): how it
    was fitted, who serves it, its test metrics, and the global model's on the same rows
    (``baseline``: the test rows scored by the global model alone)."""
    route = spec.route
    own = segment_metrics(scored, route.segment_column, spec.label, route.task)
    test = cast(pd.DataFrame, own.toPandas())
    if baseline is not None:
        by_global = segment_metrics(
            baseline, route.segment_column, spec.label, route.task, prefix="global_test_"
        ).toPandas()
        test = test.merge(
            cast(pd.DataFrame, by_global).drop(columns=["global_test_rows"]), on="segment", how="left"
        )
    fit_rows = pd.DataFrame([r for r in fits.rows if r["segment"] != GLOBAL])
    if fit_rows.empty:
        fit_rows = pd.DataFrame(columns=["segment", "status"])
    table = fit_rows.merge(test, on="segment", how="outer")
    table["status"] = table["status"].fillna(UNSEEN)
    fallback = "global" if route.fallback == "global" else "none"
    table["served_by"] = table["status"].map(lambda s: "own" if s == FITTED else fallback)
    for col in ("train_rows", "validation_rows", "tuning_trials"):
        if col in table:
            table[col] = table[col].fillna(0).astype("int64")
    table["test_rows"] = table.pop("test_rows").fillna(0).astype("int64") if "test_rows" in table else 0
    front = ["segment", "status", "served_by", "error", "note", "train_rows", "validation_rows", "test_rows"]
    ordered = [c for c in front if c in table] + [c for c in table.columns if c not in front]
    return table[ordered].sort_values("segment", na_position="last").reset_index(drop=True)


_METRIC_KEY = re.compile(r"[^\w\-. /]")


def _segment_metric_keys(table: pd.DataFrame, metric: str) -> dict[str, float]:
    """``segment.<segment>.test_<metric>`` and ``.test_rows`` per segment, for MLflow."""
    out: dict[str, float] = {}
    for row in table.to_dict("records"):
        name = "null" if row["segment"] is None or pd.isna(row["segment"]) else str(row["segment"])
        safe = _METRIC_KEY.sub("_", name)[:200]
        value = row.get(f"test_{metric}")
        if value is not None and not pd.isna(value):
            out[f"segment.{safe}.test_{metric}"] = float(value)
        out[f"segment.{safe}.test_rows"] = float(row.get("test_rows", 0) or 0)
    return out


_TABLE_FIELDS = {
    "segment": T.StringType(),
    "status": T.StringType(),
    "served_by": T.StringType(),
    "error": T.StringType(),
    "note": T.StringType(),
    "params": T.StringType(),
    "train_rows": T.LongType(),
    "validation_rows": T.LongType(),
    "test_rows": T.LongType(),
    "tuning_trials": T.LongType(),
}


def _write_segments_table(
    ctx: JobContext, config: AppConfig, table: pd.DataFrame, ref: registry.ModelRef
) -> lake.WriteResult:
    """Replace this model version's rows of monitoring.<model>_segments (other versions stay)."""
    segments = ctx.catalog.segments()
    fields = [
        T.StructField("model_name", T.StringType(), False),
        T.StructField("model_version", T.IntegerType(), False),
        T.StructField("run_id", T.StringType(), False),
        T.StructField("job_run_id", T.StringType(), False),
        T.StructField("trained_at", T.TimestampType(), False),
    ]
    fields += [T.StructField(c, _TABLE_FIELDS.get(c, T.DoubleType()), True) for c in table.columns]
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    records = []
    for row in table.to_dict("records"):
        record: list[Any] = [ref.name, ref.version, ref.run_id, ctx.run_id, now]
        for c in table.columns:
            v = row[c]
            if v is None or (isinstance(v, float) and pd.isna(v)) or v is pd.NA:
                record.append(None)
            elif isinstance(_TABLE_FIELDS.get(c, T.DoubleType()), T.LongType):
                record.append(int(v))
            elif isinstance(_TABLE_FIELDS.get(c, T.DoubleType()), T.StringType):
                record.append(str(v))
            else:
                record.append(float(v))
        records.append(tuple(record))
    new = ctx.spark.createDataFrame(records, T.StructType(fields))
    if lake.exists(ctx.spark, segments):
        old, _ = lake.read_table(ctx.spark, segments)
        kept = old.where(F.col("model_version") != ref.version).localCheckpoint()
        new = kept.unionByName(new, allowMissingColumns=True)
    return lake.overwrite_table(new, segments, f"train_segmented {ref.describe()} run {ctx.run_id}")
