"""retrain: when monitoring says so, train on recent data, canary-check and gate the challenger."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from mlops_spark import canary, lake, registry
from mlops_spark.config import AppConfig, DateRange, RetrainRule, SplitConfig
from mlops_spark.jobs.args import JobArgs
from mlops_spark.jobs.monitor import monitoring_table, prediction_columns
from mlops_spark.jobs.promote import promote
from mlops_spark.jobs.train import train
from mlops_spark.monitoring import ALL, classification_quality, regression_quality
from mlops_spark.registry import ModelRef
from mlops_spark.runtime import JobContext, run_job
from mlops_spark.training import primary_metric

CHECKED_TAG = "retrain.checked_through"


@dataclass(frozen=True)
class RetrainDecision:
    retrain: bool
    reason: str
    alerted: tuple[dt.date, ...]
    considered: tuple[dt.date, ...]
    latest_labelled: dt.date | None


def retrain_decision(
    monitoring: DataFrame, version: int, rule: RetrainRule, columns: Sequence[str], date_col: str
) -> RetrainDecision:
    """Apply the N-of-M rule to the monitoring rows of one model version: count the last
    ``rule.of_last`` monitored partitions with an alert on ``rule.metrics`` of ``columns``
    (single-partition windows, the 'all' slice)."""
    mine = monitoring.where(
        (F.col("model_version") == version)
        & F.col("kind").isin("drift", "quality")
        & (F.col("window_days") == 1)
    )
    counted = (
        F.col("metric").isin(list(rule.metrics))
        & F.col("column").isin(list(columns))
        & (F.col("slice") == ALL)
        & (F.col("status") == "alert")
    )
    per_date = (
        mine.groupBy(date_col)
        .agg(
            F.max(counted.cast("int")).alias("alert"),
            F.max(F.when((F.col("kind") == "quality") & (F.col("metric") == "rows"), F.col("value"))).alias(
                "labelled"
            ),
        )
        .collect()
    )
    if not per_date:
        return RetrainDecision(False, f"no monitoring rows for v{version} yet", (), (), None)
    ordered = sorted(per_date, key=lambda r: r[date_col])
    last = ordered[-rule.of_last :]
    alerted = tuple(r[date_col] for r in last if r["alert"])
    labelled = [r[date_col] for r in ordered if (r["labelled"] or 0) > 0]
    considered = tuple(r[date_col] for r in last)
    verdict = len(alerted) >= rule.alerts
    reason = (
        f"{len(alerted)} of the last {len(last)} monitored partition(s) of v{version} "
        f"({considered[0]}..{considered[-1]}) have an alert on {'/'.join(rule.metrics)} of "
        f"{', '.join(columns)}; the rule needs {rule.alerts} of {rule.of_last}"
    )
    return RetrainDecision(verdict, reason, alerted, considered, max(labelled) if labelled else None)


def shifted_split(split: SplitConfig, test_end: dt.date, window: str) -> SplitConfig:
    """The split moved so its test range ends at ``test_end`` ('slide': every range keeps
    its length; 'expand': the train range keeps its start and grows)."""
    offset = test_end - split.test.end

    def move(rng: DateRange, keep_start: bool = False) -> dict[str, str]:
        start = rng.start if keep_start else rng.start + offset
        return {"from": start.isoformat(), "to": (rng.end + offset).isoformat()}

    data: dict[str, object] = {
        "train": move(split.train, keep_start=window == "expand"),
        "test": move(split.test),
        "seed": split.seed,
    }
    if split.validation is not None:
        data["validation"] = move(split.validation)
    return SplitConfig.model_validate(data)


def retrain(config: AppConfig, args: JobArgs = JobArgs(), spark: SparkSession | None = None) -> JobContext:
    """Retrain when the monitoring rule fires for the current @champion: train on a split
    moved to the newest labelled data (registers @challenger), shadow-score the newest
    partitions with it (canary), then run the promotion gate. When the rule does not fire,
    or already fired for these partitions, say so and do nothing (exit 0)."""

    def body(ctx: JobContext) -> None:
        mon = config.monitoring
        client = registry.configure(config.mlflow)
        name = config.mlflow.model_name
        date_col = config.features.date_column
        champion = registry.try_resolve(client, name, config.scoring.alias)
        ctx.result["decision"] = "nothing"
        if champion is None:
            ctx.say(f"nothing to do: {name} has no @{config.scoring.alias} to watch (run train and promote)")
            return
        path = ctx.table_path("monitoring", monitoring_table(config))
        if not lake.is_table(ctx.spark, path):
            ctx.say(f"nothing to do: no monitoring table at {path} yet (run monitor)")
            return
        table, ref = lake.read_table(ctx.spark, path, f"monitoring.{monitoring_table(config)}")
        ctx.read(ref)
        label = config.features.label.name if config.features.label else None
        numeric, categorical = prediction_columns(config)
        columns = mon.retrain.columns or [*numeric, *categorical, *([label] if label else [])]
        decision = retrain_decision(table, champion.version, mon.retrain, columns, date_col)
        ctx.result["rule"] = decision.reason
        if not decision.retrain:
            ctx.say(f"nothing to do: {decision.reason}")
            return
        latest = decision.latest_labelled
        if latest is None:
            ctx.say(f"nothing to do: {decision.reason}, but no monitored partition has labels to train on")
            return
        checked = registry.version_tags(client, champion).get(CHECKED_TAG)
        if checked and latest <= dt.date.fromisoformat(checked):
            ctx.say(
                f"nothing to do: {decision.reason}, but a retrain already ran for "
                f"{champion.describe()} on data through {checked}; waiting for newer labelled partitions"
            )
            return
        recorded_test_end = _recorded_test_end(client, champion)
        if recorded_test_end is not None and latest <= recorded_test_end:
            ctx.say(
                f"nothing to do: {decision.reason}, but no labelled partition is newer than "
                "the champion's test range"
            )
            return
        ctx.say(f"retraining: {decision.reason}")
        split = shifted_split(config.split, latest, mon.retrain.window)
        recent = config.model_copy(update={"split": split})
        ctx.say(
            f"new split: train {split.train.start}..{split.train.end}, "
            f"test {split.test.start}..{split.test.end}"
        )
        client.set_model_version_tag(name, str(champion.version), CHECKED_TAG, latest.isoformat())
        trained = train(recent, JobArgs(), ctx.spark)
        challenger: ModelRef = trained.result["model"]
        ctx.result["challenger"] = challenger.version
        ctx.say(f"trained {challenger.describe()} as @challenger")
        if mon.canary.enabled:
            ok, why = canary_check(ctx, recent, champion, challenger, decision.considered)
            ctx.say(f"canary: {why}")
            if not ok:
                client.set_model_version_tag(
                    name, str(challenger.version), "promotion.status", "canary_refused"
                )
                ctx.result["decision"] = "canary_refused"
                return
        promoted = promote(recent, JobArgs(dry_run=args.dry_run), ctx.spark)
        ctx.result["decision"] = promoted.result.get("decision", "unknown")
        ctx.say(f"gate: {ctx.result['decision']}")

    return run_job("retrain", config, args.as_dict(), body, spark)


def _recorded_test_end(client: object, ref: ModelRef) -> dt.date | None:
    run = client.get_run(ref.run_id)  # type: ignore[attr-defined]
    rng = run.data.params.get("test_range")
    if rng and ".." in rng:
        return dt.date.fromisoformat(rng.split("..", 1)[1])
    return None


def canary_check(
    ctx: JobContext,
    config: AppConfig,
    champion: ModelRef,
    challenger: ModelRef,
    recent: Sequence[dt.date],
) -> tuple[bool, str]:
    """Shadow-score the newest monitored partitions inside the new test range with the
    challenger and compare realised quality with the champion's real predictions there."""
    spec = config.features
    date_col, entity = spec.date_column, spec.entity_id.name
    dates = [d for d in recent if config.split.test.contains(d)][-config.monitoring.canary.partitions :]
    if not dates or spec.label is None:
        return True, "no labelled partition inside the new test range to shadow-score; gate decides alone"
    label = spec.label.name
    feats, fref = lake.read_table(
        ctx.spark,
        ctx.table_path("features", spec.name),
        f"features.{spec.name}",
        date_column=date_col,
        dates=dates,
    )
    ctx.read(fref)
    ctx.wrote(canary.score_shadow(feats, config, challenger, dates, ctx.run_id))
    name = canary.shadow_table(config)
    shadow, sref = lake.read_table(
        ctx.spark,
        ctx.table_path("predictions", name),
        f"predictions.{name}",
        date_column=date_col,
        dates=dates,
    )
    preds, pref = lake.read_table(
        ctx.spark,
        ctx.table_path("predictions", config.predictions_table),
        f"predictions.{config.predictions_table}",
        date_column=date_col,
        dates=dates,
    )
    ctx.read(sref)
    ctx.read(pref)
    preds = preds.where(F.col("model_version") == champion.version)
    labels = feats.select(entity, date_col, label)
    metric, higher_better = primary_metric(config.model, config.promotion.metric)
    values: dict[str, float] = {}
    for who, df in (("champion", preds), ("challenger", shadow)):
        labelled = df.join(labels, [entity, date_col])
        q = (
            classification_quality(labelled, label, [])
            if config.model.task == "classification"
            else regression_quality(labelled, label, [])
        )
        got = {r["metric"]: float(r["value"]) for r in q.where(F.col("slice") == ALL).collect()}
        if metric not in got:
            return True, f"realised {metric} is not available on the shadow partitions; gate decides alone"
        values[who] = got[metric]
    agreement = canary.agreement_metrics(preds, shadow, entity, [], config.model.task == "classification")
    agree = {r["metric"]: float(r["value"]) for r in agreement.collect()}
    client = registry.configure(config.mlflow)
    tags = {
        "canary.partitions": f"{dates[0]}..{dates[-1]}",
        f"canary.champion_{metric}": f"{values['champion']:.6f}",
        f"canary.challenger_{metric}": f"{values['challenger']:.6f}",
        **{f"canary.{k}": f"{v:.6f}" for k, v in agree.items() if k in ("agreement", "mean_abs_diff", "ks")},
    }
    for key, value in tags.items():
        client.set_model_version_tag(challenger.name, str(challenger.version), key, value)
    drop = (
        (values["champion"] - values["challenger"])
        if higher_better
        else (values["challenger"] - values["champion"])
    )
    detail = (
        f"{metric} on {len(dates)} shadow partition(s) {dates[0]}..{dates[-1]}: challenger "
        f"{values['challenger']:.4f} vs champion {values['champion']:.4f}"
        + (f", agreement {agree['agreement']:.3f}" if "agreement" in agree else "")
    )
    limit = config.monitoring.canary.max_metric_drop
    if drop > limit:
        return False, f"refused, {detail} (worse by {drop:.4f} > {limit})"
    return True, f"passed, {detail}"
