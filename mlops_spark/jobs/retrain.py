"""retrain: when monitoring says so, train on recent data, canary-check and gate the challenger."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from mlops_spark import canary, lake, registry
from mlops_spark.config import AppConfig
from mlops_spark.jobs.args import JobArgs
from mlops_spark.jobs.promote import promote
from mlops_spark.jobs.shadow import shadow_score
from mlops_spark.jobs.train import train
from mlops_spark.metrics import primary_metric
from mlops_spark.monitoring.frames import ALL, SLICE
from mlops_spark.monitoring.quality import realised_quality
from mlops_spark.monitoring.reference import prediction_columns
from mlops_spark.registry import ModelRef
from mlops_spark.results import RetrainResult
from mlops_spark.retraining import canary_verdict, retrain_decision, shifted_split
from mlops_spark.runtime import JobContext, JobRun, run_job
from mlops_spark.tasks import for_model

CHECKED_TAG = "retrain.checked_through"


def retrain(
    config: AppConfig, args: JobArgs = JobArgs(), spark: SparkSession | None = None
) -> JobRun[RetrainResult]:
    """Retrain when the monitoring rule fires for the current @champion: train on a split
    moved to the newest labelled data (registers @challenger), shadow-score the newest
    partitions with it (canary), then run the promotion gate. When the rule does not fire,
    or already fired for these partitions, say so and do nothing (exit 0)."""

    def body(ctx: JobContext) -> RetrainResult:
        mon = config.monitoring
        client = registry.configure(config.mlflow)
        name, date_col = config.mlflow.model_name, config.features.date_column
        champion = registry.try_resolve(client, name, config.scoring.alias)
        if champion is None:
            ctx.say(f"nothing to do: {name} has no @{config.scoring.alias} to watch (run train and promote)")
            return RetrainResult("nothing")
        monitoring = ctx.catalog.monitoring()
        if not lake.exists(ctx.spark, monitoring):
            ctx.say(f"nothing to do: no monitoring table at {monitoring.path} yet (run monitor)")
            return RetrainResult("nothing")
        table, ref = lake.read_table(ctx.spark, monitoring)
        ctx.read(ref)
        label = config.features.label.name if config.features.label else None
        watched = for_model(config, client, champion.run_id)
        numeric, categorical = prediction_columns(watched)
        features = [*watched.model.numeric, *watched.model.categorical, *watched.monitoring.columns]
        decision = retrain_decision(
            table, champion.version, mon.retrain, date_col, [*numeric, *categorical], features, label
        )
        latest = decision.latest_labelled
        checked = registry.version_tags(client, champion).get(CHECKED_TAG)
        test_range = registry.training_record(client, champion).test_range
        why_not = None
        if not decision.retrain:
            why_not = decision.reason
        elif latest is None:
            why_not = f"{decision.reason}, but no monitored partition has labels to train on"
        elif checked and latest <= dt.date.fromisoformat(checked):
            why_not = (
                f"{decision.reason}, but a retrain already ran for {champion.describe()} on data through "
                f"{checked}; waiting for newer labelled partitions"
            )
        elif test_range is not None and latest <= test_range[1]:
            why_not = f"{decision.reason}, but no labelled partition is newer than the champion's test range"
        if why_not is not None or latest is None:
            ctx.say(f"nothing to do: {why_not}")
            return RetrainResult("nothing", decision.reason)
        ctx.say(f"retraining: {decision.reason}")
        split = shifted_split(config.split, latest, mon.retrain.window)
        recent = config.model_copy(update={"split": split})
        train_days, test_days = (
            f"{split.train.start}..{split.train.end}",
            f"{split.test.start}..{split.test.end}",
        )
        ctx.say(f"new split: train {train_days}, test {test_days}")
        client.set_model_version_tag(name, str(champion.version), CHECKED_TAG, latest.isoformat())
        trained = train(recent, JobArgs(), ctx.spark).result.model
        assert trained is not None
        ctx.say(f"trained {trained.describe()} as @challenger")
        if mon.canary.enabled:
            ok, why = canary_check(
                ctx, for_model(recent, client, trained.run_id), champion, trained, decision.considered
            )
            ctx.say(f"canary: {why}")
            if not ok:
                client.set_model_version_tag(
                    name, str(trained.version), registry.STATUS_TAG, "canary_refused"
                )
                return RetrainResult("canary_refused", decision.reason, trained.version)
        promoted = promote(recent, JobArgs(dry_run=args.dry_run), ctx.spark).result
        ctx.say(f"gate: {promoted.decision}")
        return RetrainResult(promoted.decision, decision.reason, trained.version)

    return run_job("retrain", config, args.as_dict(), body, spark)


def canary_check(
    ctx: JobContext, config: AppConfig, champion: ModelRef, challenger: ModelRef, recent: Sequence[dt.date]
) -> tuple[bool, str]:
    """Shadow-score the newest monitored partitions inside the new test range with the
    challenger and compare realised quality with the champion's real predictions there."""
    spec = config.features
    date_col, entity = spec.date_column, spec.entity_id.name
    dates = [d for d in recent if config.split.test.contains(d)][-config.monitoring.canary.partitions :]
    if not dates or spec.label is None:
        return True, "no labelled partition inside the new test range to shadow-score; gate decides alone"
    label = spec.label.name
    feats, fref = lake.read_table(ctx.spark, ctx.catalog.features(), dates=dates)
    ctx.read(fref)
    shadow = shadow_score(ctx, config.model, feats, challenger, dates)
    preds, pref = lake.read_table(ctx.spark, ctx.catalog.predictions(), dates=dates)
    ctx.read(pref)
    preds = preds.where(F.col("model_version") == champion.version)
    labels = feats.select(entity, date_col, label)
    metric, higher_better = primary_metric(config.model.resolved_task, config.promotion.metric)
    values: dict[str, float] = {}
    for who, df in (("champion", preds), ("challenger", shadow)):
        quality = realised_quality(df.join(labels, [entity, date_col]), config.model.resolved_task, label, [])
        got = {r["metric"]: float(r["value"]) for r in quality.where(F.col(SLICE) == ALL).collect()}
        if metric not in got:
            return True, f"realised {metric} is not available on the shadow partitions; gate decides alone"
        values[who] = got[metric]
    agreement = canary.agreement_metrics(preds, shadow, entity, [], config.model.resolved_task == "binary")
    agree = {r["metric"]: float(r["value"]) for r in agreement.collect()}
    client = registry.configure(config.mlflow)
    tags = {
        "canary.partitions": f"{dates[0]}..{dates[-1]}",
        f"canary.champion_{metric}": f"{values['champion']:.6f}",
        f"canary.challenger_{metric}": f"{values['challenger']:.6f}",
        **{f"canary.{k}": f"{v:.6f}" for k, v in agree.items() if k in ("agreement", "mean_abs_diff", "ks")},
    }
    registry.set_version_tags(client, challenger, tags)
    detail = (
        f"{metric} on {len(dates)} shadow partition(s) {dates[0]}..{dates[-1]}: challenger "
        f"{values['challenger']:.4f} vs champion {values['champion']:.4f}"
        + (f", agreement {agree['agreement']:.3f}" if "agreement" in agree else "")
    )
    limit = config.monitoring.canary.max_metric_drop
    return canary_verdict(metric, higher_better, values["champion"], values["challenger"], limit, detail)
