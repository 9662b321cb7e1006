"""Drift and quality metrics: Spark's histogram-based values against scipy / sklearn
computed independently on the same raw data (synthetic, with a known shift)."""

from __future__ import annotations

import datetime as dt
import math

import numpy as np
import pandas as pd
import pytest
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T
from pyspark.testing import assertDataFrameEqual
from scipy import stats
from scipy.spatial.distance import jensenshannon
from scipy.special import rel_entr
from sklearn import metrics as skm

from mlops_spark.canary import ab_comparison, agreement_metrics, two_sample_ks
from mlops_spark.config import MetricThreshold, MonitoringConfig
from mlops_spark.monitoring.drift import drift_metrics
from mlops_spark.monitoring.frames import PSI_EPSILON
from mlops_spark.monitoring.profile import ReferenceProfile, profile_reference
from mlops_spark.monitoring.quality import realised_quality
from mlops_spark.monitoring.status import with_status
from mlops_spark.scoring.ab import assign_arm, routed_rows

D1, D2 = dt.date(2024, 3, 1), dt.date(2024, 3, 2)
NUMERIC = ["x_cont", "x_hour", "x_sparse"]
CATEGORICAL = ["cat"]


def _sample(rng: np.random.Generator, n: int, shifted: bool) -> pd.DataFrame:
    hours = np.arange(24)
    base = np.exp(-((hours - 12) ** 2) / 40.0)
    late = np.exp(-((hours - 17) ** 2) / 30.0)
    weights = (late if shifted else base) / (late if shifted else base).sum()
    cats = ["A", "B", "C", "D", "E"]
    cat_p = [0.1, 0.2, 0.3, 0.25, 0.15] if shifted else [0.4, 0.3, 0.2, 0.1, 0.0]
    sparse = rng.exponential(2.0 if shifted else 1.0, n)
    sparse[rng.random(n) < (0.2 if shifted else 0.05)] = np.nan
    return pd.DataFrame(
        {
            "x_cont": rng.normal(0.5, 1.3, n) if shifted else rng.normal(0.0, 1.0, n),
            "x_hour": rng.choice(hours, n, p=weights).astype(float),
            "x_sparse": sparse,
            "cat": rng.choice(cats, n, p=cat_p),
        }
    )


@pytest.fixture(scope="module")
def data() -> dict[str, pd.DataFrame]:
    rng = np.random.default_rng(7)
    return {"ref": _sample(rng, 4000, False), D1: _sample(rng, 1500, False), D2: _sample(rng, 1500, True)}


def _to_spark(spark: SparkSession, pdf: pd.DataFrame, day: dt.date | None) -> DataFrame:
    schema = "date date, x_cont double, x_hour double, x_sparse double, cat string"
    rows = [
        (day, *(None if isinstance(v, float) and math.isnan(v) else v for v in r))
        for r in pdf[NUMERIC + CATEGORICAL].itertuples(index=False)
    ]
    return spark.createDataFrame(rows, schema)


@pytest.fixture(scope="module")
def computed(spark: SparkSession, data: dict[str, pd.DataFrame]) -> tuple[ReferenceProfile, pd.DataFrame]:
    reference = _to_spark(spark, data["ref"], None)
    profile = profile_reference(
        reference, NUMERIC, CATEGORICAL, bins=10, grid_size=200, relative_error=0.0, max_categories=50
    )
    current = _to_spark(spark, data[D1], D1).unionByName(_to_spark(spark, data[D2], D2))
    out = drift_metrics(current, profile, ["date"], "date", windows=[2], window_ends=[D2]).toPandas()
    return profile, out


def _value(out: pd.DataFrame, day: dt.date, column: str, metric: str, window: int = 1) -> float:
    hit = out[
        (out.date == day) & (out.column == column) & (out.metric == metric) & (out.window_days == window)
    ]
    assert len(hit) == 1, (day, column, metric, window, hit)
    return float(hit.value.iloc[0])


