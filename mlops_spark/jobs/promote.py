"""promote: the gated move of @champion (auto, dry run or human approval), and rollback."""

from __future__ import annotations

import datetime as dt
import getpass
import os

import mlflow
from pyspark.sql import SparkSession

from mlops_spark import lake, registry
from mlops_spark.config import AppConfig
from mlops_spark.errors import JobFailed, UsageError
from mlops_spark.jobs.args import JobArgs
from mlops_spark.promotion import Decision, decide
from mlops_spark.registry import ModelRef
from mlops_spark.runtime import JobContext, run_job
from mlops_spark.training import evaluate, prepare_training_frame, primary_metric

CHAMPION = "champion"
CHALLENGER = "challenger"
STATUS_TAG = "promotion.status"


def promote(config: AppConfig, args: JobArgs = JobArgs(), spark: SparkSession | None = None) -> JobContext:
    """Compare @challenger with @champion on the same holdout and move @champion if the gate
    passes. ``--to-version N`` rolls back; ``--approve V`` / ``--reject V`` settle a
    challenger waiting for approval (mode ``approval``)."""
    picked = [x for x in (args.to_version, args.approve, args.reject) if x is not None]
    if len(picked) > 1:
        raise UsageError("use only one of --to-version, --approve, --reject")

    def body(ctx: JobContext) -> None:
        client = registry.configure(config.mlflow)
        name = config.mlflow.model_name
        who = args.approver or os.environ.get("MLOPS_SPARK_USER") or getpass.getuser()
        now = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        if args.to_version is not None:
            ref = registry.resolve(client, name, version=args.to_version)
            _move_champion(client, ref, who, now, f"rollback to v{ref.version} requested by {who}")
            ctx.say(f"@{CHAMPION} -> {name} v{ref.version} (rollback by {who})")
            ctx.result["decision"] = "rollback"
            return
        if args.approve is not None or args.reject is not None:
            version = args.approve if args.approve is not None else args.reject
            assert version is not None
            ref = registry.resolve(client, name, version=version)
            status = registry.version_tags(client, ref).get(STATUS_TAG)
            if status != "pending":
                raise JobFailed(f"{name} v{version} is not waiting for approval (status: {status or 'none'})")
            if args.approve is not None:
                _move_champion(client, ref, who, now, f"approved by {who}")
                client.set_model_version_tag(name, str(version), STATUS_TAG, "approved")
                ctx.say(f"@{CHAMPION} -> {name} v{version} (approved by {who})")
                ctx.result["decision"] = "approved"
            else:
                client.set_model_version_tag(name, str(version), STATUS_TAG, "rejected")
                client.set_model_version_tag(name, str(version), "promotion.rejected_by", who)
                client.set_model_version_tag(name, str(version), "promotion.rejected_at", now)
                ctx.say(f"{name} v{version} rejected by {who}")
                ctx.result["decision"] = "rejected"
            return

        challenger = registry.try_resolve(client, name, CHALLENGER)
        champion = registry.try_resolve(client, name, CHAMPION)
        if challenger is None:
            ctx.say(f"no @{CHALLENGER} for {name}: nothing to promote")
            ctx.result["decision"] = "nothing"
            return
        if champion is not None and champion.version == challenger.version:
            ctx.say(f"{name} v{challenger.version} is already @{CHAMPION}: nothing to do")
            ctx.result["decision"] = "nothing"
            return
        decision = gate(ctx, config, challenger, champion)
        ctx.result["decision_detail"] = decision
        mode = "dry_run" if args.dry_run else config.promotion.mode
        _record(config, challenger, champion, decision, mode)
        client.set_model_version_tag(name, str(challenger.version), "promotion.reason", decision.reason)
        verdict = "PASS" if decision.promote else "REJECT"
        line = f"gate {verdict}: {name} v{challenger.version} {decision.metric}={decision.challenger:.4f}"
        if champion is not None and decision.champion is not None:
            line += f" vs champion v{champion.version} {decision.champion:.4f}"
        ctx.say(f"{line}: {decision.reason}")
        if not decision.promote:
            client.set_model_version_tag(name, str(challenger.version), STATUS_TAG, "refused")
            ctx.result["decision"] = "refused"
        elif mode == "dry_run":
            ctx.say("dry run: @champion not moved")
            ctx.result["decision"] = "dry_run"
        elif mode == "approval":
            client.set_model_version_tag(name, str(challenger.version), STATUS_TAG, "pending")
            ctx.say(f"waiting for approval: mlops-spark promote --approve {challenger.version}")
            ctx.result["decision"] = "pending"
        else:
            _move_champion(client, challenger, "gate", now, decision.reason)
            ctx.say(f"@{CHAMPION} -> {name} v{challenger.version}")
            ctx.result["decision"] = "promoted"

    return run_job("promote", config, args.as_dict(), body, spark)


def gate(ctx: JobContext, config: AppConfig, challenger: ModelRef, champion: ModelRef | None) -> Decision:
    """Evaluate both models on the same holdout rows (the test range, latest features)."""
    spec, split = config.features, config.split
    assert spec.label is not None
    df, ref = lake.read_table(
        ctx.spark,
        ctx.table_path("features", spec.name),
        f"features.{spec.name}",
        date_column=spec.date_column,
        date_range=(split.test.start, split.test.end),
    )
    ctx.read(ref)
    holdout = prepare_training_frame(df, config.model, spec.label.name, ref.name).persist()
    metric, _ = primary_metric(config.model, config.promotion.metric)
    ch_metrics = evaluate(registry.load_spark_model(challenger), holdout, config.model, spec.label.name)
    cp_metrics = None
    if champion is not None:
        cp_metrics = evaluate(registry.load_spark_model(champion), holdout, config.model, spec.label.name)
    holdout.unpersist()
    return decide(metric, ch_metrics, cp_metrics, config.promotion)


def _move_champion(client: mlflow.MlflowClient, ref: ModelRef, who: str, when: str, reason: str) -> None:
    registry.set_alias(client, ref, CHAMPION)
    for key, value in (
        ("promotion.promoted_by", who),
        ("promotion.promoted_at", when),
        ("promotion.reason", reason),
    ):
        client.set_model_version_tag(ref.name, str(ref.version), key, value)


def _record(
    config: AppConfig, challenger: ModelRef, champion: ModelRef | None, d: Decision, mode: str
) -> None:
    tags = {
        "mlops.job": "promote",
        "promotion.mode": mode,
        "promotion.decision": "pass" if d.promote else "refuse",
    }
    with registry.start_run(config.mlflow, f"promote-v{challenger.version}", tags) as _:
        mlflow.log_params(
            {
                "challenger_version": challenger.version,
                "champion_version": champion.version if champion else "none",
                "metric": d.metric,
                "reason": d.reason[:500],
            }
        )
        metrics = {f"challenger_{d.metric}": d.challenger}
        if d.champion is not None:
            metrics[f"champion_{d.metric}"] = d.champion
        mlflow.log_metrics(metrics)
