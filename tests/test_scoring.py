"""Score job: incremental and pruned, exactly once under kills and concurrency, every path.

A small feature table (12 days of synthetic rows) and a model trained on it by the train
job live in a module-scoped temp lake and MLflow store; each test copies what it changes.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T
from pyspark.testing import assertDataFrameEqual

from mlops_spark import cli, lake, registry
from mlops_spark.catalog import Catalog, Table
from mlops_spark.config import AppConfig, validate_config
from mlops_spark.jobs.args import JobArgs
from mlops_spark.jobs.score import score
from mlops_spark.jobs.train import train
from mlops_spark.scoring import ModelInputMissingError

from .conftest import ROOT, child_environ, tbl

MODEL = "toy_delay"
DAY0 = dt.date(2024, 3, 1)
DAYS = [DAY0 + dt.timedelta(days=i) for i in range(12)]
ROWS_PER_DAY = 150
FEATURE_SCHEMA = T.StructType(
    [
        T.StructField("event_id", T.StringType()),
        T.StructField("date", T.DateType()),
        T.StructField("carrier", T.StringType()),
        T.StructField("distance", T.DoubleType()),
        T.StructField("dep_hour", T.DoubleType()),
        T.StructField("delayed", T.DoubleType()),
    ]
)


def feature_rows(days: list[dt.date], seed: int = 7) -> pd.DataFrame:
    """Seeded rows: delay odds rise with the hour and fall with distance; some nulls."""
    rng = np.random.default_rng(seed)
    parts = []
    for day in days:
        n = ROWS_PER_DAY
        hour = rng.integers(5, 23, n).astype(float)
        distance = rng.gamma(3.0, 300.0, n)
        distance[rng.random(n) < 0.05] = np.nan
        carrier = rng.choice(["AA", "B6", "DL", "UA", "WN"], n, p=[0.3, 0.25, 0.2, 0.15, 0.1])
        logit = -2.0 + 0.15 * (hour - 12) - 0.0004 * np.nan_to_num(distance, nan=900.0)
        logit += np.where(carrier == "B6", 0.6, 0.0)
        label = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(float)
        parts.append(
            pd.DataFrame(
                {
                    "event_id": [f"{day.isoformat()}-{i:04d}" for i in range(n)],
                    "date": day,
                    "carrier": carrier,
                    "distance": distance,
                    "dep_hour": hour,
                    "delayed": label,
                }
            )
        )
    return pd.concat(parts, ignore_index=True)


def write_features(spark: SparkSession, config: AppConfig, days: list[dt.date]) -> None:
    pdf = feature_rows(days, seed=days[0].toordinal())
    df = spark.createDataFrame(pdf.astype(object).where(pdf.notna(), None), schema=FEATURE_SCHEMA)
    lake.write_partitions(df, Catalog(config).features(), days)


def config_dict(lake_root: str, store: Path, **model: Any) -> dict[str, Any]:
    return {
        "project": "scoring-tests",
        "lake": {"root": lake_root},
        "spark": {"master": "local[2]", "shuffle_partitions": 2, "driver_memory": "1g"},
        "mlflow": {
            "tracking_uri": f"sqlite:///{store}/mlflow.db",
            "artifact_location": str(store / "artifacts"),
            "experiment": "scoring-tests",
            "model_name": MODEL,
        },
        "features": {
            "name": "toy",
            "base_table": "events",
            "entity_id": {"name": "event_id", "expr": "event_id"},
            "date_column": "date",
            "event_time": "date",
            "label": {"name": "delayed", "expr": "delayed"},
        },
        "model": {
            "estimator": "logistic_regression",
            "params": {"maxIter": 15, "regParam": 0.01},
            "categorical": ["carrier"],
            "numeric": ["distance", "dep_hour"],
            "scale": True,
            **model,
        },
        "split": {
            "train": {"from": DAYS[0].isoformat(), "to": DAYS[5].isoformat()},
            "test": {"from": DAYS[6].isoformat(), "to": DAYS[8].isoformat()},
        },
    }


@pytest.fixture(scope="module")
def trained(spark: SparkSession, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A lake with 11 days of features and a model registered as @champion."""
    base = tmp_path_factory.mktemp("scoring")
    store = base / "mlflow"
    store.mkdir()
    raw = config_dict(str(base / "lake"), store)
    config = validate_config(raw)
    write_features(spark, config, DAYS[:11])
    trained_ctx = train(config, JobArgs(), spark)
    client = registry.configure(config.mlflow)
    ref = registry.set_alias(client, trained_ctx.result.model, "champion")
    yield {"base": base, "raw": raw, "store": store, "ref": ref}
    import mlflow

    mlflow.set_tracking_uri(None)  # type: ignore[arg-type]