def _atom_shift(values: np.ndarray, edges: np.ndarray) -> float:
    """W(values, values with each grid bucket's mass moved to the bucket's mean)."""
    bucket = np.searchsorted(edges, values, side="left")
    means = pd.Series(values).groupby(bucket).transform("mean").to_numpy()
    return float(np.abs(values - means).mean())


def _binned(ref_counts: np.ndarray, cur_counts: np.ndarray) -> dict[str, float]:
    """PSI, JS distance and chi-square of two count vectors, with scipy."""
    pr, pc = ref_counts / ref_counts.sum(), cur_counts / cur_counts.sum()
    fr, fc = np.maximum(pr, PSI_EPSILON), np.maximum(pc, PSI_EPSILON)
    keep = (ref_counts + cur_counts) > 0
    chi = stats.chi2_contingency(np.vstack([ref_counts, cur_counts])[:, keep], correction=False)
    return {
        "psi": float(rel_entr(fc, fr).sum() + rel_entr(fr, fc).sum()),
        "js_distance": float(jensenshannon(pr, pc, base=2)),
        "chi2": float(chi.statistic),
        "chi2_pvalue": float(chi.pvalue),
    }


def test_quantile_grid_is_the_exact_reference_quantiles(
    computed: tuple[ReferenceProfile, pd.DataFrame], data: dict[str, pd.DataFrame]
) -> None:
    profile, _ = computed
    for column in NUMERIC:
        values = data["ref"][column].dropna().to_numpy()
        expected = np.quantile(values, [k / 10 for k in range(1, 10)], method="inverted_cdf")
        assert list(profile.numeric[column].cuts) == sorted(set(expected) - {values.min()})
        assert profile.numeric[column].rows == len(values)
        assert profile.numeric[column].std == pytest.approx(values.std(), rel=1e-9)


@pytest.mark.parametrize("window", [1, 2])
def test_numeric_drift_matches_scipy(
    computed: tuple[ReferenceProfile, pd.DataFrame], data: dict[str, pd.DataFrame], window: int
) -> None:
    profile, out = computed
    days = [D1, D2] if window == 1 else [D2]
    errors: dict[str, float] = {}
    for day in days:
        cur_df = data[day] if window == 1 else pd.concat([data[D1], data[D2]])
        for column in NUMERIC:
            ref = data["ref"][column].dropna().to_numpy()
            cur = cur_df[column].dropna().to_numpy()
            cuts = np.array(profile.numeric[column].cuts)
            # right-closed bins: index = number of cut points strictly below the value
            bins = len(cuts) + 1
            ref_counts = np.bincount(np.searchsorted(cuts, ref, side="left"), minlength=bins)
            cur_counts = np.bincount(np.searchsorted(cuts, cur, side="left"), minlength=bins)
            for metric, expected in _binned(ref_counts, cur_counts).items():
                got = _value(out, day, column, metric, window)
                assert got == pytest.approx(expected, rel=1e-6, abs=1e-9), (day, column, metric)

            ks_exact = stats.ks_2samp(ref, cur).statistic
            ks = _value(out, day, column, "ks", window)
            # the grid value is a lower bound, short by at most one bucket's mass
            edges = np.array(profile.numeric[column].edges)
            fine = len(edges) + 1
            mass_r = np.bincount(np.searchsorted(edges, ref, side="left"), minlength=fine) / len(ref)
            mass_c = np.bincount(np.searchsorted(edges, cur, side="left"), minlength=fine) / len(cur)
            bound = max(mass_r.max(), mass_c.max())
            assert ks <= ks_exact + 1e-12
            assert ks_exact - ks <= bound
            w_exact = stats.wasserstein_distance(ref, cur)
            w = _value(out, day, column, "wasserstein", window)
            errors[f"{day}/{column}"] = abs(w - w_exact) / w_exact
            if column == "x_hour":  # discrete values on the grid: both exact
                assert ks == pytest.approx(ks_exact, abs=1e-12)
                assert w == pytest.approx(w_exact, rel=1e-9)
            else:
                assert ks_exact - ks <= 0.01
                # moving each bucket's mass to its mean moves each sample by at most
                # W(sample, atoms); the triangle inequality bounds the error by their sum
                moved = _atom_shift(ref, edges) + _atom_shift(cur, edges)
                assert abs(w - w_exact) <= moved + 1e-12
                assert w == pytest.approx(w_exact, rel=0.05)
            assert _value(out, day, column, "wasserstein_std", window) == pytest.approx(
                w / ref.std(), rel=1e-9
            )
            assert _value(out, day, column, "mean", window) == pytest.approx(cur.mean(), rel=1e-9)
            null_ref = data["ref"][column].isna().mean()
            null_cur = cur_df[column].isna().mean()
            assert _value(out, day, column, "null_rate", window) == pytest.approx(null_cur)
            assert _value(out, day, column, "null_rate_delta", window) == pytest.approx(
                abs(null_cur - null_ref)
            )
    print("wasserstein relative error vs scipy:", {k: f"{v:.2e}" for k, v in errors.items()})


