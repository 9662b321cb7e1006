"""Batch scoring throughput: every scoring path against a plain Delta -> Delta copy.

    python benchmarks/scoring.py                 # 4,000,000 rows x 10 features (a few minutes)
    python benchmarks/scoring.py --rows 200000   # a quick look

One run builds a date-partitioned Delta feature table (``--days`` partitions), fits a
logistic regression twice (pyspark.ml: VectorAssembler + LogisticRegression; scikit-learn:
LogisticRegression, logged to a temp MLflow store), then writes the same rows' predictions
(entity id, date, prediction, probability and the lineage columns) through the framework's
own replaceWhere writer (`lake.write_partitions`) once per path, and prints a table of
seconds, rows/s and ratios:

* copy              the feature rows copied Delta -> Delta by the same writer (the I/O floor)
* mllib transform   PipelineModel.transform, probability vector -> double (the naive path)
* mllib compiled    the same model compiled to Spark SQL (`mlops_spark.compile`)
* score job         the real score job (MLflow load, discovery, compiled path, commit)
* spark_udf         mlflow.pyfunc.spark_udf on the scikit-learn model
* mapInPandas       a broadcast scikit-learn model in mapInPandas over whole rows
* arrow (Nk)        the scikit-learn model through `scoring.arrow.with_arrow_scores`
                    (loaded once per Python worker, only inputs cross to Python, N rows/batch)
* sklearn compiled  the scikit-learn model compiled to Spark SQL
* pandas (1 proc)   pyarrow reads the table's Parquet files, predict_proba, pyarrow writes

Nothing here is a test; it prints numbers for docs/performance.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from pyspark.sql import DataFrame, SparkSession  # noqa: E402
from pyspark.sql import functions as F  # noqa: E402

from benchmarks.common import local_files, score_files_single_process, timed  # noqa: E402
from mlops_spark import lake  # noqa: E402
from mlops_spark.catalog import Catalog, Table  # noqa: E402
from mlops_spark.compile import compile_sklearn_model, compile_spark_model  # noqa: E402
from mlops_spark.config import SparkConfig, validate_config  # noqa: E402
from mlops_spark.outputs import with_mllib_outputs  # noqa: E402
from mlops_spark.registry import ModelRef  # noqa: E402
from mlops_spark.scoring.arrow import SKLEARN, with_arrow_scores  # noqa: E402
from mlops_spark.scoring.transforms import lineage_rows, with_compiled_scores  # noqa: E402
from mlops_spark.session import get_spark  # noqa: E402

KEY, DATE = "event_id", "date"
KEYS = (KEY, DATE)
DAY0 = dt.date(2024, 1, 1)


def build_features(spark: SparkSession, rows: int, days: int, n_features: int, table: Table) -> None:
    """``rows`` seeded rows over ``days`` partitions: a string key, the date, features, a label."""
    per_day = rows // days
    ids = spark.range(0, per_day * days, numPartitions=max(2, days // 4))
    day = (F.col("id") % days).cast("int")
    feats = [(F.randn(seed=i) * (i + 1) + i).alias(f"f{i}") for i in range(n_features)]
    df = ids.select(
        F.concat_ws("-", F.lit("ev"), F.col("id").cast("string")).alias(KEY),
        F.date_add(F.lit(DAY0), day).alias(DATE),
        *feats,
    )
    logit = sum((F.col(f"f{i}") - i) / (i + 1) * (0.3 if i % 2 else -0.2) for i in range(n_features))
    df = df.withColumn("label", (F.rand(seed=99) < 1 / (1 + F.exp(-logit))).cast("double"))
    dates = [DAY0 + dt.timedelta(days=i) for i in range(days)]
    lake.write_partitions(df, table, dates)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=4_000_000)
    parser.add_argument("--days", type=int, default=40)
    parser.add_argument("--features", type=int, default=10)
    parser.add_argument("--work", default=None, help="work folder (default: a temp folder, removed after)")
    parser.add_argument("--driver-memory", default="6g")
    opts = parser.parse_args()

    work = Path(opts.work or tempfile.mkdtemp(prefix="mlops-scoring-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("MLOPS_SPARK_LOG_LEVEL", "ERROR")
    spark = get_spark(
        SparkConfig(
            master="local[*]",
            shuffle_partitions=4,
            driver_memory=opts.driver_memory,
            conf={"spark.ui.enabled": "false"},
        ),
        app_name="mlops-spark-bench-scoring",
    )
    load_before = os.getloadavg()[0]
    lake_root = work / "lake"
    feat_table = Table.at(str(lake_root / "features" / "bench"), DATE, "features.bench")
    names = [f"f{i}" for i in range(opts.features)]
    dates = [DAY0 + dt.timedelta(days=i) for i in range(opts.days)]
    try:
        secs, _ = timed(lambda: build_features(spark, opts.rows, opts.days, opts.features, feat_table))
        features, _ = lake.read_table(spark, feat_table)
        n_rows = features.count()
        print(
            f"built {n_rows:,} rows x {opts.features} features over {opts.days} days in {secs:.0f}s",
            flush=True,
        )

        # ---- models -------------------------------------------------------------------
        import mlflow
        import mlflow.sklearn
        import mlflow.spark
        from mlflow.models import infer_signature
        from pyspark.ml import Pipeline
        from pyspark.ml.classification import LogisticRegression as SparkLR
        from pyspark.ml.feature import VectorAssembler
        from sklearn.linear_model import LogisticRegression

        sample = features.sample(fraction=min(1.0, 200_000 / n_rows), seed=1).cache()
        mllib = Pipeline(
            stages=[
                VectorAssembler(inputCols=names, outputCol="features"),
                SparkLR(featuresCol="features", labelCol="label", maxIter=20),
            ]
        ).fit(sample)
        pdf = sample.select(*names, "label").toPandas()
        sk = LogisticRegression(max_iter=200).fit(pdf[names], pdf["label"].astype(int))
        sample.unpersist()

        store = work / "mlflow"
        store.mkdir(exist_ok=True)
        mlflow.set_tracking_uri(f"sqlite:///{store}/mlflow.db")
        experiment = mlflow.create_experiment("bench", artifact_location=str(store / "artifacts"))
        with mlflow.start_run(experiment_id=experiment) as run:
            info = mlflow.sklearn.log_model(
                sk,
                name="model",
                signature=infer_signature(pdf[names]),
                registered_model_name="bench_sk",
                serialization_format=mlflow.sklearn.SERIALIZATION_FORMAT_CLOUDPICKLE,
            )
            spark_info = mlflow.spark.log_model(
                mllib,
                "spark_model",
                signature=infer_signature(pdf[names], pd.Series([0.0])),
                registered_model_name="bench_mllib",
            )
        sk_uri = info.model_uri
        sk_ref = ModelRef("bench_sk", int(info.registered_model_version or 1), run.info.run_id)
        mllib_ref = ModelRef("bench_mllib", int(spark_info.registered_model_version or 1), run.info.run_id)
        sk_local = mlflow.artifacts.download_artifacts(artifact_uri=sk_uri, dst_path=str(work / "sk_model"))

        # ---- paths --------------------------------------------------------------------
        def fresh(name: str) -> Table:
            path = str(lake_root / "predictions" / name)
            shutil.rmtree(path, ignore_errors=True)
            return Table.at(path, DATE, name)

        def write(name: str, rows: DataFrame) -> float:
            table = fresh(name)
            secs, result = timed(lambda: lake.write_partitions(rows, table, dates))
            assert result.rows_written == n_rows, (name, result.rows_written, n_rows)
            return secs

        typed = features.select(KEY, DATE, *names)

        def copy() -> float:
            return write("copy", features)

        def mllib_transform() -> float:
            scored = typed.transform(with_mllib_outputs(mllib, KEYS, "binary"))
            return write("mllib_transform", lineage_rows(scored, KEYS, "binary", mllib_ref, "bench"))

        def mllib_compiled() -> float:
            compiled = compile_spark_model(mllib, typed.schema)
            scored = typed.transform(with_compiled_scores(compiled, KEYS))
            return write("mllib_compiled", lineage_rows(scored, KEYS, "binary", mllib_ref, "bench"))

        def score_job() -> float:
            from mlops_spark import registry
            from mlops_spark.jobs.args import JobArgs
            from mlops_spark.jobs.score import score

            config = validate_config(
                {
                    "lake": {"root": str(lake_root)},
                    "spark": {"master": "local[*]", "shuffle_partitions": 4},
                    "mlflow": {
                        "tracking_uri": f"sqlite:///{store}/mlflow.db",
                        "experiment": "bench",
                        "model_name": "bench_mllib",
                    },
                    "features": {
                        "name": "bench",
                        "base_table": "x",
                        "entity_id": {"name": KEY, "expr": KEY},
                        "event_time": DATE,
                    },
                    "model": {"estimator": "logistic_regression", "numeric": names},
                    "split": {
                        "train": {"from": "2000-01-01", "to": "2000-01-02"},
                        "test": {"from": "2000-01-03", "to": "2000-01-04"},
                    },
                }
            )
            client = registry.configure(config.mlflow)
            client.set_registered_model_alias("bench_mllib", "champion", str(mllib_ref.version))
            predictions = Catalog(config).predictions()
            shutil.rmtree(predictions.path, ignore_errors=True)
            secs, job = timed(lambda: score(config, JobArgs(), spark))
            assert job.result.predictions == n_rows and job.result.method == "compiled", job.result
            return secs

        def spark_udf() -> float:
            udf = mlflow.pyfunc.spark_udf(spark, sk_uri, result_type="double", env_manager="local")
            scored = typed.select(KEY, DATE, udf(*[F.col(c) for c in names]).alias("prediction")).withColumn(
                "probability", F.lit(None).cast("double")
            )
            return write("spark_udf", lineage_rows(scored, KEYS, "binary", sk_ref, "bench"))

        def map_in_pandas() -> float:
            model_b = spark.sparkContext.broadcast(sk)

            def predict(batches: Any) -> Any:
                model = model_b.value
                for pdf_batch in batches:
                    proba = model.predict_proba(pdf_batch[names])[:, 1]
                    yield pd.DataFrame(
                        {
                            KEY: pdf_batch[KEY],
                            DATE: pdf_batch[DATE],
                            "prediction": (proba > 0.5).astype("float64"),
                            "probability": proba,
                        }
                    )

            schema = f"{KEY} string, {DATE} date, prediction double, probability double"
            scored = typed.mapInPandas(predict, schema)
            return write("map_in_pandas", lineage_rows(scored, KEYS, "binary", sk_ref, "bench"))

        def arrow(batch_rows: int) -> Callable[[], float]:
            def run() -> float:
                spark.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", str(batch_rows))
                try:
                    scored = typed.transform(with_arrow_scores(sk_local, SKLEARN, names, KEYS, "binary", 0.5))
                    return write(f"arrow_{batch_rows}", lineage_rows(scored, KEYS, "binary", sk_ref, "bench"))
                finally:
                    spark.conf.unset("spark.sql.execution.arrow.maxRecordsPerBatch")

            return run

        def sklearn_compiled() -> float:
            compiled = compile_sklearn_model(sk, names, 0.5)
            scored = typed.transform(with_compiled_scores(compiled, KEYS))
            return write("sklearn_compiled", lineage_rows(scored, KEYS, "binary", sk_ref, "bench"))

        def single_process() -> float:
            files = local_files(features.inputFiles())
            lineage = {
                "model_name": "bench_sk",
                "model_version": np.int32(sk_ref.version),
                "model_run_id": sk_ref.run_id,
                "job_run_id": "bench",
            }
            out_dir = Path(fresh("pandas").path)
            secs, rows = timed(lambda: score_files_single_process(files, sk, names, KEY, out_dir, lineage))
            assert rows == n_rows, (rows, n_rows)
            return secs

        import warnings

        warnings.filterwarnings("ignore", message="X does not have valid feature names")
        paths: list[tuple[str, Callable[[], float]]] = [
            ("copy (Delta -> Delta)", copy),
            ("mllib transform (naive)", mllib_transform),
            ("mllib compiled to SQL", mllib_compiled),
            ("score job (mllib, compiled)", score_job),
            ("spark_udf (sklearn pyfunc)", spark_udf),
            ("mapInPandas, broadcast model", map_in_pandas),
            ("arrow path, 10k rows/batch", arrow(10_000)),
            ("arrow path, 50k rows/batch", arrow(50_000)),
            ("sklearn compiled to SQL", sklearn_compiled),
            ("pandas+sklearn, 1 process", single_process),
        ]
        results: dict[str, float] = {}
        for name, fn in paths:
            results[name] = fn()
            print(f"  {name:<32} {results[name]:7.1f}s", flush=True)

        copy_s = results["copy (Delta -> Delta)"]
        udf_s = results["spark_udf (sklearn pyfunc)"]
        single_s = results["pandas+sklearn, 1 process"]
        load_after = os.getloadavg()[0]
        print()
        print(
            f"{n_rows:,} rows x {opts.features} features, {opts.days} partitions, "
            f"local[{os.cpu_count()}], load average {load_before:.1f} -> {load_after:.1f}"
        )
        print()
        print("| path | seconds | rows/s | / copy | spark_udf / path | / 1-process pandas |")
        print("|---|---:|---:|---:|---:|---:|")
        for name, secs in results.items():
            print(
                f"| {name} | {secs:.1f} | {n_rows / secs:,.0f} | {secs / copy_s:.2f} | "
                f"{udf_s / secs:.2f} | {secs / single_s:.2f} |"
            )
        return 0
    finally:
        spark.stop()
        if opts.work is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