def fresh_lake(
    spark: SparkSession, trained: dict[str, Any], tmp_path: Path, days: list[dt.date]
) -> AppConfig:
    """A new lake holding ``days`` of features, scored by the module's registered model."""
    raw = json.loads(json.dumps(trained["raw"]))
    raw["lake"]["root"] = str(tmp_path / "lake")
    config = validate_config(raw)
    write_features(spark, config, days)
    return config


def predictions(spark: SparkSession, config: AppConfig) -> DataFrame:
    return spark.read.format("delta").load(Catalog(config).predictions().path)


def features(spark: SparkSession, config: AppConfig) -> DataFrame:
    return spark.read.format("delta").load(Catalog(config).features().path)


def assert_one_prediction_per_row(spark: SparkSession, config: AppConfig) -> None:
    preds = predictions(spark, config)
    feats = features(spark, config)
    keys = ["event_id", "date"]
    assertDataFrameEqual(preds.select(*keys), feats.select(*keys))


# --------------------------------------------------------------------------- scan metrics


def parquet_scans(spark: SparkSession, since: int, path: str) -> list[dict[str, str]]:
    """Metrics of every Parquet scan of ``path`` in SQL executions with id >= ``since``
    (from Spark's SQL status store, which keeps each execution's plan and metric values)."""
    spark.sparkContext._jsc.sc().listenerBus().waitUntilEmpty()  # type: ignore[union-attr]
    store = spark._jsparkSession.sharedState().statusStore()  # type: ignore[attr-defined]
    found: list[dict[str, str]] = []
    executions = store.executionsList().iterator()
    while executions.hasNext():
        execution = executions.next()
        eid = execution.executionId()
        if eid < since:
            continue
        values = store.executionMetrics(eid)
        nodes = store.planGraph(eid).allNodes().iterator()
        while nodes.hasNext():
            node = nodes.next()
            if not node.name().startswith("Scan parquet") or f"[file:{path}]" not in node.desc():
                continue
            metrics: dict[str, str] = {}
            it = node.metrics().iterator()
            while it.hasNext():
                metric = it.next()
                value = values.get(metric.accumulatorId())
                if value.isDefined():
                    metrics[metric.name()] = value.get()
            found.append(metrics)
    return found


def execution_count(spark: SparkSession) -> int:
    return int(spark._jsparkSession.sharedState().statusStore().executionsCount())  # type: ignore[attr-defined]


# --------------------------------------------------------------------------- tests


def test_scores_only_the_new_day_and_reads_only_its_files(
    spark: SparkSession, trained: dict[str, Any], tmp_path: Path
) -> None:
    config = fresh_lake(spark, trained, tmp_path, DAYS[:11])
    first = score(config, JobArgs(), spark)
    assert first.result.scored_partitions == 11
    assert first.result.method == "compiled"
    assert_one_prediction_per_row(spark, config)

    write_features(spark, config, DAYS[11:])
    feat_path = tbl(config, "features.toy").path
    pred_path = tbl(config, f"predictions.{MODEL}").path
    new_day_files = len(features(spark, config).where(F.col("date") == DAYS[11]).inputFiles())
    since = execution_count(spark)
    spark.conf.set("spark.sql.maxMetadataStringLength", "4096")  # full paths in plan descriptions
    try:
        second = score(config, JobArgs(), spark)
    finally:
        spark.conf.unset("spark.sql.maxMetadataStringLength")
    assert second.result.scored_partitions == 1

    feature_scans = parquet_scans(spark, since, feat_path)
    assert feature_scans, "the scoring query did not scan the features table"
    assert {m["number of partitions read"] for m in feature_scans} == {"1"}
    assert sum(int(m["number of files read"]) for m in feature_scans) == new_day_files
    # what is already scored comes from Delta's log: no predictions data file is opened
    assert [
        m for m in parquet_scans(spark, since, pred_path) if m.get("number of files read", "0") != "0"
    ] == []

    commit = lake.history(spark, Table.at(pred_path), 1).first()
    assert commit is not None and commit["operation"] == "WRITE"
    metrics = commit["operationMetrics"]
    assert int(metrics["numOutputRows"]) == ROWS_PER_DAY
    assert int(metrics["numRemovedFiles"]) == 0
    assert commit["operationParameters"]["predicate"] == json.dumps([f"(date = DATE '{DAYS[11]}')"]) or (
        DAYS[11].isoformat() in commit["operationParameters"]["predicate"]
    )
    added = spark.read.json(f"{pred_path}/_delta_log/{commit['version']:020d}.json").where("add IS NOT NULL")
    assert {r[0] for r in added.select("add.partitionValues.date").collect()} == {DAYS[11].isoformat()}
    assert_one_prediction_per_row(spark, config)

    third = score(config, JobArgs(), spark)
    assert third.result.scored_partitions == 0
    assert "nothing new to score" in third.lines[-1]