def test_categorical_drift_matches_scipy(
    computed: tuple[ReferenceProfile, pd.DataFrame], data: dict[str, pd.DataFrame]
) -> None:
    _, out = computed
    ref = data["ref"]["cat"]
    known = sorted(ref.unique())
    for day in (D1, D2):
        cur = data[day]["cat"]
        labels = [*known, "__new__"]
        ref_counts = np.array([(ref == k).sum() for k in known] + [0])
        cur_counts = np.array([(cur == k).sum() for k in known] + [(~cur.isin(known)).sum()])
        if cur_counts[-1] == 0:  # no unseen category: no __new__ bin
            ref_counts, cur_counts, labels = ref_counts[:-1], cur_counts[:-1], labels[:-1]
        for metric, expected in _binned(ref_counts, cur_counts).items():
            assert _value(out, day, "cat", metric) == pytest.approx(expected, rel=1e-6, abs=1e-9), (
                day,
                metric,
            )
        assert _value(out, day, "cat", "new_category_rate") == pytest.approx((~cur.isin(known)).mean())
        assert _value(out, day, "cat", "null_rate") == 0.0
    # the known shift is visible, the unshifted day is not
    assert _value(out, D2, "cat", "new_category_rate") > 0.1
    assert _value(out, D1, "cat", "new_category_rate") == 0.0
    for column in NUMERIC:
        assert _value(out, D1, column, "psi") < 0.1 < _value(out, D2, column, "psi")
    assert _value(out, D2, "x_hour", "psi") > 0.25


def test_leave_out_measures_each_chunk_against_the_rest_of_the_reference(
    spark: SparkSession, data: dict[str, pd.DataFrame]
) -> None:
    """Calibration: the reference is the ref rows plus D1's; with leave_out, D1 is measured
    against the ref rows alone (on the whole reference's bins), as scipy computes it."""
    d0 = dt.date(2024, 2, 29)
    reference = _to_spark(spark, data["ref"], d0).unionByName(_to_spark(spark, data[D1], D1))
    profile = profile_reference(
        reference, NUMERIC, CATEGORICAL, bins=10, grid_size=200, relative_error=0.0, max_categories=50
    )
    out = drift_metrics(reference, profile, ["date"], "date", leave_out=True).toPandas()
    rest, day = data["ref"], data[D1]
    for column in NUMERIC:
        cuts = np.array(profile.numeric[column].cuts)
        bins = len(cuts) + 1
        ref_counts = np.bincount(np.searchsorted(cuts, rest[column].dropna(), side="left"), minlength=bins)
        cur_counts = np.bincount(np.searchsorted(cuts, day[column].dropna(), side="left"), minlength=bins)
        for metric, expected in _binned(ref_counts, cur_counts).items():
            assert _value(out, D1, column, metric) == pytest.approx(expected, rel=1e-6, abs=1e-9), (
                column,
                metric,
            )
        expected_delta = abs(day[column].isna().mean() - rest[column].isna().mean())
        assert _value(out, D1, column, "null_rate_delta") == pytest.approx(expected_delta, abs=1e-12)
    known = sorted(rest.cat.unique())
    ref_counts = np.array([(rest.cat == k).sum() for k in known])
    cur_counts = np.array([(day.cat == k).sum() for k in known])
    for metric, expected in _binned(ref_counts, cur_counts).items():
        assert _value(out, D1, "cat", metric) == pytest.approx(expected, rel=1e-6, abs=1e-9), metric
    # measured against a reference that includes it, the same day drifts less (by convexity)
    inside = drift_metrics(reference, profile, ["date"], "date").toPandas()
    for column in [*NUMERIC, "cat"]:
        for metric in ("psi", "js_distance", "ks"):
            if column == "cat" and metric == "ks":
                continue
            assert _value(inside, D1, column, metric) <= _value(out, D1, column, metric) + 1e-12


