"""monitor: predictions + features (+ labels) -> drift and realised quality -> monitoring table
and an HTML report; with a distinct @challenger, canary (shadow) scoring beside @champion."""

from __future__ import annotations

import datetime as dt

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from mlops_spark import lake, registry
from mlops_spark.config import AppConfig
from mlops_spark.errors import JobFailed
from mlops_spark.jobs.args import JobArgs
from mlops_spark.jobs.shadow import shadow_score
from mlops_spark.monitoring.comparisons import ab_part, canary_parts
from mlops_spark.monitoring.drift import drift_metrics
from mlops_spark.monitoring.frames import ALL, SLICE
from mlops_spark.monitoring.profile import ReferenceProfile
from mlops_spark.monitoring.publish import ReportRun, publish_report
from mlops_spark.monitoring.quality import realised_quality
from mlops_spark.monitoring.reference import monitored_columns, prediction_columns, reference_profile
from mlops_spark.monitoring.table import assemble, labels_available, status_counts, tagged
from mlops_spark.monitoring.targets import monitor_targets
from mlops_spark.outputs import output_columns
from mlops_spark.results import MonitorResult
from mlops_spark.runtime import JobContext, JobRun, run_job
from mlops_spark.scoring.ab import ARM
from mlops_spark.tasks import for_model


def monitor(
    config: AppConfig, args: JobArgs = JobArgs(), spark: SparkSession | None = None
) -> JobRun[MonitorResult]:
    """Monitor the prediction partitions not yet monitored for the model version that scored
    them, or whose labels have grown since (labels land late); --date / --from --to redo a
    range. Writes monitoring.<model> (one row per model version, partition, column, slice,
    window and metric, with thresholds and status) and a report; exits 0 with "nothing to
    monitor" when everything is up to date."""

    def body(ctx: JobContext) -> MonitorResult:
        cfg = config
        mon, spec, catalog = cfg.monitoring, cfg.features, ctx.catalog
        date_col, entity = spec.date_column, spec.entity_id.name
        label = spec.label.name if spec.label else None
        client = registry.configure(cfg.mlflow)
        predictions, monitoring = catalog.predictions(), catalog.monitoring()
        preds, pred_ref = lake.read_table(ctx.spark, predictions)
        feats, feat_ref = lake.read_table(ctx.spark, catalog.features())
        ctx.read(pred_ref)
        ctx.read(feat_ref)
        for column in mon.slices:
            lake.require_columns(feats, catalog.features().name, [column])
        selection = monitor_targets(ctx.spark, predictions, preds, feats, monitoring, label, args.date_range)
        if not selection:
            ctx.say(f"nothing to monitor: every partition of {predictions.name} is monitored, no new labels")
            return MonitorResult(0)
        targets = list(selection.targets)
        span = (targets[0] - dt.timedelta(days=max([1, *mon.windows]) - 1), targets[-1])
        by_version: dict[int, list[dt.date]] = {}
        for row in (
            preds.where(lake.partition_filter(date_col, dates=targets))
            .select(date_col, "model_version")
            .distinct()
            .collect()
        ):
            by_version.setdefault(int(row["model_version"]), []).append(row[date_col])
        if not by_version:
            raise JobFailed(f"monitor: no model version scored {selection.describe()} of {predictions.name}")
        newest = registry.resolve(client, cfg.mlflow.model_name, version=max(by_version))
        cfg = for_model(cfg, client, newest.run_id)  # the task the models were trained for
        numeric, categorical = monitored_columns(cfg, feats.schema)
        pred_numeric, pred_categorical = prediction_columns(cfg)

        extra = [c for c in [*mon.slices, *([label] if label else [])] if c not in {*numeric, *categorical}]
        pred_cols = [
            entity,
            date_col,
            "model_version",
            *[c for c in output_columns(cfg.model.resolved_task) if c in preds.columns],
        ]
        current = (
            preds.where(lake.partition_filter(date_col, date_range=span))
            .select(*pred_cols, *([ARM] if ARM in preds.columns else []))
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
            ref = registry.resolve(client, cfg.mlflow.model_name, version=version)
            profile, reference = reference_profile(
                ctx.spark,
                cfg,
                client,
                ref,
                numeric + pred_numeric,
                categorical + pred_categorical,
                ctx.say,
            )
            ctx.read(reference)
            rows = current.where(F.col("model_version") == version)
            in_dates = lake.partition_filter(date_col, dates=dates)
            drift = drift_metrics(
                rows, profile, [date_col], date_col, windows=mon.windows, window_ends=dates
            ).where(in_dates)
            parts.append(tagged(drift.withColumn(SLICE, F.lit(ALL)), "drift", version, profile.description))
            if label is not None:
                quality = realised_quality(
                    rows.where(in_dates), cfg.model.resolved_task, label, [date_col], mon.slices
                )
                parts.append(tagged(quality, "quality", version, profile.description, label))
            reports[version] = (profile, rows.where(in_dates))
        if label is not None:
            parts.append(labels_available(feats, label, date_col, targets, by_version))

        champion = registry.try_resolve(client, cfg.mlflow.model_name, cfg.scoring.alias)
        challenger = registry.try_resolve(client, cfg.mlflow.model_name, registry.CHALLENGER)
        if mon.canary.enabled and challenger and champion and challenger.version != champion.version:
            shadow = shadow_score(ctx, cfg.model, feats, challenger, targets)
            parts += canary_parts(cfg, preds, shadow, feats, targets, challenger, label)
        if ARM in preds.columns and label is not None:
            parts.append(
                ab_part(
                    current, label, date_col, targets, champion.version if champion else 0, mon.confidence
                )
            )

        table = assemble(parts, cfg, ctx.run_id)
        result = ctx.wrote(
            lake.write_partitions(
                table,
                monitoring,
                targets,
                f"monitor run {ctx.run_id} from {pred_ref.name}@v{pred_ref.version}",
            )
        )
        current.unpersist()
        written, _ = lake.read_table(ctx.spark, monitoring, version=result.version)
        counts = status_counts(written, date_col, targets)
        versions = ", ".join(f"v{v}" for v in sorted(by_version))
        found = f"{counts.alerts} alert(s), {counts.warnings} warning(s)"
        ctx.say(f"monitored {selection.describe()} of {versions}: {found}")
        for line in counts.top:
            ctx.say(line)
        report = None
        if mon.report:
            if not by_version:
                raise JobFailed(
                    f"monitor: no model version scored {selection.describe()} of {predictions.name}"
                )
            latest = max(by_version)
            profile, rows = reports[latest]
            run = ReportRun(ctx.run_id, latest, targets, counts.alerts, counts.warnings)
            report = publish_report(ctx.spark, cfg, written, profile, rows, run)
            ctx.say(f"report: {report} (also an MLflow artifact of run monitor-{ctx.run_id})")
        return MonitorResult(len(targets), counts.alerts, counts.warnings, report)

    return run_job("monitor", config, args.as_dict(), body, spark)