def test_every_path_writes_the_same_rows_with_lineage(
    spark: SparkSession, trained: dict[str, Any], tmp_path: Path
) -> None:
    config = fresh_lake(spark, trained, tmp_path, DAYS[:3])
    ref = trained["ref"]
    compiled_run = score(config, JobArgs(), spark)
    assert compiled_run.result.method == "compiled"
    compiled = predictions(spark, config).cache()

    rng = JobArgs(start=DAYS[0], end=DAYS[2])
    transform_run = score(config, rng, spark, method="transform")
    assert transform_run.result.method == "transform"
    transformed = predictions(spark, config)
    # a forced range replaces its partitions: still one row per input row
    assert_one_prediction_per_row(spark, config)
    values = ["event_id", "date", "prediction", "probability"]
    assertDataFrameEqual(compiled.select(*values), transformed.select(*values), rtol=0.0, atol=1e-12)
    lineage = transformed.select("model_name", "model_version", "model_run_id", "job_run_id").distinct()
    expected = spark.createDataFrame(
        [(MODEL, ref.version, ref.run_id, transform_run.run_id)],
        "model_name string, model_version int, model_run_id string, job_run_id string",
    )
    assertDataFrameEqual(lineage, expected)
    assert transformed.where(~F.col("probability").between(0.0, 1.0)).count() == 0
    assert transformed.where(F.col("scored_at").isNull()).count() == 0
    # the model's own decisions: positive exactly when its probability is above the threshold
    assert transformed.where((F.col("probability") > 0.5) != (F.col("prediction") == 1.0)).count() == 0


def test_ab_share_routes_stable_entities_to_the_challenger_and_records_the_arm(
    spark: SparkSession, trained: dict[str, Any], tmp_path: Path
) -> None:
    config = fresh_lake(spark, trained, tmp_path, DAYS[:4])
    champion = trained["ref"]
    client = registry.configure(config.mlflow)
    raw = json.loads(json.dumps(trained["raw"]))
    raw["lake"]["root"] = config.lake.root
    other = json.loads(json.dumps(trained["raw"]))  # trained on the module's lake, as the champion was
    other["model"]["params"]["regParam"] = 0.3  # another model: its scores differ from the champion's
    version = train(validate_config(other), JobArgs(), spark).result.model.version
    challenger = registry.resolve(client, MODEL, version=version)
    assert (
        registry.resolve(client, MODEL, alias="challenger").version == challenger.version != champion.version
    )
    try:
        ab = validate_config({**raw, "monitoring": {"ab_share": 0.3, "ab_salt": "test"}})
        run = score(ab, JobArgs(), spark)
        assert run.result.ab_challenger_version == challenger.version
        assert_one_prediction_per_row(spark, ab)
        routed = predictions(spark, ab).cache()
        # each arm's rows carry its model's version, and the share is about what was asked for
        arms = {
            (r["arm"], r["model_version"]): r["count"]
            for r in routed.groupBy("arm", "model_version").count().collect()
        }
        assert set(arms) == {("champion", champion.version), ("challenger", challenger.version)}
        share = arms[("challenger", challenger.version)] / sum(arms.values())
        assert 0.25 < share < 0.35, share
        # every row's scores are exactly what its arm's model alone gives for it
        values = ["event_id", "date", "prediction", "probability"]
        for ref, arm in ((champion, "champion"), (challenger, "challenger")):
            alone = validate_config({**raw, "scoring": {"table": f"alone_v{ref.version}"}})
            score(alone, JobArgs(model_version=ref.version), spark)
            expected = predictions(spark, alone).join(
                routed.where(F.col("arm") == arm).select("event_id"), "event_id"
            )
            assertDataFrameEqual(routed.where(F.col("arm") == arm).select(*values), expected.select(*values))
        # arms are stable: rescoring a day puts every entity in the same arm again
        score(ab, JobArgs(date=DAYS[1]), spark)
        again = predictions(spark, ab).where(F.col("date") == DAYS[1]).select("event_id", "arm")
        assertDataFrameEqual(again, routed.where(F.col("date") == DAYS[1]).select("event_id", "arm"))
        # and the next incremental run finds nothing new
        assert score(ab, JobArgs(), spark).result.scored_partitions == 0
    finally:
        registry.set_alias(client, champion, "challenger")