def test_classification_quality_matches_sklearn(spark: SparkSession) -> None:
    rng = np.random.default_rng(3)
    n = 3000
    y = (rng.random(n) < 0.3).astype(float)
    # rounded scores: many ties, which the rank statistic must count one half
    p = np.round(np.clip(0.3 + 0.25 * (y - 0.3) + rng.normal(0, 0.2, n), 0.001, 0.999), 2)
    day = np.where(rng.random(n) < 0.5, D1, D2)
    group = rng.choice(["AA", "UA", "DL"], n)
    pdf = pd.DataFrame(
        {"date": day, "carrier": group, "label": y, "probability": p, "prediction": (p >= 0.4) * 1.0}
    )
    df = spark.createDataFrame(
        pdf, "date date, carrier string, label double, probability double, prediction double"
    )
    out = realised_quality(df, "binary", "label", ["date"], ["carrier"]).toPandas()
    for (d, sl), part in [((d, "all"), pdf[pdf.date == d]) for d in (D1, D2)] + [
        ((D2, f"carrier={c}"), pdf[(pdf.date == D2) & (pdf.carrier == c)]) for c in ("AA", "UA", "DL")
    ]:
        got = out[(out.date == d) & (out.slice == sl)].set_index("metric").value
        yt, ps, yh = part.label, part.probability, part.prediction
        assert got["areaUnderROC"] == pytest.approx(skm.roc_auc_score(yt, ps), abs=1e-12)
        assert got["log_loss"] == pytest.approx(skm.log_loss(yt, ps), rel=1e-9)
        assert got["brier"] == pytest.approx(skm.brier_score_loss(yt, ps), rel=1e-9)
        assert got["accuracy"] == pytest.approx(skm.accuracy_score(yt, yh))
        assert got["precision"] == pytest.approx(skm.precision_score(yt, yh))
        assert got["recall"] == pytest.approx(skm.recall_score(yt, yh))
        assert got["f1"] == pytest.approx(skm.f1_score(yt, yh))
        assert got["rows"] == len(part)
        assert got["positive_rate"] == pytest.approx(yt.mean())


def test_regression_quality_matches_sklearn(spark: SparkSession) -> None:
    rng = np.random.default_rng(5)
    y = rng.normal(10, 3, 500)
    yhat = y + rng.normal(0.5, 1.0, 500)
    pdf = pd.DataFrame({"date": D1, "label": y, "prediction": yhat})
    out = (
        realised_quality(spark.createDataFrame(pdf), "regression", "label", ["date"])
        .toPandas()
        .set_index("metric")
        .value
    )
    assert out["rmse"] == pytest.approx(math.sqrt(skm.mean_squared_error(y, yhat)), rel=1e-9)
    assert out["mae"] == pytest.approx(skm.mean_absolute_error(y, yhat), rel=1e-9)
    assert out["r2"] == pytest.approx(skm.r2_score(y, yhat), rel=1e-9)
    assert out["bias"] == pytest.approx((yhat - y).mean(), rel=1e-9)


