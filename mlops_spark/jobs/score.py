"""score: the features partitions not yet scored by the model -> predictions (replaceWhere)."""

from __future__ import annotations

import datetime as dt

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from mlops_spark import lake, registry
from mlops_spark.config import AppConfig
from mlops_spark.errors import JobFailed, MissingColumnError
from mlops_spark.jobs.args import JobArgs
from mlops_spark.runtime import JobContext, run_job
from mlops_spark.scoring import prediction_rows
from mlops_spark.training import model_input_columns


def score(config: AppConfig, args: JobArgs = JobArgs(), spark: SparkSession | None = None) -> JobContext:
    """Score with the model at ``--alias`` (default: scoring.alias) or ``--model-version``.

    By default only feature partitions without predictions from that model version are
    scored; --date / --from --to rescore a range. All chosen partitions are replaced in one
    Delta commit, so reruns replace rather than append and a killed run leaves the table
    at its previous version.
    """

    def body(ctx: JobContext) -> None:
        client = registry.configure(config.mlflow)
        name = config.mlflow.model_name
        if args.model_version is not None:
            ref = registry.resolve(client, name, version=args.model_version)
        else:
            ref = registry.resolve(client, name, alias=args.alias or config.scoring.alias)
        spec = config.features
        date_col = spec.date_column
        feat_path = ctx.table_path("features", spec.name)
        out_path = ctx.table_path("predictions", config.predictions_table)
        out_name = f"predictions.{config.predictions_table}"
        _, feat_ref = lake.read_table(ctx.spark, feat_path, f"features.{spec.name}")
        available = lake.list_partitions(ctx.spark, feat_path, date_col, feat_ref.version)
        if args.date_range is not None:
            targets = [d for d in available if args.selects(d)]
            if not targets:
                lo, hi = args.date_range
                raise JobFailed(f"{feat_ref.name} has no partitions in {lo}..{hi}: nothing to score")
        else:
            done = scored_dates(ctx, out_path, date_col, ref.version)
            targets = [d for d in available if d not in done]
        if not targets:
            ctx.say(
                f"nothing new to score: every partition of {feat_ref.name} "
                f"has predictions from {ref.describe()}"
            )
            ctx.result["scored_partitions"] = 0
            return
        features_df, feat_ref = lake.read_table(
            ctx.spark,
            feat_path,
            feat_ref.name,
            version=feat_ref.version,
            date_column=date_col,
            dates=targets,
        )
        ctx.read(feat_ref)
        needed = model_input_columns(config.model)
        for col in needed:
            if col not in features_df.columns:
                raise MissingColumnError(feat_ref.name, col, features_df.columns)
        model = registry.load_spark_model(ref)
        inputs = features_df.select(
            spec.entity_id.name,
            date_col,
            *[F.col(c).cast("string").alias(c) for c in config.model.categorical],
            *[F.col(c).cast("double").alias(c) for c in config.model.numeric],
        )
        rows = prediction_rows(
            model.transform(inputs),
            spec.entity_id.name,
            date_col,
            ref,
            ctx.run_id,
            config.model.task == "classification",
        )
        result = lake.write_partitions(
            rows, out_path, date_col, targets, out_name, f"score {ref.describe()} run {ctx.run_id}"
        )
        ctx.wrote(result)
        ctx.rows_read += result.rows_written
        ctx.result["scored_partitions"] = len(targets)
        ctx.say(
            f"scored {len(targets)} partition(s) {min(targets)}..{max(targets)} "
            f"with {ref.describe()}: {result.rows_written:,} predictions"
        )
        if args.maintenance:
            ctx.say(optimize_and_vacuum(ctx.spark, out_path))

    return run_job("score", config, args.as_dict(), body, spark)


def scored_dates(ctx: JobContext, path: str, date_col: str, version: int) -> set[dt.date]:
    """Partitions that already hold predictions from this model version."""
    if not lake.is_table(ctx.spark, path):
        return set()
    df, _ = lake.read_table(ctx.spark, path)
    rows = df.where(F.col("model_version") == version).select(date_col).distinct().collect()
    return {r[0] for r in rows}


def optimize_and_vacuum(spark: SparkSession, path: str, retain_hours: int = 168) -> str:
    from delta.tables import DeltaTable

    table = DeltaTable.forPath(spark, path)
    metrics = (
        table.optimize()
        .executeCompaction()
        .select("metrics.numFilesAdded", "metrics.numFilesRemoved")
        .first()
    )
    table.vacuum(retain_hours)
    added, removed = (metrics[0], metrics[1]) if metrics else (0, 0)
    return (
        f"maintenance: OPTIMIZE compacted {removed} file(s) into {added}; "
        f"VACUUM kept {retain_hours}h of history"
    )