def register_sklearn_model(config: AppConfig, spark: SparkSession) -> tuple[str, Any, pd.DataFrame]:
    """Fit a scikit-learn pipeline on the feature table and register it as <model>_sk@champion."""
    import mlflow
    import mlflow.sklearn
    from mlflow.models import infer_signature
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    frame = features(spark, config).select("event_id", "date", "distance", "dep_hour", "delayed").toPandas()
    x = frame[["distance", "dep_hour"]].astype("float64")
    model = make_pipeline(SimpleImputer(strategy="median"), StandardScaler(), LogisticRegression())
    model.fit(x, frame["delayed"].astype(int))
    name = f"{MODEL}_sk"
    client = registry.configure(config.mlflow)
    experiment = registry.ensure_experiment(config.mlflow)
    with mlflow.start_run(experiment_id=experiment):
        info = mlflow.sklearn.log_model(
            model,
            name="model",
            signature=infer_signature(x),
            registered_model_name=name,
            serialization_format=mlflow.sklearn.SERIALIZATION_FORMAT_CLOUDPICKLE,
        )
    version = int(info.registered_model_version)
    client.set_registered_model_alias(name, "champion", str(version))
    return name, model, frame


def test_scikit_learn_model_compiles_and_matches_the_arrow_path(
    spark: SparkSession, trained: dict[str, Any], tmp_path: Path
) -> None:
    config = fresh_lake(spark, trained, tmp_path, DAYS[:2])
    name, model, frame = register_sklearn_model(config, spark)
    raw = json.loads(json.dumps(trained["raw"]))
    raw["lake"]["root"] = config.lake.root
    raw["mlflow"]["model_name"] = name
    sk_config = validate_config(raw)
    x = frame[["distance", "dep_hour"]].astype("float64")
    expected = pd.DataFrame(
        {
            "event_id": frame["event_id"],
            "prediction": model.predict(x).astype("float64"),
            "probability": model.predict_proba(x)[:, 1],
        }
    )
    schema = "event_id string, prediction double, probability double"
    expected_df = spark.createDataFrame(expected, schema)

    compiled_run = score(sk_config, JobArgs(), spark)
    assert compiled_run.result.method == "compiled"
    got = predictions(spark, sk_config).select("event_id", "prediction", "probability")
    assertDataFrameEqual(got, expected_df, rtol=0.0, atol=1e-12)

    arrow_run = score(sk_config, JobArgs(start=DAYS[0], end=DAYS[1]), spark, method="arrow")
    assert arrow_run.result.method == "arrow"
    got = predictions(spark, sk_config).select("event_id", "prediction", "probability")
    assertDataFrameEqual(got, expected_df, rtol=0.0, atol=1e-12)
    assert_one_prediction_per_row(spark, sk_config)


