"""What the promote job does to the registry: gate a challenger, roll back, approve, reject.

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

from collections.abc import Callable

import mlflow
from mlflow.tracking import MlflowClient
from pyspark.sql import SparkSession

from mlops_spark import lake, registry
from mlops_spark.catalog import Catalog
from mlops_spark.config import AppConfig
from mlops_spark.errors import JobFailed
from mlops_spark.lake import TableRef
from mlops_spark.metrics import primary_metric
from mlops_spark.promotion.decision import Decision, decide
from mlops_spark.registry import CHALLENGER, CHAMPION, STATUS_TAG, ModelRef
from mlops_spark.results import PromoteResult, PromotionOutcome
from mlops_spark.tasks import for_model
from mlops_spark.training import evaluate_model, prepare_training_frame

Say = Callable[[str], None]


def move_champion(client: MlflowClient, ref: ModelRef, who: str, when: str, reason: str) -> None:
    registry.set_alias(client, ref, CHAMPION)
    registry.set_version_tags(
        client,
        ref,
        {"promotion.promoted_by": who, "promotion.promoted_at": when, "promotion.reason": reason[:5000]},
    )


def rollback(client: MlflowClient, name: str, version: int, who: str, now: str, say: Say) -> PromoteResult:
    """Point @champion at ``version`` (back or forward), recording who, when and the previous one."""
    ref = registry.resolve(client, name, version=version)
    previous = registry.try_resolve(client, name, CHAMPION)
    was = f"v{previous.version}" if previous else "none"
    move_champion(client, ref, who, now, f"rollback from {was} to v{ref.version} requested by {who}")
    registry.set_version_tags(client, ref, {"promotion.previous_champion": was, STATUS_TAG: "rollback"})
    say(f"@{CHAMPION}: {name} {was} -> v{ref.version} (rollback by {who})")
    return PromoteResult("rollback", champion=ref.version, previous=previous.version if previous else None)


def settle(
    client: MlflowClient, name: str, version: int, approve: bool, who: str, now: str, say: Say
) -> PromoteResult:
    """Approve (move @champion) or reject a version the gate left pending."""
    ref = registry.resolve(client, name, version=version)
    status = registry.version_tags(client, ref).get(STATUS_TAG)
    if status != "pending":
        flag = "--approve" if approve else "--reject"
        raise JobFailed(
            f"{flag} {version}: {name} v{version} is not waiting for approval (status: {status or 'none'}); "
            "only a version that passed the gate in approval mode can be approved or rejected"
        )
    verb: PromotionOutcome = "approved" if approve else "rejected"
    registry.set_version_tags(
        client, ref, {STATUS_TAG: verb, f"promotion.{verb}_by": who, f"promotion.{verb}_at": now}
    )
    previous = registry.try_resolve(client, name, CHAMPION)
    if approve:
        move_champion(client, ref, who, now, f"approved by {who}")
        was = f"v{previous.version}" if previous else "none"
        say(f"@{CHAMPION}: {name} {was} -> v{version} (approved by {who})")
        return PromoteResult(
            verb, challenger=version, champion=version, previous=previous.version if previous else None
        )
    say(f"{name} v{version} rejected by {who}; @{CHAMPION} unchanged")
    return PromoteResult(verb, challenger=version, champion=previous.version if previous else None)


def evaluate_on_holdout(
    spark: SparkSession, config: AppConfig, challenger: ModelRef, champion: ModelRef | None
) -> tuple[Decision, TableRef]:
    """Evaluate both models on the same holdout rows (the test range, latest features) with
    `mlops_spark.metrics` and decide."""
    spec, split = config.features, config.split
    if spec.label is None:
        raise JobFailed("promote: features.label is not configured, so there is no holdout to compare on")
    metric, _ = primary_metric(config.model.resolved_task, config.promotion.metric, where="promotion.metric")
    df, ref = lake.read_table(
        spark, Catalog(config).features(), date_range=(split.test.start, split.test.end)
    )
    holdout = prepare_training_frame(df, config.model, spec.label.name, ref.name).persist()
    try:
        label = spec.label.name
        ch_metrics = evaluate_model(registry.load_spark_model(challenger), holdout, config.model, label)
        cp_metrics = None
        if champion is not None:
            cp_metrics = evaluate_model(registry.load_spark_model(champion), holdout, config.model, label)
    finally:
        holdout.unpersist()
    return decide(metric, ch_metrics, cp_metrics, config.promotion), ref


def run_gate(
    spark: SparkSession, config: AppConfig, client: MlflowClient, mode: str, now: str, say: Say
) -> tuple[PromoteResult, TableRef | None]:
    """Evaluate @challenger (and @champion) on the holdout, decide, log, and act by mode."""
    name = config.mlflow.model_name
    challenger = registry.try_resolve(client, name, CHALLENGER)
    champion = registry.try_resolve(client, name, CHAMPION)
    if challenger is None:
        say(f"no @{CHALLENGER} for {name}: nothing to promote")
        return PromoteResult("nothing"), None
    if champion is not None and champion.version == challenger.version:
        say(f"{name} v{challenger.version} is already @{CHAMPION}: nothing to do")
        return PromoteResult("nothing", challenger.version, champion.version), None
    config = for_model(config, client, challenger.run_id)
    decision, holdout = evaluate_on_holdout(spark, config, challenger, champion)
    line = f"gate {'PASS' if decision.promote else 'REFUSE'} ({mode}): {name} v{challenger.version} "
    line += f"{decision.metric}={decision.challenger:.4f}"
    if champion is not None and decision.champion is not None:
        line += f" vs champion v{champion.version} {decision.metric}={decision.champion:.4f}"
    say(f"{line}: {decision.reason}")

    outcome: PromotionOutcome = "refused"
    if decision.promote:
        outcome = {"dry_run": "dry_run", "approval": "pending"}.get(mode, "promoted")  # type: ignore[assignment]
    record_decision(config, challenger, champion, decision, mode, outcome)
    if mode != "dry_run":
        tag_decision(client, challenger, champion, decision, outcome, now)
    if outcome == "dry_run":
        say(f"dry run: @{CHAMPION} not moved (it would move to v{challenger.version})")
    elif outcome == "pending":
        say(f"waiting for approval: mlops-spark promote --approve {challenger.version} (or --reject)")
    elif outcome == "promoted":
        move_champion(client, challenger, "gate", now, decision.reason)
        say(f"@{CHAMPION} -> {name} v{challenger.version}")
    result = PromoteResult(
        outcome, challenger.version, champion.version if champion else None, detail=decision
    )
    return result, holdout


def tag_decision(
    client: MlflowClient, challenger: ModelRef, champion: ModelRef | None, d: Decision, outcome: str, now: str
) -> None:
    tags = {
        STATUS_TAG: outcome,
        "promotion.reason": d.reason[:5000],
        "promotion.decided_at": now,
        "promotion.metric": d.metric,
        f"promotion.challenger_{d.metric}": repr(d.challenger),
        "promotion.compared_with": f"v{champion.version}" if champion else "none",
    }
    if d.champion is not None:
        tags[f"promotion.champion_{d.metric}"] = repr(d.champion)
    registry.set_version_tags(client, challenger, tags)


def record_decision(
    config: AppConfig, challenger: ModelRef, champion: ModelRef | None, d: Decision, mode: str, outcome: str
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
