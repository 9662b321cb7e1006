"""monitor: predictions + features (+ labels) -> drift and realised quality -> monitoring table
and an HTML report; with a distinct @challenger, canary (shadow) scoring beside @champion."""

from __future__ import annotations

import datetime as dt

from pyspark.sql import DataFrame, SparkSession

from mlops_spark import lake, registry
from mlops_spark.caching import persisted
from mlops_spark.config import AppConfig
from mlops_spark.errors import JobFailed
from mlops_spark.jobs.args import JobArgs
from mlops_spark.jobs.shadow import shadow_score
from mlops_spark.monitoring.causes import PRIMARY_QUALITY, rank_causes, summary_lines
from mlops_spark.monitoring.comparisons import ab_part, canary_parts
from mlops_spark.monitoring.publish import ReportRun, publish_report
from mlops_spark.monitoring.reference import monitored_columns, prediction_columns
from mlops_spark.monitoring.run import VersionParts, monitored_rows, version_parts, versions_of
from mlops_spark.monitoring.status import LimitRow, limits_frame
from mlops_spark.monitoring.table import alerts_on, assemble, labels_available, status_counts
from mlops_spark.monitoring.targets import monitor_targets
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
        date_col = spec.date_column
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
        by_version = versions_of(preds, date_col, targets)
        if not by_version:
            raise JobFailed(f"monitor: no model version scored {selection.describe()} of {predictions.name}")
        newest = registry.resolve(client, cfg.mlflow.model_name, version=max(by_version))
        cfg = for_model(cfg, client, newest.run_id)  # the task the models were trained for
        numeric, categorical = monitored_columns(cfg, feats.schema)
        pred_numeric, pred_categorical = prediction_columns(cfg)
        with persisted(monitored_rows(cfg, preds, feats, span, [*numeric, *categorical])) as current:
            parts: list[DataFrame] = []
            limits: list[LimitRow] = []
            per_version: dict[int, VersionParts] = {}
            for version, dates in sorted(by_version.items()):
                got = version_parts(
                    ctx.spark,
                    cfg,
                    client,
                    version,
                    current,
                    dates,
                    numeric + pred_numeric,
                    categorical + pred_categorical,
                    ctx.say,
                )
                for ref in got.reads:
                    ctx.read(ref)
                parts += got.parts
                limits += got.limits
                per_version[version] = got
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

            table = assemble(parts, cfg, ctx.run_id, limits_frame(ctx.spark, limits) if limits else None)
            result = ctx.wrote(
                lake.write_partitions(
                    table,
                    monitoring,
                    targets,
                    f"monitor run {ctx.run_id} from {pred_ref.name}@v{pred_ref.version}",
                    merge_schema=True,  # tables written before calibration lack relative/threshold_source
                )
            )
            written, _ = lake.read_table(ctx.spark, monitoring, version=result.version)
            counts = status_counts(written, date_col, targets)
            versions = ", ".join(f"v{v}" for v in sorted(by_version))
            ctx.say(
                f"monitored {selection.describe()} of {versions}: "
                f"{counts.alerts} alert(s), {counts.warnings} warning(s)"
            )
            task = cfg.model.resolved_task
            run_rows = (
                written.where(lake.partition_filter(date_col, dates=targets))
                .drop("computed_at", "run_id", "reference", "model_name")
                .withColumnRenamed(date_col, "date")
                .toPandas()
            )
            holdouts = {v: dict(p.baseline.holdout) for v, p in per_version.items() if p.baseline}
            causes = rank_causes(run_rows, task, pred_numeric + pred_categorical, holdouts)
            for line in summary_lines(causes, task):
                ctx.say(line)
            report = None
            if mon.report:
                latest = per_version[max(by_version)]
                assert latest.baseline is not None and latest.rows is not None
                run = ReportRun(ctx.run_id, max(by_version), targets, counts.alerts, counts.warnings)
                primary = latest.baseline.holdout.get(PRIMARY_QUALITY[task])
                report = publish_report(
                    ctx.spark, cfg, written, latest.baseline.profile, latest.rows, run, causes, primary
                )
                ctx.say(f"report: {report} (also an MLflow artifact of run monitor-{ctx.run_id})")
        last = targets[-1]
        last_alerts = alerts_on(run_rows, last)
        return MonitorResult(len(targets), counts.alerts, counts.warnings, report, last, last_alerts)

    return run_job("monitor", config, args.as_dict(), body, spark)
