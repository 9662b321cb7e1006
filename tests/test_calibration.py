"""Calibrated thresholds, label-free quality estimates and the retrain decision: the pure
pieces against independent numpy/sklearn computations, then the whole monitor on real
flights (its training days never alert; the baseline is kept with the model's run)."""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import pandas as pd
import pytest
from pyspark.sql import SparkSession
from pyspark.sql import functions as F
from sklearn.isotonic import IsotonicRegression

from mlops_spark import registry
from mlops_spark.config import CalibrationConfig, RetrainRule
from mlops_spark.jobs.args import JobArgs
from mlops_spark.jobs.monitor import monitor
from mlops_spark.jobs.score import score
from mlops_spark.metrics.estimated import estimated_binary_metrics
from mlops_spark.monitoring.baseline import ARTIFACT, Baseline, _quality_limits, fit_isotonic
from mlops_spark.monitoring.calibration import calibrate, describe_short, limits_of
from mlops_spark.monitoring.causes import rank_causes, summary_lines
from mlops_spark.retraining import retrain_decision

from .conftest import FLIGHT_DAYS, FlightsLake, tbl

# --------------------------------------------------------------------------- limits


def test_quantile_limits_are_the_reference_spread() -> None:
    values = [float(v) for v in range(1, 21)]
    settings = CalibrationConfig()
    lim = limits_of(values, settings)
    assert lim is not None
    assert lim.warn == pytest.approx(np.quantile(values, 0.95))
    assert lim.alert == pytest.approx(20 * 1.25)  # the largest reference chunk, with a margin
    assert lim.mean == pytest.approx(np.mean(values)) and lim.std == pytest.approx(np.std(values))
    assert lim.chunks == 20

    std = limits_of(values, CalibrationConfig(method="std", k_warn=2, k_alert=4))
    assert std is not None
    assert std.warn == pytest.approx(np.mean(values) + 2 * np.std(values))
    assert std.alert == pytest.approx(np.mean(values) + 4 * np.std(values))

    assert limits_of(values[:9], settings) is None  # fewer chunks than min_chunks: keep fixed
    floored = limits_of([0.001] * 12, CalibrationConfig(min_alert=0.1))
    assert floored is not None and floored.alert == 0.1


def test_calibrate_keys_by_column_metric_and_window() -> None:
    rows = [
        {"column": c, "metric": m, "window_days": w, "value": v}
        for c in ("a", "b")
        for m in ("psi", "chi2")
        for w in (1, 7)
        for v in np.linspace(0.0, 1.0 if c == "a" else 2.0, 12)
    ]
    cal = calibrate(rows, CalibrationConfig(), ["psi"])
    assert set(cal.limits) == {("a", "psi", 1), ("a", "psi", 7), ("b", "psi", 1), ("b", "psi", 7)}
    assert cal.get("b", "psi", 7).alert == pytest.approx(2.0 * 1.25)  # type: ignore[union-attr]
    again = type(cal).from_json(json.loads(json.dumps(cal.to_json())))
    assert again.limits == cal.limits and describe_short(cal, 10) is None

    # a column with no value on the first day (a rolling rate without history) has one chunk
    # fewer: below min_chunks it keeps the fixed thresholds, and the build says so
    late = [{**r, "value": None} if r["column"] == "b" and r["value"] == 0.0 else r for r in rows]
    short = calibrate(late, CalibrationConfig(min_chunks=12), ["psi"])
    assert set(short.limits) == {("a", "psi", 1), ("a", "psi", 7)}
    assert short.short == {("b", "psi", 1): 11, ("b", "psi", 7): 11}
    line = describe_short(short, 12)
    assert line is not None and line.startswith("2 drift limit(s) of b kept the fixed thresholds")
    assert "as few as 11 reference chunk(s)" in line and "min_chunks=12" in line


def test_quality_limits_sit_on_the_side_where_the_metric_gets_worse() -> None:
    auc = [0.70 + 0.01 * k for k in range(10)]  # holdout days' AUC: 0.70 .. 0.79
    lim = _quality_limits(auc, "areaUnderROC", CalibrationConfig())
    assert lim is not None
    assert lim.warn == pytest.approx(-np.quantile([-v for v in auc], 0.95))
    mean = np.mean(auc)
    assert lim.alert == pytest.approx(0.70 - 0.25 * (mean - 0.70))  # a margin below the worst day
    assert lim.alert < lim.warn < mean
    rmse = _quality_limits([1.0 + 0.1 * k for k in range(10)], "rmse", CalibrationConfig())
    assert rmse is not None and rmse.alert > rmse.warn > 1.45  # errors: limits above