def test_status_from_configured_thresholds(spark: SparkSession) -> None:
    schema = T.StructType([T.StructField("metric", T.StringType()), T.StructField("value", T.DoubleType())])
    df = spark.createDataFrame(
        [
            ("psi", 0.05),
            ("psi", 0.15),
            ("psi", 0.3),
            ("areaUnderROC", 0.7),
            ("areaUnderROC", 0.62),
            ("areaUnderROC", 0.5),
            ("chi2", 1e6),
        ],
        schema,
    )
    thresholds = MonitoringConfig.model_validate(
        {
            "thresholds": {
                "psi": {"warn": 0.1, "alert": 0.25},
                "areaUnderROC": MetricThreshold(warn=0.65, alert=0.6, direction="below"),
            }
        }
    ).thresholds
    got = df.transform(with_status(thresholds))
    expected = spark.createDataFrame(
        [
            ("psi", 0.05, 0.1, 0.25, "ok", "fixed"),
            ("psi", 0.15, 0.1, 0.25, "warn", "fixed"),
            ("psi", 0.3, 0.1, 0.25, "alert", "fixed"),
            ("areaUnderROC", 0.7, 0.65, 0.6, "ok", "fixed"),
            ("areaUnderROC", 0.62, 0.65, 0.6, "warn", "fixed"),
            ("areaUnderROC", 0.5, 0.65, 0.6, "alert", "fixed"),
            ("chi2", 1e6, None, None, "ok", None),
        ],
        "metric string, value double, warn_threshold double, alert_threshold double, status string, "
        "threshold_source string",
    )
    assertDataFrameEqual(got.drop("relative"), expected)  # relative needs calibrated limits


def test_column_thresholds_replace_the_metric_default_for_that_column_only(spark: SparkSession) -> None:
    mon = MonitoringConfig.model_validate(
        {
            "thresholds": {"psi": {"warn": 0.1, "alert": 0.25}},
            "column_thresholds": {
                "wx_temp": {"psi": {"warn": 2.0, "alert": 5.0}},
                "noisy": {"psi": {"warn": None, "alert": None}},
                "score": {"mean": {"warn": 0.4, "alert": 0.3, "direction": "below"}},
            },
        }
    )
    df = spark.createDataFrame(
        [
            ("wx_temp", "psi", 1.5),
            ("wx_temp", "psi", 6.0),
            ("dep_hour", "psi", 1.5),
            ("noisy", "psi", 9.0),
            ("score", "mean", 0.35),
            ("score", "psi", 0.3),
            (None, "areaUnderROC", 0.5),
        ],
        "column string, metric string, value double",
    )
    got = df.transform(with_status(mon.thresholds, mon.column_thresholds))
    expected = spark.createDataFrame(
        [
            ("wx_temp", "psi", 1.5, 2.0, 5.0, "ok", "column"),
            ("wx_temp", "psi", 6.0, 2.0, 5.0, "alert", "column"),
            ("dep_hour", "psi", 1.5, 0.1, 0.25, "alert", "fixed"),
            ("noisy", "psi", 9.0, None, None, "ok", "column"),
            ("score", "mean", 0.35, 0.4, 0.3, "warn", "column"),
            ("score", "psi", 0.3, 0.1, 0.25, "alert", "fixed"),
            (None, "areaUnderROC", 0.5, 0.65, 0.6, "alert", "fixed"),
        ],
        "column string, metric string, value double, warn_threshold double, alert_threshold double, "
        "status string, threshold_source string",
    )
    assertDataFrameEqual(got.drop("relative"), expected)


# --------------------------------------------------------------------------- canary and A/B


def test_two_sample_ks_is_exact(spark: SparkSession) -> None:
    rng = np.random.default_rng(9)
    a = np.round(rng.normal(0, 1, 700), 1)  # ties within and across samples
    b = np.round(rng.normal(0.3, 1.2, 500), 1)
    rows = [(D1, float(v), 0) for v in a] + [(D1, float(v), 1) for v in b]
    df = spark.createDataFrame(rows, "date date, v double, s int")
    got = two_sample_ks(df, ["date"], "v", "s").first()
    assert got is not None
    assert got["ks"] == pytest.approx(stats.ks_2samp(a, b).statistic, abs=1e-12)


