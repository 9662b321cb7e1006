"""The floor under benchmarks/partitions.py: a plain Delta write of 1,461 rows as 1,461 day
partitions vs one partition, in one Spark session (no job code at all).

    python benchmarks/partitions_floor.py [--repeats 3] [--work /tmp/bench-floor]

Each layout is written ``--repeats`` times after a dropped warm-up round, interleaved; the
line printed is the median seconds of each and their ratio.
"""

from __future__ import annotations

import argparse
import shutil
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
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--work", default="/tmp/bench-floor")
    args = parser.parse_args()

    from pyspark.sql import functions as F

    from mlops_spark.config import SparkConfig
    from mlops_spark.session import get_spark

    spark = get_spark(SparkConfig(master="local[2]", shuffle_partitions=4, driver_memory="3g"), "bench-floor")
    first = F.lit("2012-01-01").cast("date")
    daily = spark.range(1461).select(
        F.date_add(first, F.col("id").cast("int")).alias("day"), F.rand(1).alias("x"), F.col("id")
    )
    layouts = {"daily": daily, "single": daily.withColumn("day", F.lit("2014-01-01").cast("date"))}
    took: dict[str, list[float]] = {name: [] for name in layouts}
    for repeat in range(args.repeats + 1):  # round 0 warms the session up and is dropped
        for name, df in layouts.items():
            path = Path(args.work) / f"{name}{repeat}"
            shutil.rmtree(path, ignore_errors=True)
            started = time.perf_counter()
            df.repartition(1).write.format("delta").partitionBy("day").save(str(path))
            secs = time.perf_counter() - started
            if repeat:
                took[name].append(secs)
            print(f"round {repeat} {name}: {secs:.2f}s", file=sys.stderr)
    d, s = statistics.median(took["daily"]), statistics.median(took["single"])
    print(f"delta write of 1,461 rows: 1,461 partitions {d:.1f}s, 1 partition {s:.1f}s, ratio {d / s:.1f}x")
    shutil.rmtree(args.work, ignore_errors=True)
    spark.stop()


if __name__ == "__main__":
    main()