# --------------------------------------------------------------------------- estimation


def test_isotonic_calibration_as_a_spark_expression_matches_sklearn(spark: SparkSession) -> None:
    rng = np.random.default_rng(3)
    score = rng.random(3000)
    outcome = (rng.random(3000) < score**2).astype(float)  # over-confident scores
    cal = fit_isotonic(score, outcome, "positive")
    grid = np.concatenate([[-0.5, 0.0], np.sort(rng.random(400)), [1.0, 1.5]])
    got = (
        spark.createDataFrame([(float(v),) for v in grid], "s double")
        .select("s", cal.column(F.col("s")).alias("c"))
        .toPandas()
        .sort_values("s")
    )
    iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(score, outcome)
    np.testing.assert_allclose(got.c.to_numpy(), iso.predict(got.s.to_numpy()), atol=1e-12)


def _soft_auc(q: np.ndarray, s: np.ndarray) -> float:
    """Σ_i Σ_j q_i (1 - q_j) [s_i > s_j] + ties/2, over Σq Σ(1 - q): the rank statistic with
    soft labels, every pair of rows counted (what the estimate computes)."""
    gt = (s[:, None] > s[None, :]).astype(float) + 0.5 * (s[:, None] == s[None, :])
    return float(q @ gt @ (1 - q) / (q.sum() * (1 - q).sum()))


def test_estimated_metrics_are_the_expected_metrics_under_calibrated_probabilities(
    spark: SparkSession,
) -> None:
    rng = np.random.default_rng(5)
    n = 1500
    groups = rng.choice(["g1", "g2"], n)
    p = np.round(rng.beta(2, 3, n), 3)  # ties included
    q = np.clip(p * 0.9 + 0.05, 0, 1)  # the calibrated P(label = 1)
    yhat = (p > 0.4).astype(float)
    pdf = pd.DataFrame({"g": groups, "probability": p, "q": q, "prediction": yhat})
    df = spark.createDataFrame(pdf)
    got = estimated_binary_metrics(df, F.col("q"), ["g"]).toPandas()
    for g in ("g1", "g2"):
        m = pdf[pdf.g == g]
        qq, pp, hh = m.q.to_numpy(), m.probability.to_numpy(), m.prediction.to_numpy()
        tp, fp, fn = (hh * qq).sum(), (hh * (1 - qq)).sum(), ((1 - hh) * qq).sum()
        expected = {
            "rows": len(m),
            "positive_rate": qq.mean(),
            "accuracy": ((hh * qq) + (1 - hh) * (1 - qq)).mean(),
            "precision": tp / (tp + fp),
            "recall": tp / (tp + fn),
            "f1": 2 * tp / (2 * tp + fp + fn),
            "log_loss": -(qq * np.log(pp) + (1 - qq) * np.log(1 - pp)).mean(),
            "brier": (qq * (1 - pp) ** 2 + (1 - qq) * pp**2).mean(),
            "areaUnderROC": _soft_auc(qq, pp),
        }
        mine = got[got.g == g].set_index("metric").value
        for metric, value in expected.items():
            assert mine[metric] == pytest.approx(value, rel=1e-9), (g, metric)

    # labels drawn from the calibrated probabilities: the realised AUC lands on the estimate
    big = 40_000
    s = rng.random(big)
    truth = 1 / (1 + np.exp(-6 * (s - 0.5)))
    y = (rng.random(big) < truth).astype(float)
    from sklearn.metrics import roc_auc_score

    rows = spark.createDataFrame(pd.DataFrame({"probability": s, "q": truth, "prediction": (s > 0.5) * 1.0}))
    est = estimated_binary_metrics(rows, F.col("q")).where("metric = 'areaUnderROC'").first()
    assert est is not None and abs(est["value"] - roc_auc_score(y, s)) < 0.01


# --------------------------------------------------------------------------- causes


