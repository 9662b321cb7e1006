"""The promotion gate: the pure decision, and the promote job on a real MLflow registry
(first model, better and worse challengers, rollback, dry run, approval)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import mlflow
import pytest
from mlflow import MlflowClient
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from mlops_spark import lake, registry
from mlops_spark.catalog import Catalog
from mlops_spark.config import AppConfig, PromotionConfig
from mlops_spark.errors import ConfigError, JobFailed, ModelNotFoundError
from mlops_spark.jobs.args import JobArgs
from mlops_spark.jobs.promote import promote
from mlops_spark.jobs.score import score
from mlops_spark.jobs.train import train
from mlops_spark.monitoring.quality import realised_quality
from mlops_spark.promotion import decide

from .test_training import days, synthetic_config, write_features

# --------------------------------------------------------------------------- decide()


def rules(**kw: object) -> PromotionConfig:
    return PromotionConfig.model_validate(kw)


def test_first_model_is_promoted_only_if_it_passes_every_threshold() -> None:
    floors = rules(thresholds={"areaUnderROC": 0.7, "log_loss": 0.6})
    ok = decide("areaUnderROC", {"areaUnderROC": 0.8, "log_loss": 0.5}, None, floors)
    assert ok.promote and ok.reason == "first model: passes every threshold" and ok.champion is None
    low = decide("areaUnderROC", {"areaUnderROC": 0.65, "log_loss": 0.5}, None, floors)
    assert not low.promote and low.reason == "fails threshold areaUnderROC >= 0.7 (got 0.6500)"
    # log_loss is an error metric: its threshold is a ceiling
    lossy = decide("areaUnderROC", {"areaUnderROC": 0.8, "log_loss": 0.61}, None, floors)
    assert not lossy.promote and lossy.reason == "fails threshold log_loss <= 0.6 (got 0.6100)"


def test_challenger_must_beat_the_champion_by_the_margin() -> None:
    champion = {"areaUnderROC": 0.80}
    strict = rules()
    assert decide("areaUnderROC", {"areaUnderROC": 0.81}, champion, strict).promote
    tie = decide("areaUnderROC", {"areaUnderROC": 0.80}, champion, strict)
    assert not tie.promote and "gain +0.0000" in tie.reason
    margin = rules(min_improvement=0.02)
    assert not decide("areaUnderROC", {"areaUnderROC": 0.81}, champion, margin).promote
    better = decide("areaUnderROC", {"areaUnderROC": 0.83}, champion, margin)
    assert better.promote and better.champion == 0.80 and better.challenger == 0.83
    assert better.reason == "beats the champion on areaUnderROC by +0.0300 (needed >= 0.02 and > 0)"


def test_error_metrics_must_go_down() -> None:
    champion = {"rmse": 10.0, "r2": 0.5}
    config = rules(thresholds={"rmse": 12.0}, min_improvement=0.5)
    assert decide("rmse", {"rmse": 9.0, "r2": 0.6}, champion, config).promote
    assert not decide("rmse", {"rmse": 9.8, "r2": 0.6}, champion, config).promote
    worse = decide("rmse", {"rmse": 11.0, "r2": 0.4}, champion, config)
    assert not worse.promote and "gain -1.0000" in worse.reason
    assert not decide("rmse", {"rmse": 12.5, "r2": 0.6}, None, config).promote


def test_a_metric_the_model_does_not_measure_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"promotion\.thresholds\.auc: no metric 'auc' is measured"):
        decide("areaUnderROC", {"areaUnderROC": 0.9}, None, rules(thresholds={"auc": 0.7}))
    with pytest.raises(ConfigError, match=r"promotion\.metric: no metric 'AUC'"):
        decide("AUC", {"areaUnderROC": 0.9}, None, rules())


# --------------------------------------------------------------------------- the promote job

FAIR = {"categorical": ["segment"], "numeric": ["x2"]}  # some signal
STRONG = {"categorical": ["segment"], "numeric": ["x1", "x2", "noise"]}  # all of it
WEAK = {"categorical": [], "numeric": ["noise"]}  # none


@pytest.fixture(scope="module")
def registered(spark: SparkSession, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AppConfig]:
    """A registry with three versions of one model: v1 fair, v2 strong, v3 weak."""
    root: Path = tmp_path_factory.mktemp("promotion")
    store = {
        "tracking_uri": f"sqlite:///{root}/mlflow.db",
        "artifact_location": str(root / "artifacts"),
    }
    lake_root = str(root / "lake")
    write_features(spark, lake_root, days(1, 14))
    promotion = {"metric": "areaUnderROC", "thresholds": {"areaUnderROC": 0.6}}
    for columns in (FAIR, STRONG, WEAK):
        train(synthetic_config(lake_root, store, model=columns, promotion=promotion), spark=spark)
    yield synthetic_config(lake_root, store, model=STRONG, promotion=promotion)
    mlflow.set_tracking_uri(None)  # type: ignore[arg-type]


def aliases(config: AppConfig, champion: int | None, challenger: int | None) -> MlflowClient:
    client = registry.configure(config.mlflow)
    name = config.mlflow.model_name
    for alias, version in (("champion", champion), ("challenger", challenger)):
        if version is None:
            client.delete_registered_model_alias(name, alias)
        else:
            client.set_registered_model_alias(name, alias, str(version))
    return client


def champion_of(client: MlflowClient, config: AppConfig) -> int | None:
    ref = registry.try_resolve(client, config.mlflow.model_name, "champion")
    return None if ref is None else ref.version


def tags_of(client: MlflowClient, config: AppConfig, version: int) -> dict[str, str]:
    return dict(client.get_model_version(config.mlflow.model_name, str(version)).tags)


def test_first_model_becomes_champion_if_it_passes_the_thresholds(registered: AppConfig) -> None:
    client = aliases(registered, champion=None, challenger=3)
    refused = promote(registered, spark=None)
    assert refused.result.decision == "refused"
    assert champion_of(client, registered) is None
    assert tags_of(client, registered, 3)["promotion.status"] == "refused"
    assert tags_of(client, registered, 3)["promotion.reason"].startswith(
        "fails threshold areaUnderROC >= 0.6"
    )

    aliases(registered, champion=None, challenger=1)
    first = promote(registered)
    assert first.result.decision == "promoted"
    assert champion_of(client, registered) == 1
    tags = tags_of(client, registered, 1)
    assert tags["promotion.promoted_by"] == "gate"
    assert tags["promotion.reason"] == "first model: passes every threshold"


def test_gate_promotes_a_better_challenger_and_refuses_a_worse_one(
    registered: AppConfig, capsys: pytest.CaptureFixture[str]
) -> None:
    client = aliases(registered, champion=1, challenger=2)
    better = promote(registered)
    decision = better.result.detail
    assert better.result.decision == "promoted" and decision.promote
    assert champion_of(client, registered) == 2
    assert decision.challenger > decision.champion + 0.05  # all features vs some of them
    shown = capsys.readouterr().err
    assert (
        f"gate PASS (auto): {registered.mlflow.model_name} v2 areaUnderROC={decision.challenger:.4f}" in shown
    )
    assert f"vs champion v1 areaUnderROC={decision.champion:.4f}: beats the champion" in shown

    # the decision, both metric sets and the reason are logged to MLflow
    (logged,) = mlflow.search_runs(
        filter_string="tags.`promotion.outcome` = 'promoted' and params.challenger_version = '2'",
        search_all_experiments=True,
        output_format="list",
    )
    assert logged.data.metrics["challenger_areaUnderROC"] == decision.challenger
    assert logged.data.metrics["champion_areaUnderROC"] == decision.champion
    assert {"challenger_log_loss", "champion_f1"} <= set(logged.data.metrics)
    assert logged.data.params["reason"] == decision.reason

    aliases(registered, champion=2, challenger=1)
    worse = promote(registered)
    assert worse.result.decision == "refused"
    assert worse.result.detail.reason.startswith("does not beat the champion on areaUnderROC")
    assert champion_of(client, registered) == 2
    assert tags_of(client, registered, 1)["promotion.status"] == "refused"


def test_rollback_moves_the_champion_to_the_named_version(registered: AppConfig) -> None:
    client = aliases(registered, champion=2, challenger=None)
    ctx = promote(registered, JobArgs(to_version=1, approver="alice"))
    assert ctx.result.decision == "rollback" and ctx.result.previous == 2
    assert champion_of(client, registered) == 1
    tags = tags_of(client, registered, 1)
    assert tags["promotion.promoted_by"] == "alice"
    assert tags["promotion.previous_champion"] == "v2"
    assert tags["promotion.reason"] == "rollback from v2 to v1 requested by alice"
    with pytest.raises(ModelNotFoundError, match="has no version 9"):
        promote(registered, JobArgs(to_version=9))
    assert champion_of(client, registered) == 1


def test_dry_run_decides_and_reports_but_changes_nothing(registered: AppConfig) -> None:
    client = aliases(registered, champion=1, challenger=2)
    before = tags_of(client, registered, 2)
    ctx = promote(registered, JobArgs(dry_run=True))
    assert ctx.result.decision == "dry_run" and ctx.result.detail.promote
    assert champion_of(client, registered) == 1
    assert tags_of(client, registered, 2) == before
    assert any("dry run: @champion not moved (it would move to v2)" in line for line in ctx.lines)

    as_config = registered.model_copy(
        update={"promotion": registered.promotion.model_copy(update={"mode": "dry_run"})}
    )
    assert promote(as_config).result.decision == "dry_run"
    assert champion_of(client, registered) == 1


def test_approval_mode_waits_for_a_person_to_approve_or_reject(registered: AppConfig) -> None:
    approval = registered.model_copy(
        update={"promotion": registered.promotion.model_copy(update={"mode": "approval"})}
    )
    client = aliases(registered, champion=1, challenger=2)
    assert promote(approval).result.decision == "pending"
    assert champion_of(client, registered) == 1
    assert tags_of(client, registered, 2)["promotion.status"] == "pending"

    approved = promote(approval, JobArgs(approve=2, approver="bob"))
    assert approved.result.decision == "approved"
    assert champion_of(client, registered) == 2
    tags = tags_of(client, registered, 2)
    assert tags["promotion.status"] == "approved"
    assert tags["promotion.approved_by"] == tags["promotion.promoted_by"] == "bob"
    assert tags["promotion.approved_at"] == tags["promotion.promoted_at"]
    with pytest.raises(
        JobFailed, match=r"--approve 2: .* v2 is not waiting for approval \(status: approved\)"
    ):
        promote(approval, JobArgs(approve=2))

    aliases(registered, champion=1, challenger=2)
    assert promote(approval).result.decision == "pending"
    rejected = promote(approval, JobArgs(reject=2, approver="carol"))
    assert rejected.result.decision == "rejected"
    assert champion_of(client, registered) == 1
    tags = tags_of(client, registered, 2)
    assert tags["promotion.status"] == "rejected" and tags["promotion.rejected_by"] == "carol"

    # a challenger the gate refused cannot be approved
    aliases(registered, champion=2, challenger=3)
    assert promote(approval).result.decision == "refused"
    with pytest.raises(JobFailed, match=r"status: refused"):
        promote(approval, JobArgs(approve=3))
    assert champion_of(client, registered) == 2


def test_the_gate_and_the_monitor_measure_the_same_rows_identically(
    registered: AppConfig, spark: SparkSession
) -> None:
    """One metrics module: the gate's holdout AUC and log loss (the model's own transform) and
    the monitor's realised quality of the predictions the score job wrote (compiled SQL) for
    the same rows agree to 1e-12."""
    aliases(registered, champion=None, challenger=2)
    gate = promote(registered, spark=spark).result
    assert gate.decision == "promoted" and gate.detail is not None
    split = registered.split
    score(registered, JobArgs(start=split.test.start, end=split.test.end), spark)
    catalog = Catalog(registered)
    preds, _ = lake.read_table(spark, catalog.predictions(), date_range=(split.test.start, split.test.end))
    feats, _ = lake.read_table(spark, catalog.features(), date_range=(split.test.start, split.test.end))
    labelled = preds.join(feats.select("id", "date", "y"), ["id", "date"])
    monitored = realised_quality(labelled, "binary", "y", [])
    got = {r["metric"]: r["value"] for r in monitored.where(F.col("slice") == "all").collect()}
    gated = gate.detail.challenger_metrics
    assert got["rows"] == gated["rows"] == 4 * 120
    for name in ("areaUnderROC", "log_loss", "average_precision", "brier", "accuracy"):
        assert abs(got[name] - gated[name]) <= 1e-12, (name, got[name], gated[name])
