"""Cost follows rows, not partitions: the same rows as 1,461 one-row daily partitions vs one
partition, job by job.

    python benchmarks/partitions.py [--repeats 2] [--work /tmp/bench-partitions]

The rows are the real daily Seattle weather of 2012-2015 (vega_datasets), written by delta-rs
as in conf/examples/seattle_weather.yml, twice:

* ``daily``: partitioned by ``day`` (1,461 partitions of one row), as the example ships;
* ``single``: the same 1,461 rows with one partition value (every row on 2014-01-01).

Both lakes run validate -> features -> score -> monitor with the example's config (entity id
``obs_day``, the original day, so ids stay unique in ``single``; the reference is a fixed
baseline that covers every row of each lake, so both monitor the same rows). One model,
trained once on ``daily``, scores both. Each job runs on fresh output tables ``--repeats``
times, the layouts interleaved in one Spark session; the table gives the median seconds and
the ratio daily / single. A ratio near 1 means the job's cost follows its rows.
"""

from __future__ import annotations

import argparse
import datetime as dt
import shutil
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

JOBS = ("validate", "features", "score", "monitor")
SINGLE_DAY = "2014-01-01"


def write_lakes(work: Path) -> dict[str, Path]:
    from deltalake import write_deltalake
    from example_lakes import frame

    rows = frame("seattle_weather")
    rows.insert(1, "obs_day", rows["day"])
    single = rows.assign(day=SINGLE_DAY)
    out = {}
    for layout, df in (("daily", rows), ("single", single)):
        path = work / "sources" / layout
        write_deltalake(str(path), df, partition_by=["day"], mode="overwrite")
        out[layout] = path
    return out


def config_for(layout: str, source: Path, lake: Path, store: Path) -> Any:
    from mlops_spark.config import load_config

    baseline = ("2012-01-01", "2015-12-31") if layout == "daily" else (SINGLE_DAY, SINGLE_DAY)
    sets = [
        f"lake.root={lake}",
        f"source.tables.weather.path={source}",
        "source.tables.weather.key=[obs_day]",
        f"mlflow.tracking_uri=sqlite:///{store}/mlflow.db",
        f"mlflow.artifact_location={store}/artifacts",
        "features.entity_id.expr=obs_day",
        # the unique-day rule of the example holds per day; here ids are unique per obs_day
        "validation.tables.weather.expectations="
        "[{rule: unique, columns: [obs_day]}, {rule: not_null, column: weather}]",
        "monitoring.reference=baseline",
        f"monitoring.baseline={{from: {baseline[0]}, to: {baseline[1]}}}",
        "monitoring.report=false",
        "spark.shuffle_partitions=4",
    ]
    return load_config(ROOT / "conf" / "examples" / "seattle_weather.yml", None, sets)


def run_jobs(config: Any, spark: Any) -> dict[str, float]:
    from mlops_spark.jobs.args import JobArgs
    from mlops_spark.jobs.features import features
    from mlops_spark.jobs.monitor import monitor
    from mlops_spark.jobs.score import score
    from mlops_spark.jobs.validate import validate

    took = {}
    for name, job in (("validate", validate), ("features", features), ("score", score), ("monitor", monitor)):
        started = time.perf_counter()
        job(config, JobArgs(), spark)
        took[name] = time.perf_counter() - started
    return took


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--work", default="/tmp/bench-partitions")
    args = parser.parse_args()
    work = Path(args.work)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)

    from mlops_spark import registry
    from mlops_spark.config import SparkConfig
    from mlops_spark.jobs.args import JobArgs
    from mlops_spark.jobs.features import features
    from mlops_spark.jobs.promote import promote
    from mlops_spark.jobs.train import train
    from mlops_spark.jobs.validate import validate
    from mlops_spark.session import get_spark

    spark = get_spark(
        SparkConfig(master="local[2]", shuffle_partitions=4, driver_memory="3g"), "bench-partitions"
    )
    sources = write_lakes(work)
    store = work / "mlflow"
    store.mkdir()
    # one model, trained on the daily lake, scores both layouts
    seed = config_for("daily", sources["daily"], work / "train-lake", store)
    validate(seed, JobArgs(), spark)
    features(seed, JobArgs(), spark)
    train(seed, JobArgs(), spark)
    promote(seed, JobArgs(), spark)
    champion = registry.resolve(registry.configure(seed.mlflow), seed.mlflow.model_name, alias="champion")
    print(f"model: {champion.describe()} (trained on the daily layout)", file=sys.stderr)

    times: dict[str, dict[str, list[float]]] = {layout: {j: [] for j in JOBS} for layout in sources}
    for repeat in range(args.repeats + 1):  # the first round warms the session up and is dropped
        for layout, source in sources.items():
            lake = work / f"lake-{layout}-{repeat}"
            took = run_jobs(config_for(layout, source, lake, store), spark)
            if repeat:
                for job, secs in took.items():
                    times[layout][job].append(secs)
            print(
                f"round {repeat} {layout}: " + ", ".join(f"{j} {s:.1f}s" for j, s in took.items()),
                file=sys.stderr,
            )

    print(f"\nThe same 1,461 rows, {args.repeats} run(s) each, median seconds ({dt.date.today()}):\n")
    print("| job | 1,461 daily partitions | 1 partition | ratio |")
    print("|---|---:|---:|---:|")
    for job in JOBS:
        daily = statistics.median(times["daily"][job])
        single = statistics.median(times["single"][job])
        print(f"| {job} | {daily:.1f} | {single:.1f} | {daily / single:.2f}x |")
    spark.stop()


if __name__ == "__main__":
    main()