def test_agreement_between_champion_and_challenger(spark: SparkSession) -> None:
    schema = "id string, date date, prediction double, probability double"
    champion = spark.createDataFrame(
        [("a", D1, 1.0, 0.9), ("b", D1, 0.0, 0.2), ("c", D1, 1.0, 0.6), ("d", D1, 0.0, 0.1)], schema
    )
    challenger = spark.createDataFrame(
        [("a", D1, 1.0, 0.8), ("b", D1, 1.0, 0.7), ("c", D1, 1.0, 0.6), ("d", D1, 0.0, 0.3)], schema
    )
    got = agreement_metrics(champion, challenger, "id", ["date"], classification=True)
    a, b = np.array([0.9, 0.2, 0.6, 0.1]), np.array([0.8, 0.7, 0.6, 0.3])
    expected = spark.createDataFrame(
        [
            (D1, "probability", "rows", 4.0),
            (D1, "probability", "mean_abs_diff", float(np.abs(b - a).mean())),
            (D1, "probability", "mean_shift", float((b - a).mean())),
            (D1, "probability", "correlation", float(np.corrcoef(a, b)[0, 1])),
            (D1, "probability", "ks", float(stats.ks_2samp(a, b).statistic)),
            (D1, "probability", "agreement", 0.75),
            (D1, "probability", "predicted_rate_diff", 0.25),
        ],
        "date date, column string, metric string, value double",
    )
    assertDataFrameEqual(got, expected, rtol=1e-9)


def test_ab_arms_are_stable_and_sized(spark: SparkSession) -> None:
    ids = spark.range(20_000).select(F.concat(F.lit("flight-"), F.col("id").cast("string")).alias("id"))
    arms = ids.select("id", assign_arm("id", 0.3, "s1").alias("a"), assign_arm("id", 0.3, "s2").alias("b"))
    stats_row = arms.select(
        F.avg((F.col("a") == "challenger").cast("double")).alias("share"),
        F.avg((F.col("a") != F.col("b")).cast("double")).alias("moved"),
    ).first()
    assert stats_row is not None
    assert stats_row["share"] == pytest.approx(0.3, abs=0.015)
    assert stats_row["moved"] > 0.3  # a new salt reshuffles the arms
    again = ids.select("id", assign_arm("id", 0.3, "s1").alias("a"))
    assert arms.select("id", "a").exceptAll(again).count() == 0  # same salt, same arms


def test_ab_routed_rows_route_each_entity_to_its_arm(spark: SparkSession) -> None:
    from mlops_spark.config import ModelConfig
    from mlops_spark.outputs import with_mllib_outputs
    from mlops_spark.registry import ModelRef
    from mlops_spark.scoring import Scorer
    from mlops_spark.training import build_pipeline

    rng = np.random.default_rng(4)
    x = rng.normal(0, 1, 400)
    y = (x + rng.normal(0, 1, 400) > 0).astype(float)
    data = spark.createDataFrame(
        [(f"e{i}", D1, float(x[i]), "A" if i % 2 else "B", float(y[i])) for i in range(400)],
        "id string, date date, x double, c string, label double",
    )
    cfg = ModelConfig(numeric=["x"], categorical=["c"], params={"maxIter": 5})
    inputs = (("x", T.DoubleType()), ("c", T.StringType()))

    def scorer(version: int, params: dict[str, float]) -> Scorer:
        fitted = build_pipeline(cfg, "label", params).fit(data)
        return Scorer(
            ModelRef("m", version, f"run{version}"),
            "transform",
            "test",
            "binary",
            inputs,
            lambda keep: with_mllib_outputs(fitted, keep, "binary"),
        )

    arms = (scorer(1, {}), scorer(2, {"regParam": 1.0}))
    rows = routed_rows(data.drop("label"), ("id", "date"), "id", arms, 0.5, "salt", "job")
    inputs_df = data.drop("label")
    routed = inputs_df.select("id", assign_arm("id", 0.5, "salt").alias("expected"))
    joined = rows.join(routed, "id")
    assert rows.count() == 400 == rows.select("id").distinct().count()
    assert joined.where(F.col("arm") != F.col("expected")).count() == 0
    versions = {
        (r["arm"], r["model_version"]) for r in rows.select("arm", "model_version").distinct().collect()
    }
    assert versions == {("champion", 1), ("challenger", 2)}


