"""promote: the gated move of @champion (auto, dry run or human approval), and rollback.

Modes (``promotion.mode``, or ``--dry-run`` for one run):

* ``auto``: a challenger that passes the gate becomes ``@champion`` at once.
* ``dry_run``: the gate decides and reports (printed and logged to MLflow); nothing in
  the registry changes.
* ``approval``: a passing challenger is tagged ``promotion.status=pending``; a person
  then runs ``promote --approve N`` (moves ``@champion``) or ``promote --reject N``.

``promote --to-version N`` moves ``@champion`` to version N without the gate (rollback).
Every move records who, when and why as tags on the model version.
"""

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
        who = args.approver or os.environ.get("MLOPS_SPARK_USER") or getpass.getuser()
        now = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        if args.to_version is not None:
            rollback(ctx, config, client, args.to_version, who, now)
        elif args.approve is not None:
            settle(ctx, config, client, args.approve, True, who, now)
        elif args.reject is not None:
            settle(ctx, config, client, args.reject, False, who, now)
        else:
            run_gate(ctx, config, client, "dry_run" if args.dry_run else config.promotion.mode, now)

    return run_job("promote", config, args.as_dict(), body, spark)


def rollback(
    ctx: JobContext, config: AppConfig, client: mlflow.MlflowClient, version: int, who: str, now: str
) -> None:
    """Point @champion at ``version`` (back or forward), recording who, when and the previous one."""
    name = config.mlflow.model_name
    ref = registry.resolve(client, name, version=version)
    previous = registry.try_resolve(client, name, CHAMPION)
    was = f"v{previous.version}" if previous else "none"
    _move_champion(client, ref, who, now, f"rollback from {was} to v{ref.version} requested by {who}")
    registry.set_version_tags(client, ref, {"promotion.previous_champion": was, STATUS_TAG: "rollback"})
    ctx.say(f"@{CHAMPION}: {name} {was} -> v{ref.version} (rollback by {who})")
    ctx.result.update(decision="rollback", champion=ref.version, previous=previous and previous.version)


def settle(
    ctx: JobContext,
    config: AppConfig,
    client: mlflow.MlflowClient,
    version: int,
    approve: bool,
    who: str,
    now: str,
) -> None:
    """Approve (move @champion) or reject a version the gate left pending."""
    name = config.mlflow.model_name
    ref = registry.resolve(client, name, version=version)
    status = registry.version_tags(client, ref).get(STATUS_TAG)
    if status != "pending":
        flag = "--approve" if approve else "--reject"
        raise JobFailed(
            f"{flag} {version}: {name} v{version} is not waiting for approval (status: {status or 'none'}); "
            "only a version that passed the gate in approval mode can be approved or rejected"
        )
    verb = "approved" if approve else "rejected"
    registry.set_version_tags(
        client, ref, {STATUS_TAG: verb, f"promotion.{verb}_by": who, f"promotion.{verb}_at": now}
    )
    if approve:
        previous = registry.try_resolve(client, name, CHAMPION)
        _move_champion(client, ref, who, now, f"approved by {who}")
        was = f"v{previous.version}" if previous else "none"
        ctx.say(f"@{CHAMPION}: {name} {was} -> v{version} (approved by {who})")
    else:
        ctx.say(f"{name} v{version} rejected by {who}; @{CHAMPION} unchanged")
    ctx.result.update(decision=verb, version=version)


