"""Long pipelines in one Spark session: the whole demo year, then both examples on all of
their days (seattle_weather: 1,461 one-row daily partitions), one after the other in the
same session with the default 4 GB driver.

    python benchmarks/long_session.py [--work /tmp/bench-long-session] [--only flights,...]

After every job it prints what the session still holds: the driver's heap after a garbage
collection, the broadcasts still alive (`caching.live_broadcasts`) and the frames still
cached (`caching.session_caches`). Nothing may grow from stage to stage beyond Delta's
per-table state; a job that fails stops the script with its summary line (exit 1).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

USE_CASES = ("flights", "seattle_weather", "sf_temps")


def config_for(use_case: str, work: Path) -> Any:
    from mlops_spark.config import load_config

    store = work / use_case / "mlflow"
    sets = [
        f"lake.root={work / use_case / 'lake'}",
        f"mlflow.tracking_uri=sqlite:///{store}/mlflow.db",
        f"mlflow.artifact_location={store}/artifacts",
    ]
    if use_case == "flights":
        return load_config(ROOT / "conf" / "flights.yml", "local", sets)
    from example_lakes import write_example_lake

    written = write_example_lake(work / use_case / "their-lake", (use_case,))
    table = {"seattle_weather": "weather", "sf_temps": "temps"}[use_case]
    sets.append(f"source.tables.{table}.path={written[use_case]}")
    return load_config(ROOT / "conf" / "examples" / f"{use_case}.yml", None, sets)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--work", default="/tmp/bench-long-session")
    parser.add_argument("--only", default=",".join(USE_CASES))
    args = parser.parse_args()
    work = Path(args.work)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)

    from mlops_spark.caching import live_broadcasts, session_caches
    from mlops_spark.jobs.args import JobArgs
    from mlops_spark.jobs.pipeline import pipeline
    from mlops_spark.runtime import JobRun
    from mlops_spark.session import get_spark

    use_cases = [u for u in args.only.split(",") if u]
    configs = {u: config_for(u, work) for u in use_cases}
    first = configs[use_cases[0]]
    spark = get_spark(first.spark, app_name="bench-long-session")
    jvm = spark.sparkContext._jvm
    memory = spark.conf.get("spark.driver.memory", first.spark.driver_memory)
    print(f"driver memory {memory}", file=sys.stderr)

    rows: list[tuple[str, str, float, float, int, float, int]] = []
    for use_case in use_cases:

        def held(run: JobRun[Any], use_case: str = use_case) -> None:
            broadcasts = live_broadcasts(spark)  # collects garbage first
            runtime = jvm.java.lang.Runtime.getRuntime()
            heap_mb = (runtime.totalMemory() - runtime.freeMemory()) / 2**20
            cached = len(session_caches(spark).other)
            broadcast_mb = sum(broadcasts.values()) / 2**20
            rows.append((use_case, run.job, run.seconds, heap_mb, len(broadcasts), broadcast_mb, cached))
            print(f"{use_case} {run.job}: {run.seconds:.0f}s, heap {heap_mb:.0f} MiB, "
                  f"{len(broadcasts)} broadcasts, {cached} cached frame(s)", file=sys.stderr)  # fmt: skip

        started = time.perf_counter()
        runs = pipeline(configs[use_case], JobArgs(), spark, after_each=held)
        took = time.perf_counter() - started
        rows.append((use_case, "pipeline", took, float("nan"), -1, float("nan"), -1))
        print(f"{use_case}: pipeline {took:.0f}s, {len(runs)} jobs", file=sys.stderr)

    print("\n| use case | job | seconds | heap after GC (MiB) | live broadcasts (MiB) | cached frames |")
    print("|---|---|---:|---:|---:|---:|")
    for use_case, job, secs, heap, n, mib, cached in rows:
        if job == "pipeline":
            print(f"| **{use_case}** | **whole pipeline** | **{secs:.0f}** | | | |")
        else:
            print(f"| {use_case} | {job} | {secs:.0f} | {heap:.0f} | {n} ({mib:.1f}) | {cached} |")
    spark.stop()


if __name__ == "__main__":
    main()
