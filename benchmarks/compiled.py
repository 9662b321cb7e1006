"""When does a compiled tree ensemble beat the model's own transform? Measures both on the
same rows for forests of several sizes, and the rule the scorer uses (`scoring.scorer`).

    python benchmarks/compiled.py [--rows 2000 200000] [--trees 5 30 80] [--depth 6]

Compiled SQL pays a fixed cost per tree node (Spark's analysis and Java code generation of
the CASE expressions) and saves per row (no vector, no JVM object per row); MLlib's transform
pays per row. Each cell is the median of 3 `noop` writes of the scored rows (predictions
computed, nothing stored), one Spark session, shapes interleaved.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, nargs="+", default=[2_000, 200_000])
    parser.add_argument("--trees", type=int, nargs="+", default=[5, 30, 80])
    parser.add_argument("--depth", type=int, default=6)
    parser.add_argument("--classes", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    from pyspark.sql import functions as F

    from mlops_spark.compile import compile_spark_model
    from mlops_spark.config import ModelConfig, SparkConfig
    from mlops_spark.outputs import with_mllib_outputs
    from mlops_spark.scoring.transforms import with_compiled_scores
    from mlops_spark.session import get_spark
    from mlops_spark.training import build_pipeline

    spark = get_spark(
        SparkConfig(master="local[2]", shuffle_partitions=4, driver_memory="3g"), "bench-compiled"
    )
    numeric = [f"x{i}" for i in range(8)]
    task = "binary" if args.classes == 2 else "multiclass"

    def rows(n: int, seed: int):  # type: ignore[no-untyped-def]
        cols = [F.randn(seed + i).alias(c) for i, c in enumerate(numeric)]
        df = spark.range(n).select(F.col("id").cast("string").alias("id"), *cols)
        score = sum(F.col(c) * (i % 3 - 1) for i, c in enumerate(numeric))
        return df.withColumn(
            "y", F.pmod(F.floor(score + F.randn(seed + 99)), F.lit(args.classes)).cast("double")
        )

    train = rows(5_000, 1).persist()
    print("| trees | nodes | rows | transform s | compiled s | compiled / transform |")
    print("|---:|---:|---:|---:|---:|---:|")
    for trees in args.trees:
        cfg = ModelConfig(
            task=task,  # type: ignore[arg-type]
            estimator="random_forest_classifier",
            numeric=numeric,
            params={"numTrees": trees, "maxDepth": args.depth},
        )
        model = build_pipeline(cfg, "y").fit(train)
        nodes = model.stages[-1].totalNumNodes
        for n in args.rows:
            data = rows(n, 7).drop("y").persist()
            data.count()
            timings: dict[str, list[float]] = {"transform": [], "compiled": []}
            for _ in range(args.repeats):
                for path in ("transform", "compiled"):
                    started = time.perf_counter()
                    if path == "compiled":
                        compiled = compile_spark_model(model, data.schema)
                        out = data.transform(with_compiled_scores(compiled, ["id"]))
                    else:
                        out = data.transform(with_mllib_outputs(model, ["id"], task))  # type: ignore[arg-type]
                    out.write.format("noop").mode("overwrite").save()
                    timings[path].append(time.perf_counter() - started)
            tr, co = statistics.median(timings["transform"]), statistics.median(timings["compiled"])
            print(f"| {trees} | {nodes} | {n:,} | {tr:.2f} | {co:.2f} | {co / tr:.2f} |", flush=True)
            data.unpersist()
    spark.stop()


if __name__ == "__main__":
    main()