def run_gate(ctx: JobContext, config: AppConfig, client: mlflow.MlflowClient, mode: str, now: str) -> None:
    """Evaluate @challenger (and @champion) on the holdout, decide, log, and act by mode."""
    name = config.mlflow.model_name
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
    verdict = "PASS" if decision.promote else "REFUSE"
    line = (
        f"gate {verdict} ({mode}): {name} v{challenger.version} {decision.metric}={decision.challenger:.4f}"
    )
    if champion is not None and decision.champion is not None:
        line += f" vs champion v{champion.version} {decision.metric}={decision.champion:.4f}"
    ctx.say(f"{line}: {decision.reason}")

    if not decision.promote:
        outcome = "refused"
    elif mode == "dry_run":
        outcome = "dry_run"
    elif mode == "approval":
        outcome = "pending"
    else:
        outcome = "promoted"
    _record(config, challenger, champion, decision, mode, outcome)
    if mode != "dry_run":
        registry.set_version_tags(
            client,
            challenger,
            {
                STATUS_TAG: outcome,
                "promotion.reason": decision.reason[:5000],
                "promotion.decided_at": now,
                "promotion.metric": decision.metric,
                f"promotion.challenger_{decision.metric}": repr(decision.challenger),
                **(
                    {f"promotion.champion_{decision.metric}": repr(decision.champion)}
                    if decision.champion is not None
                    else {}
                ),
                "promotion.compared_with": f"v{champion.version}" if champion else "none",
            },
        )
    if outcome == "dry_run":
        ctx.say(f"dry run: @{CHAMPION} not moved (it would move to v{challenger.version})")
    elif outcome == "pending":
        ctx.say(f"waiting for approval: mlops-spark promote --approve {challenger.version} (or --reject)")
    elif outcome == "promoted":
        _move_champion(client, challenger, "gate", now, decision.reason)
        ctx.say(f"@{CHAMPION} -> {name} v{challenger.version}")
    ctx.result.update(decision=outcome, challenger=challenger.version, champion=champion and champion.version)


def gate(ctx: JobContext, config: AppConfig, challenger: ModelRef, champion: ModelRef | None) -> Decision:
    """Evaluate both models on the same holdout rows (the test range, latest features)."""
    spec, split = config.features, config.split
    if spec.label is None:
        raise JobFailed("promote: features.label is not configured, so there is no holdout to compare on")
    metric, _ = primary_metric(config.model, config.promotion.metric, where="promotion.metric")
    df, ref = lake.read_table(
        ctx.spark,
        ctx.table_path("features", spec.name),
        f"features.{spec.name}",
        date_column=spec.date_column,
        date_range=(split.test.start, split.test.end),
    )
    ctx.read(ref)
    holdout = prepare_training_frame(df, config.model, spec.label.name, ref.name).persist()
    try:
        ch_metrics = evaluate(registry.load_spark_model(challenger), holdout, config.model, spec.label.name)
        cp_metrics = None
        if champion is not None:
            cp_metrics = evaluate(registry.load_spark_model(champion), holdout, config.model, spec.label.name)
    finally:
        holdout.unpersist()
    return decide(metric, ch_metrics, cp_metrics, config.promotion)


def _move_champion(client: mlflow.MlflowClient, ref: ModelRef, who: str, when: str, reason: str) -> None:
    registry.set_alias(client, ref, CHAMPION)
    registry.set_version_tags(
        client,
        ref,
        {"promotion.promoted_by": who, "promotion.promoted_at": when, "promotion.reason": reason[:5000]},
    )


def _record(
    config: AppConfig,
    challenger: ModelRef,
    champion: ModelRef | None,
    d: Decision,
    mode: str,
    outcome: str,
) -> None:
    """An MLflow run per gate decision: both versions, the reason and both metric sets."""
    tags = {
        "mlops.job": "promote",
        "promotion.mode": mode,
        "promotion.decision": "pass" if d.promote else "refuse",
        "promotion.outcome": outcome,
        "promotion.challenger_run_id": challenger.run_id,
    }
    with registry.start_run(config.mlflow, f"promote-v{challenger.version}", tags):
        mlflow.log_params(
            {
                "challenger_version": challenger.version,
                "champion_version": champion.version if champion else "none",
                "metric": d.metric,
                "min_improvement": config.promotion.min_improvement,
                "thresholds": ",".join(f"{k}={v}" for k, v in sorted(config.promotion.thresholds.items())),
                "reason": d.reason[:500],
            }
        )
        metrics = {f"challenger_{k}": v for k, v in d.challenger_metrics.items()}
        metrics.update({f"champion_{k}": v for k, v in (d.champion_metrics or {}).items()})
        mlflow.log_metrics(metrics)