def test_generic_pyfunc_model_scores_over_arrow(
    spark: SparkSession, trained: dict[str, Any], tmp_path: Path
) -> None:
    import mlflow
    import mlflow.pyfunc
    from mlflow.models import infer_signature

    class HourRule(mlflow.pyfunc.PythonModel):  # defined here so it is pickled by value
        def predict(self, context: Any, model_input: pd.DataFrame, params: Any = None) -> pd.Series:
            return (model_input["dep_hour"] >= 17).astype("float64")

    config = fresh_lake(spark, trained, tmp_path, DAYS[:1])
    name = f"{MODEL}_rule"
    raw = json.loads(json.dumps(trained["raw"]))
    raw["lake"]["root"] = config.lake.root
    raw["mlflow"]["model_name"] = name
    rule_config = validate_config(raw)
    client = registry.configure(rule_config.mlflow)
    example = pd.DataFrame({"dep_hour": [8.0, 18.0]})
    with mlflow.start_run(experiment_id=registry.ensure_experiment(rule_config.mlflow)):
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=HourRule(),
            signature=infer_signature(example, pd.Series([0.0, 1.0])),
            registered_model_name=name,
        )
    client.set_registered_model_alias(name, "champion", str(info.registered_model_version))

    run = score(rule_config, JobArgs(), spark)
    assert run.result.method == "arrow"
    got = predictions(spark, rule_config).select("event_id", "prediction", "probability")
    expected = features(spark, rule_config).select(
        "event_id",
        F.when(F.col("dep_hour") >= 17, 1.0).otherwise(0.0).alias("prediction"),
        F.lit(None).cast("double").alias("probability"),
    )
    assertDataFrameEqual(got, expected)


# --------------------------------------------------------------------------- errors


def conf_file(raw: dict[str, Any], tmp_path: Path, lake_root: str | None = None) -> str:
    data = json.loads(json.dumps(raw))
    if lake_root is not None:
        data["lake"]["root"] = lake_root
    # the jobs these files drive are short score runs in their own JVM: C1-only JIT starts
    # them sooner (docs/performance.md, "JVM options")
    data.setdefault("spark", {})["jit"] = "quick"
    path = tmp_path / "conf" / "toy.yml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data))
    return str(path)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--alias", "nosuch"], "has no alias @nosuch (known aliases:"),
        (["--model-version", "99"], "has no version 99"),
        (["--set", "mlflow.tracking_uri=http://127.0.0.1:9"], "is unreachable"),
        (["--date", "2030-01-01"], "has no partitions in 2030-01-01..2030-01-01: nothing to process"),
    ],
)
def test_bad_model_or_range_fails_with_one_line_and_writes_nothing(
    spark: SparkSession,
    trained: dict[str, Any],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    extra: list[str],
    message: str,
) -> None:
    # mlflow.set_tracking_uri exports MLFLOW_TRACKING_URI, which would outrank the config
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    config = fresh_lake(spark, trained, tmp_path, DAYS[:1])
    conf = conf_file(trained["raw"], tmp_path, config.lake.root)
    code = cli.main(["score", "--conf", conf, *extra])
    err = capsys.readouterr().err
    assert code == 1, err
    lines = [ln for ln in err.splitlines() if ln.startswith("mlops-spark score: failed:")]
    assert len(lines) == 1 and message in lines[0], err
    assert "Traceback" not in err
    assert not lake.exists(spark, tbl(config, f"predictions.{MODEL}"))


def test_feature_table_without_a_model_input_fails_clearly(
    spark: SparkSession, trained: dict[str, Any], tmp_path: Path
) -> None:
    config = fresh_lake(spark, trained, tmp_path, DAYS[:1])
    path = tbl(config, "features.toy").path
    features(spark, config).drop("distance").write.format("delta").mode("overwrite").option(
        "overwriteSchema", "true"
    ).save(path)
    with pytest.raises(
        ModelInputMissingError, match="no column 'distance', which toy_delay v1@champion needs"
    ):
        score(config, JobArgs(), spark)
    assert not lake.exists(spark, tbl(config, f"predictions.{MODEL}"))


# --------------------------------------------------------------------------- processes


def cli_process(conf: str, *args: str) -> subprocess.Popen[str]:
    env = {**child_environ(), "MLOPS_SPARK_LOG_LEVEL": "ERROR", "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, "-m", "mlops_spark.cli", "score", "--conf", conf, *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own process group: the JVM and Python workers die with it
    )


