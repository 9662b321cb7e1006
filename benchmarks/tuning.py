"""Tuning throughput: trials per minute of a scikit-learn learner with hyperopt's
`SparkTrials` at parallelism 1 and 2 (and, as a baseline, plain `Trials` in this process).

    python benchmarks/tuning.py                        # 12 trials each, 10,000 x 20, local[*]
    python benchmarks/tuning.py --trials 24 --rows 40000 --parallelism 1 2 4

Every run goes through `mlops_spark.tuning.tune_sklearn` (the library path, not a copy):
the same data, search space, seed and single-threaded learner, so the difference is how
many trials run at once minus SparkTrials' overhead (a Spark job per trial, pickling the
data to the Python worker, a one-second dispatcher poll). The start-up trials are random
(TPE is switched off by `startup_trials = trials`), so every run samples the same kind of
points. A short warm-up search starts the Python workers first. One run each, no
repetition: on a shared machine read the ratios as rough; the load average is printed.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from typing import Any

import numpy as np
import pandas as pd

from mlops_spark.config import ModelConfig, SparkConfig
from mlops_spark.session import get_spark
from mlops_spark.tuning import SklearnTuning, tune_sklearn

LEARNER = "sklearn.ensemble.RandomForestClassifier"


def synthetic(rows: int, features: int, seed: int) -> tuple[pd.DataFrame, pd.Series]:
    """A binary label from a few of the features plus noise (about a third positive)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, features))
    w = np.zeros(features)
    w[: max(2, features // 4)] = rng.normal(size=max(2, features // 4))
    p = 1.0 / (1.0 + np.exp(-(x @ w - 0.7)))
    frame = pd.DataFrame(x, columns=[f"x{i}" for i in range(features)])
    return frame, pd.Series((rng.random(rows) < p).astype(float))


def model_config(features: list[str], trials: int, parallelism: int, trees: int) -> ModelConfig:
    return ModelConfig.model_validate(
        {
            "numeric": features,
            "sklearn": {"estimator": LEARNER, "params": {"n_estimators": trees, "n_jobs": 1}},
            "tuning": {
                "max_evals": trials,
                "parallelism": parallelism,
                "startup_trials": trials,
                "search_space": {
                    "max_features": {"kind": "uniform", "low": 0.2, "high": 0.6},
                    "min_samples_leaf": {"kind": "quniform", "low": 1, "high": 20, "q": 1},
                    "criterion": {"kind": "choice", "options": ["gini", "entropy"]},
                },
            },
        }
    )


def run(
    spark: Any,
    train: tuple[pd.DataFrame, pd.Series],
    val: tuple[pd.DataFrame, pd.Series],
    trials: int,
    parallelism: int,
    trees: int,
) -> tuple[SklearnTuning, float]:
    config = model_config(list(train[0].columns), trials, parallelism, trees)
    started = time.perf_counter()
    tuned = tune_sklearn(spark, config, train, val, seed=7)
    return tuned, time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--trials", type=int, default=12, help="trials per run (default 12)")
    parser.add_argument("--rows", type=int, default=10_000, help="training rows (default 10,000)")
    parser.add_argument("--features", type=int, default=20)
    parser.add_argument("--trees", type=int, default=40, help="n_estimators of the forest (default 40)")
    parser.add_argument("--parallelism", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--no-baseline", action="store_true", help="skip the in-process Trials run")
    parser.add_argument("--master", default=os.environ.get("MLOPS_SPARK_MASTER", "local[*]"))
    args = parser.parse_args(argv)

    spark = get_spark(
        SparkConfig(master=args.master, shuffle_partitions=4, conf={"spark.ui.enabled": "false"}),
        app_name="mlops-spark-bench-tuning",
    )
    cores = spark.sparkContext.defaultParallelism
    train = synthetic(args.rows, args.features, seed=1)
    val = synthetic(max(args.rows // 4, 1000), args.features, seed=2)
    print(
        f"{LEARNER}(n_estimators={args.trees}, n_jobs=1) on {args.rows:,} x {args.features}; "
        f"{args.trials} trials per run; Spark {args.master} ({cores} task slots)",
        file=sys.stderr,
    )
    run(spark, train, val, trials=2, parallelism=max(args.parallelism), trees=5)  # warm the workers

    rows: list[tuple[str, int, SklearnTuning, float]] = []
    if not args.no_baseline:
        tuned, wall = run(None, train, val, args.trials, 1, args.trees)
        rows.append(("Trials (driver)", 1, tuned, wall))
    for p in args.parallelism:
        tuned, wall = run(spark, train, val, args.trials, p, args.trees)
        rows.append(("SparkTrials", p, tuned, wall))

    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    base = next(
        (60.0 * len(t.result.trials) / w for name, p, t, w in rows if name == "SparkTrials" and p == 1), None
    )
    header = (
        f"{'runner':<16} {'parallelism':>11} {'trials':>6} {'wall s':>8} {'trials/min':>10} "
        f"{'mean trial s':>12} {'best val AUC':>12} {'vs p=1':>7}"
    )
    print(f"\ntuning throughput ({args.trials} trials each; load average {load} on {os.cpu_count()} CPUs)")
    print(header)
    print("-" * len(header))
    for name, p, tuned, wall in rows:
        result = tuned.result
        per_minute = 60.0 * len(result.trials) / wall
        inside = statistics.mean(t.seconds for t in result.trials if t.seconds is not None)
        ratio = f"{per_minute / base:.2f}x" if base and name == "SparkTrials" else "-"
        print(
            f"{name:<16} {p:>11} {len(result.trials):>6} {wall:>8.1f} {per_minute:>10.1f} "
            f"{inside:>12.2f} {result.best.metrics['areaUnderROC']:>12.4f} {ratio:>7}"
        )
    spark.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