def test_causes_rank_columns_by_their_own_reference_spread() -> None:
    day = dt.date(2013, 7, 1)

    def row(kind: str, column: str, metric: str, value: float, status: str, rel: float | None) -> dict:
        return {
            "date": day,
            "model_version": 1,
            "kind": kind,
            "column": column,
            "slice": "all",
            "window_days": 1,
            "metric": metric,
            "value": value,
            "alert_threshold": 1.0,
            "status": status,
            "relative": rel,
        }

    metrics = pd.DataFrame(
        [
            row("drift", "wx_temp", "psi", 5.0, "alert", 9.0),
            row("drift", "wx_temp", "ks", 0.5, "alert", 4.0),
            row("drift", "dep_hour", "psi", 0.3, "warn", 2.5),
            row("drift", "distance", "psi", 0.01, "ok", 0.1),
            row("drift", "probability", "psi", 0.4, "alert", 6.0),
            row("estimated_quality", "delayed", "areaUnderROC", 0.70, "ok", 0.5),
            row("quality", "delayed", "areaUnderROC", 0.68, "warn", 1.5),
        ]
    )
    causes = rank_causes(metrics, "binary", ["probability", "prediction"], {1: {"areaUnderROC": 0.74}})
    assert len(causes) == 1
    got = causes.iloc[0]
    assert got["changed columns"] == "wx_temp +9.0σ (psi alert); dep_hour +2.5σ (psi warn)"
    assert got["prediction moved"] == "probability +6.0σ (psi alert)"
    assert got["estimated vs holdout"] == pytest.approx(-0.04)
    assert got["realised areaUnderROC"] == 0.68 and got["status"] == "alert" and got["alerts"] == 3
    (line,) = summary_lines(causes, "binary")
    assert line.startswith("2013-07-01 v1: alert; changed wx_temp +9.0σ")
    assert "estimated areaUnderROC 0.700 (-0.040 vs holdout); realised 0.680" in line


# --------------------------------------------------------------------------- the monitor, on real flights


