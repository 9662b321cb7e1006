"""The retrain rule and what a retrain trains on: pure decisions over the monitoring table."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from mlops_spark.config import DateRange, RetrainRule, SplitConfig
from mlops_spark.monitoring.frames import ALL


@dataclass(frozen=True)
class RetrainDecision:
    retrain: bool
    reason: str
    alerted: tuple[dt.date, ...]
    considered: tuple[dt.date, ...]
    latest_labelled: dt.date | None


def retrain_decision(
    monitoring: DataFrame, version: int, rule: RetrainRule, columns: Sequence[str], date_col: str
) -> RetrainDecision:
    """Apply the N-of-M rule to the monitoring rows of one model version: count the last
    ``rule.of_last`` monitored partitions with an alert on ``rule.metrics`` of ``columns``
    (single-partition windows, the 'all' slice)."""
    mine = monitoring.where(
        (F.col("model_version") == version)
        & F.col("kind").isin("drift", "quality")
        & (F.col("window_days") == 1)
    )
    counted = (
        F.col("metric").isin(list(rule.metrics))
        & F.col("column").isin(list(columns))
        & (F.col("slice") == ALL)
        & (F.col("status") == "alert")
    )
    labelled = F.when((F.col("kind") == "quality") & (F.col("metric") == "rows"), F.col("value"))
    per_date = (
        mine.groupBy(date_col)
        .agg(F.max(counted.cast("int")).alias("alert"), F.max(labelled).alias("labelled"))
        .collect()
    )
    if not per_date:
        return RetrainDecision(False, f"no monitoring rows for v{version} yet", (), (), None)
    ordered = sorted(per_date, key=lambda r: r[date_col])
    last = ordered[-rule.of_last :]
    alerted = tuple(r[date_col] for r in last if r["alert"])
    with_labels = [r[date_col] for r in ordered if (r["labelled"] or 0) > 0]
    considered = tuple(r[date_col] for r in last)
    reason = (
        f"{len(alerted)} of the last {len(last)} monitored partition(s) of v{version} "
        f"({considered[0]}..{considered[-1]}) have an alert on {'/'.join(rule.metrics)} of "
        f"{', '.join(columns)}; the rule needs {rule.alerts} of {rule.of_last}"
    )
    latest = max(with_labels) if with_labels else None
    return RetrainDecision(len(alerted) >= rule.alerts, reason, alerted, considered, latest)


def shifted_split(split: SplitConfig, test_end: dt.date, window: str) -> SplitConfig:
    """The split moved so its test range ends at ``test_end`` ('slide': every range keeps
    its length; 'expand': the train range keeps its start and grows)."""
    offset = test_end - split.test.end

    def move(rng: DateRange, keep_start: bool = False) -> dict[str, str]:
        start = rng.start if keep_start else rng.start + offset
        return {"from": start.isoformat(), "to": (rng.end + offset).isoformat()}

    data: dict[str, object] = {
        "train": move(split.train, keep_start=window == "expand"),
        "test": move(split.test),
        "seed": split.seed,
    }
    if split.validation is not None:
        data["validation"] = move(split.validation)
    return SplitConfig.model_validate(data)


def canary_verdict(
    metric: str, higher_better: bool, champion: float, challenger: float, limit: float, detail: str
) -> tuple[bool, str]:
    """Refuse a challenger whose realised metric on the shadow partitions is worse than the
    champion's by more than ``limit``."""
    drop = (champion - challenger) if higher_better else (challenger - champion)
    if drop > limit:
        return False, f"refused, {detail} (worse by {drop:.4f} > {limit})"
    return True, f"passed, {detail}"
