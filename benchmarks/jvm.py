"""Driver JVM options in local mode: JIT mode (``spark.jit``) and the class-data-sharing
archive (``spark.class_data_sharing``), in fresh processes, interleaved.

    python benchmarks/jvm.py [--rounds 2] [--pipeline-days 14] [--pipeline full quick+cds ...]

Two measurements per variant, each in a new process (so each pays a JVM start, as a
scheduled job does):

* ``start``: process start -> session -> first job -> first Delta write and read
  (a 100-row table), then stop;
* ``pipeline``: ``mlops-spark pipeline`` on the first ``--pipeline-days`` days of the demo
  data (train on all but the last four, small model and tuning budget, as tests/test_e2e.py)
  in a fresh folder: the whole flow, CPU-bound in the driver JVM.

Variants run in ABBA order per round so drift in the machine's load hits each alike; the
table gives every run's seconds and the median.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = {  # spark.jit, spark.class_data_sharing
    "full": ("full", "false"),  # what every start did before the archive
    "full+cds": ("full", "true"),  # the default
    "quick": ("quick", "false"),
    "quick+cds": ("quick", "true"),
}

PROBE = """
import sys, time
t0 = time.time()
from mlops_spark.config import SparkConfig
from mlops_spark.session import get_spark
spark = get_spark(SparkConfig(master="local[2]", shuffle_partitions=2, jit=sys.argv[1],
                              class_data_sharing=sys.argv[2] == "true"), app_name="jvm-bench")
spark.range(10).count()
spark.range(100).write.format("delta").mode("overwrite").save(sys.argv[3])
spark.read.format("delta").load(sys.argv[3]).count()
spark.stop()
print(f"SECONDS {time.time() - t0:.2f}")
"""


def start_probe(jit: str, cds: str, work: Path) -> float:
    out = subprocess.run(
        [sys.executable, "-c", PROBE, jit, cds, str(work / "t")],
        capture_output=True, text=True, check=True, cwd=ROOT, env=_env(),
    )  # fmt: skip
    return float(next(line.split()[1] for line in out.stdout.splitlines() if line.startswith("SECONDS")))


def pipeline_run(jit: str, cds: str, days: int) -> float:
    last = dt.date(2013, 1, 1) + dt.timedelta(days=days - 1)
    train_to, test_from = last - dt.timedelta(days=4), last - dt.timedelta(days=3)
    sets = [
        f"spark.jit={jit}", f"spark.class_data_sharing={cds}", "spark.shuffle_partitions=2",
        "split.train.from=2013-01-01", f"split.train.to={train_to}",
        f"split.test.from={test_from}", f"split.test.to={last}",
        "model.params.maxIter=10", "model.tuning.max_evals=2",
    ]  # fmt: skip
    args = [sys.executable, "-m", "mlops_spark.cli", "pipeline", "--conf", str(ROOT / "conf" / "flights.yml")]
    args += ["--env", "local", "--from", "2013-01-01", "--to", str(last)]
    for s in sets:
        args += ["--set", s]
    with tempfile.TemporaryDirectory() as work:
        started = time.perf_counter()
        subprocess.run(args, cwd=work, env=_env(), capture_output=True, text=True, check=True)
        return time.perf_counter() - started


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    return {**env, "PYTHONPATH": str(ROOT), "MLOPS_SPARK_LOG_LEVEL": "ERROR"}


def main() -> None:
    raw = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=raw)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--pipeline-days", type=int, default=14)
    parser.add_argument(
        "--pipeline",
        nargs="*",
        choices=list(VARIANTS),
        default=["full", "full+cds"],
        help="variants that also run the pipeline (minutes each; none: --pipeline with no value)",
    )
    ns = parser.parse_args()
    names = list(VARIANTS)
    results: dict[tuple[str, str], list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(ns.rounds):
            order = names if r % 2 == 0 else names[::-1]
            for name in order:
                jit, cds = VARIANTS[name]
                results.setdefault(("start", name), []).append(start_probe(jit, cds, Path(tmp)))
                print(f"start     {name}: {results[('start', name)][-1]:.1f}s", file=sys.stderr)
        pair = list(ns.pipeline)
        if pair:
            for r in range(ns.rounds):
                for name in pair if r % 2 == 0 else pair[::-1]:
                    jit, cds = VARIANTS[name]
                    took = pipeline_run(jit, cds, ns.pipeline_days)
                    results.setdefault(("pipeline", name), []).append(took)
                    print(f"pipeline  {name}: {results[('pipeline', name)][-1]:.1f}s", file=sys.stderr)
    print(f"load average at the end: {os.getloadavg()[0]:.1f}")
    print("| measurement | variant | runs (s) | median (s) |")
    print("|---|---|---|---:|")
    for (what, name), times in results.items():
        runs = " / ".join(f"{t:.1f}" for t in times)
        print(f"| {what} | {name} | {runs} | {statistics.median(times):.1f} |")


if __name__ == "__main__":
    main()