@pytest.fixture(scope="module")
def monitored(spark: SparkSession, flights_lake: FlightsLake, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """The shared flights lake's two weeks scored and monitored (train 01-01..10, test 11..14)."""
    lake_copy = flights_lake.copy_to(tmp_path_factory.mktemp("calibration"))
    # a small lake: ten training days (the rolling rates have no value on the first, so nine
    # chunks) and four holdout days, fewer than the default min_chunks of 10
    config = lake_copy.config(**{"monitoring.calibration.min_chunks": 4})
    score(config, JobArgs(start=FLIGHT_DAYS[0], end=FLIGHT_DAYS[1]), spark)
    run = monitor(config, JobArgs(), spark)
    table = spark.read.format("delta").load(tbl(config, "monitoring.flights_delay").path)
    return config, run, table.toPandas()


def test_days_the_champion_was_trained_on_never_alert(monitored) -> None:  # type: ignore[no-untyped-def]
    config, run, table = monitored
    assert run.result.monitored_partitions == 14
    drift = table[table.kind == "drift"]
    calibrated = drift[drift.threshold_source == "calibrated"]
    assert set(calibrated.metric) == set(config.monitoring.calibration.metrics)
    assert set(calibrated.window_days) == {1, 7}
    # a training day is part of the reference its limits were measured on (leave-one-out):
    # against the whole reference its drift is smaller, so it cannot cross the limit
    train_days = drift[drift.date <= dt.date(2013, 1, 10)]
    flagged = train_days[train_days.status == "alert"]
    shown = ["date", "column", "slice", "window_days", "metric", "value", "alert_threshold"]
    shown += ["threshold_source"]
    assert flagged.empty, flagged[shown].to_string()
    # relative is in units of the reference's own spread: none where every chunk was equal
    # (e.g. no nulls in any reference day), and there the limits are equal too
    flat = calibrated[calibrated.relative.isna()]
    assert len(flat) < len(calibrated) / 2 and (flat.warn_threshold == flat.alert_threshold).all()
    # limits differ by column: one fixed PSI threshold for all of them was the old behaviour
    psi = calibrated[(calibrated.metric == "psi") & (calibrated.window_days == 1)]
    assert psi.groupby("column").alert_threshold.first().nunique() > 3


def test_the_baseline_is_kept_with_the_models_run_and_reused(  # type: ignore[no-untyped-def]
    spark: SparkSession, monitored
) -> None:
    config, run, _ = monitored
    assert any("monitoring baseline built" in line for line in run.lines)
    client = registry.configure(config.mlflow)
    champion = registry.resolve(client, config.mlflow.model_name, alias="champion")
    import mlflow.artifacts

    local = mlflow.artifacts.download_artifacts(run_id=champion.run_id, artifact_path=ARTIFACT)
    with open(local) as f:
        baseline = Baseline.from_json(json.load(f))
    assert baseline.model_version == champion.version
    assert baseline.probability is not None and baseline.probability.target == "positive"
    assert 0.5 < baseline.holdout["areaUnderROC"] < 1.0
    assert {k[0] for k in baseline.drift.limits} >= {"probability", "wx_temp", "dep_hour"}
    # quality limits per slice, each from its own days on the holdout
    auc = {s: lim for (s, m), lim in baseline.quality.items() if m == "areaUnderROC"}
    assert "all" in auc and any(s.startswith("carrier=") for s in auc)
    assert all(lim.chunks == 4 for lim in auc.values())
    one_carrier = next(s for s in auc if s.startswith("carrier="))
    assert auc[one_carrier].alert != auc["all"].alert
    again = Baseline.from_json(json.loads(json.dumps(baseline.to_json())))
    assert again.quality == baseline.quality and again.drift.limits == baseline.drift.limits

    # a monitoring table written before calibration (no relative / threshold_source) takes
    # the new columns on the next run; its old rows keep nulls there
    path = tbl(config, "monitoring.flights_delay").path
    old = spark.read.format("delta").load(path).drop("relative", "threshold_source")
    old.write.format("delta").mode("overwrite").option("overwriteSchema", "true").partitionBy("date").save(
        path
    )
    again = monitor(config, JobArgs(date=dt.date(2013, 1, 14)), spark)
    assert again.result.monitored_partitions == 1
    assert not any("monitoring baseline built" in line for line in again.lines)  # loaded, not rebuilt
    table = spark.read.format("delta").load(path)
    sources = {
        r["date"]: r["n"]
        for r in table.where("threshold_source = 'calibrated'")
        .groupBy("date")
        .agg(F.count("*").alias("n"))
        .collect()
    }
    assert list(sources) == [dt.date(2013, 1, 14)]


def test_estimated_quality_is_written_beside_the_realised(monitored) -> None:  # type: ignore[no-untyped-def]
    _, _, table = monitored
    one = table[(table.slice == "all") & (table.metric == "areaUnderROC") & (table.window_days == 1)]
    est = one[one.kind == "estimated_quality"].set_index("date").value
    real = one[one.kind == "quality"].set_index("date").value
    assert len(est) == 14 and len(real) == 14
    error = (est - real).abs()
    print("estimated - realised AUC per day:", (est - real).round(4).to_dict())
    # measured here: mean |error| 0.050 over the 14 days (0.001 to 0.127); a day's realised AUC
    # on ~900 flights has a sampling error of ~0.02 by itself
    assert error.mean() < 0.08
    sliced = table[(table.kind == "estimated_quality") & (table.slice != "all")]
    assert {s.split("=")[0] for s in sliced.slice} == {"carrier", "origin"}


def test_retrain_decision_names_the_evidence_that_fired(  # type: ignore[no-untyped-def]
    spark: SparkSession, monitored
) -> None:
    config, _, table = monitored
    written = spark.createDataFrame(table.drop(columns=["computed_at"]))
    features = [*config.model.numeric, *config.model.categorical]
    alerts = table[(table.window_days == 1) & (table.slice == "all") & (table.status == "alert")]
    for evidence, rows in (
        ("feature_drift", alerts[(alerts.kind == "drift") & alerts.column.isin(features)]),
        (
            "prediction_drift",
            alerts[(alerts.kind == "drift") & alerts.column.isin(["probability", "prediction"])],
        ),
    ):
        rule = RetrainRule(alerts=1, of_last=14, metrics=["psi", "ks"], evidence=[evidence])
        decision = retrain_decision(
            written, 1, rule, "date", ["probability", "prediction"], features, "delayed"
        )
        expected = sorted(set(rows[rows.metric.isin(["psi", "ks"])].date))
        assert list(decision.alerted) == expected
        assert decision.retrain == bool(expected)
        if expected:
            assert f"fired by {evidence} on" in decision.reason
        assert len(decision.considered) == 14 and decision.latest_labelled == dt.date(2013, 1, 14)
    # the training days cannot fire a rule: their calibrated drift never alerts
    rule = RetrainRule(alerts=1, of_last=10, metrics=["psi"], evidence=["feature_drift", "prediction_drift"])
    early = spark.createDataFrame(table[table.date <= dt.date(2013, 1, 10)].drop(columns=["computed_at"]))
    quiet = retrain_decision(early, 1, rule, "date", ["probability", "prediction"], features, "delayed")
    assert not quiet.retrain and "0 of the last 10" in quiet.reason and "fired by" not in quiet.reason