def test_ab_comparison_matches_scipy_and_sklearn(spark: SparkSession) -> None:
    rng = np.random.default_rng(12)
    n = 4000
    arm = np.where(rng.random(n) < 0.4, "challenger", "champion")
    y = (rng.random(n) < 0.3).astype(float)
    signal = np.where(arm == "challenger", 1.2, 0.6)
    p = 1 / (1 + np.exp(-(signal * (y - 0.3) * 3 + rng.normal(0, 1, n))))
    yhat = (p >= 0.5).astype(float)
    pdf = pd.DataFrame({"date": D1, "arm": arm, "label": y, "probability": p, "prediction": yhat})
    df = spark.createDataFrame(
        pdf, "date date, arm string, label double, probability double, prediction double"
    )
    out = ab_comparison(df, "label", ["date"], 0.95).toPandas()
    diff = out[out.slice == "challenger-champion"].set_index("metric").value
    per = {a: pdf[pdf.arm == a] for a in ("champion", "challenger")}
    auc = {a: skm.roc_auc_score(d.label, d.probability) for a, d in per.items()}
    acc = {a: skm.accuracy_score(d.label, d.prediction) for a, d in per.items()}
    assert diff["auc_diff"] == pytest.approx(auc["challenger"] - auc["champion"], abs=1e-12)
    assert diff["accuracy_diff"] == pytest.approx(acc["challenger"] - acc["champion"], abs=1e-12)
    correct = [[(d.label == d.prediction).sum(), (d.label != d.prediction).sum()] for d in per.values()]
    chi = stats.chi2_contingency(np.array(correct), correction=False)
    assert diff["accuracy_diff_pvalue"] == pytest.approx(chi.pvalue, rel=1e-6)

    def hanley_mcneil(a: float, d: pd.DataFrame) -> float:
        pos, neg = d.label.sum(), (1 - d.label).sum()
        q1, q2 = a / (2 - a), 2 * a * a / (1 + a)
        return (a * (1 - a) + (pos - 1) * (q1 - a * a) + (neg - 1) * (q2 - a * a)) / (pos * neg)

    se = math.sqrt(sum(hanley_mcneil(auc[a], per[a]) for a in per))
    z = stats.norm.ppf(0.975)
    assert diff["auc_diff_low"] == pytest.approx(diff["auc_diff"] - z * se, rel=1e-9)
    assert diff["auc_diff_high"] == pytest.approx(diff["auc_diff"] + z * se, rel=1e-9)
    assert diff["auc_diff_pvalue"] == pytest.approx(2 * stats.norm.sf(abs(diff["auc_diff"]) / se), rel=1e-6)
    assert diff["auc_diff_low"] > 0  # the stronger arm wins significantly
    arms = out[out.metric == "areaUnderROC"].set_index("slice").value
    assert arms["arm=challenger"] == pytest.approx(auc["challenger"], abs=1e-12)


def test_empty_groups_give_no_value_instead_of_an_error(
    spark: SparkSession, computed: tuple[ReferenceProfile, pd.DataFrame]
) -> None:
    """Spark 4 runs in ANSI mode: a day where a column is all null, or a slice with one
    class, must yield missing metrics, not a division-by-zero failure."""
    profile, _ = computed
    current = spark.createDataFrame(
        [(D1, None, 3.0, None, "A"), (D1, None, 4.0, None, None)],
        "date date, x_cont double, x_hour double, x_sparse double, cat string",
    )
    out = drift_metrics(current, profile, ["date"]).toPandas()
    assert _value(out, D1, "x_cont", "null_rate") == 1.0
    assert out[(out.column == "x_cont") & (out.metric == "psi")].empty
    assert _value(out, D1, "x_hour", "rows") == 2
    labels = spark.createDataFrame(
        [(D1, 1.0, 0.7, 1.0), (D1, 1.0, 0.4, 0.0)],
        "date date, label double, probability double, prediction double",
    )
    quality = realised_quality(labels, "binary", "label", ["date"]).toPandas().set_index("metric").value
    assert "areaUnderROC" not in quality and quality["recall"] == 0.5 and quality["rows"] == 2