class Output:
    """Collects a process's output lines as they come (so a test can wait for a phase)."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.lines: list[str] = []
        self.thread = threading.Thread(target=self._read, args=(proc,), daemon=True)
        self.thread.start()

    def _read(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            self.lines.append(line)

    def wait_for(self, marker: str, proc: subprocess.Popen[str], timeout: float = 300) -> bool:
        end = time.time() + timeout
        while time.time() < end:
            if any(marker in ln for ln in self.lines):
                return True
            if proc.poll() is not None:
                return any(marker in ln for ln in self.lines)
            time.sleep(0.05)
        return False

    @property
    def text(self) -> str:
        return "".join(self.lines)


def kill_group(proc: subprocess.Popen[str]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(timeout=60)


def assert_committed_partitions_are_whole(spark: SparkSession, config: AppConfig) -> None:
    """After a kill: whatever is in the table is whole days, each row once."""
    path = tbl(config, f"predictions.{MODEL}").path
    if not lake.exists(spark, Table.at(path)):
        return
    preds = spark.read.format("delta").load(path)
    per_day = preds.groupBy("date").agg(F.count("*").alias("n"), F.countDistinct("event_id").alias("ids"))
    bad = per_day.where((F.col("n") != ROWS_PER_DAY) | (F.col("ids") != ROWS_PER_DAY))
    assert bad.count() == 0, bad.collect()


@pytest.mark.e2e
@pytest.mark.timeout(2400)
def test_sigkill_at_any_point_then_rerun_scores_each_row_exactly_once(
    spark: SparkSession, trained: dict[str, Any], tmp_path: Path
) -> None:
    days = [DAY0 + dt.timedelta(days=i) for i in range(40)]  # two commits of 3,000 rows (20 days)
    config = fresh_lake(spark, trained, tmp_path, days)
    conf = conf_file(
        {**trained["raw"], "scoring": {"rows_per_commit": 20 * ROWS_PER_DAY}}, tmp_path, config.lake.root
    )
    rnd = random.Random(20240301)
    # (phase to wait for, then a random delay): while Spark starts, while the scoring
    # query and its two commits run, and right after the last commit (audit row pending)
    kill_points = [
        (None, rnd.uniform(1.0, 4.0)),
        ("[score] scoring path", rnd.uniform(0.0, 3.0)),
        ("[score] scored", 0.0),
    ]
    for marker, delay in kill_points:
        proc = cli_process(conf)
        out = Output(proc)
        if marker is not None and not out.wait_for(marker, proc, timeout=900):
            kill_group(proc)
            pytest.fail(f"never reached {marker!r}:\n{out.text[-3000:]}")
        time.sleep(delay)
        kill_group(proc)
        assert_committed_partitions_are_whole(spark, config)

    final = cli_process(conf)
    out = Output(final)
    assert final.wait(timeout=900) == 0, out.text[-3000:]
    out.thread.join(timeout=10)
    assert_one_prediction_per_row(spark, config)
    again = score(config, JobArgs(), spark)
    assert again.result.scored_partitions == 0
    assert_one_prediction_per_row(spark, config)


@pytest.mark.e2e
@pytest.mark.timeout(2400)
def test_concurrent_runs_land_once(spark: SparkSession, trained: dict[str, Any], tmp_path: Path) -> None:
    config = fresh_lake(spark, trained, tmp_path, DAYS)
    conf = conf_file(trained["raw"], tmp_path, config.lake.root)
    # different partitions, both creating the predictions table and the jobs audit table: both land
    a = cli_process(conf, "--from", DAYS[0].isoformat(), "--to", DAYS[5].isoformat())
    b = cli_process(conf, "--from", DAYS[6].isoformat(), "--to", DAYS[11].isoformat())
    outs = [Output(a), Output(b)]
    codes = [a.wait(timeout=600), b.wait(timeout=600)]
    assert codes == [0, 0], "\n".join(o.text[-2000:] for o in outs)
    assert_one_prediction_per_row(spark, config)
    path = tbl(config, f"predictions.{MODEL}").path
    writes = lake.history(spark, Table.at(path)).where(F.col("operation") == "WRITE").count()
    assert writes == 2

    # the same partition at once: one wins; the other retries or fails cleanly - never twice
    same = [cli_process(conf, "--date", DAYS[3].isoformat()) for _ in range(2)]
    outs = [Output(p) for p in same]
    codes = [p.wait(timeout=600) for p in same]
    for code, out in zip(codes, outs, strict=True):
        assert code in (0, 1), out.text[-2000:]
        assert "Traceback" not in out.text
        if code == 1:
            assert "concurrent" in out.text
    assert 0 in codes
    assert_one_prediction_per_row(spark, config)
