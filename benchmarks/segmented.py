"""Segmented models: fitting N segment models in parallel on Spark vs a sequential pandas loop,
and scoring through the routed model (spark flavour, mapInArrow) vs ``mlflow.pyfunc.spark_udf``.

    python benchmarks/segmented.py                       # 16 segments x 5,000 rows, local[*]
    python benchmarks/segmented.py --segments 32 --rows 10000 --score-rows 1000000

One run of each (no repetition), so read the ratios as rough on a shared machine; the
load average is printed with the table. Both fit paths run the same function
(`segmented.fit_segment`) on the same rows with a single-threaded estimator, so the
difference is Spark's parallelism minus its overhead (shuffle, Arrow, Python workers).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from typing import Any

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from mlops_spark.config import SparkConfig
from mlops_spark.segmented import (
    GLOBAL,
    FitSpec,
    RouteSpec,
    SegmentFits,
    SegmentRouter,
    fit_segment,
    fit_segments,
    import_estimator,
    log_segmented_model,
)
from mlops_spark.segmented.spec import ROLE, SEGMENT_KEY
from mlops_spark.session import get_spark


def synthetic(segments: int, rows: int, features: int, seed: int = 1) -> pd.DataFrame:
    """``rows`` rows per segment; each segment has its own coefficients."""
    rng = np.random.default_rng(seed)
    parts = []
    for s in range(segments):
        x = rng.normal(size=(rows, features))
        w = rng.normal(size=features)
        p = 1.0 / (1.0 + np.exp(-(x @ w) / np.sqrt(features) * 2))
        part = pd.DataFrame(x, columns=[f"x{i}" for i in range(features)])
        part.insert(0, "segment", f"s{s:03d}")
        part["y"] = (rng.random(rows) < p).astype(float)
        parts.append(part)
    out = pd.concat(parts, ignore_index=True)
    out.insert(0, "id", np.arange(len(out)))
    return out


def timed(fn: Any) -> tuple[Any, float]:
    started = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - started


def sequential_fits(
    pdf: pd.DataFrame, spec: FitSpec, factory: Any, params: dict[str, Any]
) -> list[dict[str, Any]]:
    frame = pdf.assign(**{ROLE: "train"})
    out = []
    for key, part in frame.groupby("segment", sort=True):
        out.append(fit_segment(part.assign(**{SEGMENT_KEY: key}), spec, factory, params))
    return out


def warm_workers(spark: SparkSession, estimator_module: str) -> None:
    """Start the Python workers and import this package and the estimator's module there, as
    the driver already has (a cost every job pays once per worker)."""

    def touch(batches: Any) -> Any:
        import importlib

        import mlops_spark.segmented  # noqa: F401

        importlib.import_module(estimator_module)
        yield from batches

    parallelism = spark.sparkContext.defaultParallelism
    spark.range(0, parallelism * 2, numPartitions=parallelism).mapInPandas(touch, "id long").count()


def score_noop(frame: DataFrame) -> None:
    frame.write.format("noop").mode("overwrite").save()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--segments", type=int, default=16)
    parser.add_argument("--rows", type=int, default=5000, help="train rows per segment")
    parser.add_argument("--features", type=int, default=10)
    parser.add_argument("--score-rows", type=int, default=400_000)
    parser.add_argument("--master", default="local[*]")
    parser.add_argument("--estimator", default="sklearn.ensemble.RandomForestClassifier")
    parser.add_argument("--params", default="n_estimators=60,max_depth=10,n_jobs=1")
    args = parser.parse_args(argv)
    params: dict[str, Any] = {}
    for item in filter(None, args.params.split(",")):
        k, v = item.split("=", 1)
        params[k] = int(v) if v.lstrip("-").isdigit() else v

    spark = get_spark(
        SparkConfig(master=args.master, shuffle_partitions=8, conf={"spark.ui.enabled": "false"}),
        app_name="benchmark-segmented",
    )
    cores = spark.sparkContext.defaultParallelism  # spark.default.parallelism (= shuffle partitions)
    numeric = tuple(f"x{i}" for i in range(args.features))
    route = RouteSpec("segment", (), numeric, "binary", 0.5)
    spec = FitSpec(route=route, label="y", min_rows=10, one_hot=False, impute="none", seed=1)
    factory = import_estimator(args.estimator)

    train_pdf = synthetic(args.segments, args.rows, args.features)
    train_sdf = spark.createDataFrame(train_pdf).withColumn(ROLE, F.lit("train")).persist()
    train_sdf.count()
    _, warm = timed(lambda: warm_workers(spark, factory.__module__))

    seq, t_seq = timed(lambda: sequential_fits(train_pdf, spec, factory, params))
    par, t_par = timed(
        lambda: SegmentFits.collect(fit_segments(train_sdf, spec, factory, params, include_global=False))
    )
    assert all(r["status"] == "fitted" for r in seq) and len(par.blobs) == args.segments == len(seq)

    # the routed model: the Spark fits plus a global model (fitted here, not timed)
    glob = fit_segment(train_pdf.assign(**{ROLE: "train", SEGMENT_KEY: GLOBAL}), spec, factory, params)
    router = SegmentRouter(route, {**par.blobs, GLOBAL: glob["model"]})
    per_segment = max(1, args.score_rows // args.segments)
    score_pdf = synthetic(args.segments, per_segment, args.features, seed=2).drop(columns=["y"])
    score_sdf = spark.createDataFrame(score_pdf).repartition(cores * 2).persist()
    n_score = score_sdf.count()

    import mlflow
    import mlflow.spark

    with tempfile.TemporaryDirectory() as tmp:
        mlflow.set_tracking_uri(f"sqlite:///{tmp}/mlflow.db")
        mlflow.set_experiment("benchmark-segmented")
        example = score_pdf.drop(columns=["id"]).head(5)
        with mlflow.start_run():
            info = log_segmented_model(router, example, None, factory)
        uri = info.model_uri
        spark_model = mlflow.spark.load_model(uri)
        routed = spark_model.transform(score_sdf).select("id", "prediction", "probability", "model_segment")
        _, t_routed = timed(lambda: score_noop(routed))
        udf = mlflow.pyfunc.spark_udf(
            spark,
            uri,
            result_type="prediction double, probability double, model_segment string",
            env_manager="local",
        )
        inputs = ["segment", *numeric]
        by_udf = score_sdf.select("id", udf(*[F.col(c) for c in inputs]).alias("out")).select("id", "out.*")
        _, t_udf = timed(lambda: score_noop(by_udf))
        agree = (
            routed.select("id", F.col("prediction").alias("a"))
            .join(by_udf.select("id", F.col("prediction").alias("b")), "id")
            .where("a != b")
            .count()
        )
        mlflow.set_tracking_uri(None)  # type: ignore[arg-type]

    load = os.getloadavg()
    rows = [
        ("setup: start Python workers, import mlops_spark + estimator", "-", warm, ""),
        (
            f"fit {args.segments} segment models: sequential pandas loop",
            f"{len(train_pdf):,}",
            t_seq,
            "1.00x",
        ),
        (
            f"fit {args.segments} segment models: Spark applyInPandas",
            f"{len(train_pdf):,}",
            t_par,
            f"{t_seq / t_par:.2f}x",
        ),
        ("score: mlflow.pyfunc.spark_udf (same model, pyfunc flavour)", f"{n_score:,}", t_udf, "1.00x"),
        ("score: routed spark flavour (mapInArrow)", f"{n_score:,}", t_routed, f"{t_udf / t_routed:.2f}x"),
    ]
    print(
        f"\nsegmented benchmark: {args.master}, {args.estimator}({args.params}), "
        f"{args.features} features; load average {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f}"
    )
    width = max(len(r[0]) for r in rows)
    print(f"| {'step':<{width}} | {'rows':>9} | {'seconds':>8} | {'speed-up':>8} |")
    print(f"|{'-' * (width + 2)}|{'-' * 11}|{'-' * 10}|{'-' * 10}|")
    for name, n, secs, ratio in rows:
        print(f"| {name:<{width}} | {n:>9} | {secs:>8.1f} | {ratio:>8} |")
    cpu_seq = sum(r["cpu_seconds"] for r in seq)
    cpu_par = sum(r["cpu_seconds"] for r in par.rows)
    print(
        f"CPU seconds of the {args.segments} fits: pandas {cpu_seq:.1f}, Spark tasks {cpu_par:.1f}; "
        f"CPUs the fits got on average: pandas {cpu_seq / t_seq:.2f}, Spark {cpu_par / t_par:.2f} "
        f"(wall seconds inside the fits: pandas {sum(r['fit_seconds'] for r in seq):.1f}, "
        f"Spark tasks {sum(r['fit_seconds'] for r in par.rows):.1f})"
    )
    print(f"rows where the two scorers disagree: {agree}")
    spark.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
