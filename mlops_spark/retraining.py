"""The retrain rule and what a retrain trains on: pure decisions over the monitoring table."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from pyspark.sql import Column, DataFrame
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
    evidence: Mapping[str, tuple[dt.date, ...]] = field(default_factory=dict)
    """Per kind of evidence that fired, the considered partitions where it did."""


def evidence_condition(
    rule: RetrainRule,
    prediction_columns: Sequence[str],
    feature_columns: Sequence[str],
    label: str | None,
) -> dict[str, Column]:
    """Per kind of evidence the rule reads, which monitoring rows count as it (before the
    alert status): prediction drift of the prediction columns, feature drift of the features,
    the estimated quality, the realised quality; ``rule.columns`` narrows the drift columns."""
    metric = F.col("metric").isin(list(rule.metrics))
    chosen = set(rule.columns)

    def columns(names: Sequence[str]) -> list[str]:
        return [c for c in names if not chosen or c in chosen]

    conditions: dict[str, Column] = {}
    for evidence in rule.evidence:
        if evidence == "prediction_drift":
            cond = (F.col("kind") == "drift") & F.col("column").isin(columns(prediction_columns))
        elif evidence == "feature_drift":
            cond = (F.col("kind") == "drift") & F.col("column").isin(columns(feature_columns))
        elif label is None:
            continue  # quality needs a label column
        elif evidence == "estimated_quality":
            cond = F.col("kind") == "estimated_quality"
        else:
            cond = F.col("kind") == "quality"
        conditions[evidence] = cond & metric
    return conditions


def retrain_decision(
    monitoring: DataFrame,
    version: int,
    rule: RetrainRule,
    date_col: str,
    prediction_columns: Sequence[str],
    feature_columns: Sequence[str],
    label: str | None,
) -> RetrainDecision:
    """Apply the N-of-M rule to the monitoring rows of one model version: count the last
    ``rule.of_last`` monitored partitions with an alert of any kind of evidence the rule reads
    (`evidence_condition`; single-partition windows, the 'all' slice), and say which fired."""
    conditions = evidence_condition(rule, prediction_columns, feature_columns, label)
    mine = monitoring.where(
        (F.col("model_version") == version) & (F.col("window_days") == 1) & (F.col("slice") == ALL)
    )
    alert = F.col("status") == "alert"
    labelled = F.when((F.col("kind") == "quality") & (F.col("metric") == "rows"), F.col("value"))
    fired = [F.max((cond & alert).cast("int")).alias(f"__{name}") for name, cond in conditions.items()]
    per_date = mine.groupBy(date_col).agg(F.max(labelled).alias("labelled"), *fired).collect()
    if not per_date:
        return RetrainDecision(False, f"no monitoring rows for v{version} yet", (), (), None)
    ordered = sorted(per_date, key=lambda r: r[date_col])
    last = ordered[-rule.of_last :]
    evidence = {name: tuple(r[date_col] for r in last if r[f"__{name}"]) for name in conditions}
    evidence = {name: dates for name, dates in evidence.items() if dates}
    alerted = tuple(sorted({d for dates in evidence.values() for d in dates}))
    with_labels = [r[date_col] for r in ordered if (r["labelled"] or 0) > 0]
    considered = tuple(r[date_col] for r in last)
    reads = ", ".join(rule.evidence) if conditions else "no evidence (none applies)"
    fired_by = (
        "; fired by " + ", ".join(f"{name} on {_dates(dates)}" for name, dates in evidence.items())
        if evidence
        else ""
    )
    reason = (
        f"{len(alerted)} of the last {len(last)} monitored partition(s) of v{version} "
        f"({considered[0]}..{considered[-1]}) have a {'/'.join(rule.metrics)} alert among {reads}"
        f"{fired_by}; the rule needs {rule.alerts} of {rule.of_last}"
    )
    latest = max(with_labels) if with_labels else None
    return RetrainDecision(len(alerted) >= rule.alerts, reason, alerted, considered, latest, evidence)


def _dates(dates: Sequence[dt.date]) -> str:
    if len(dates) <= 3:
        return ", ".join(str(d) for d in dates)
    return f"{len(dates)} partitions {dates[0]}..{dates[-1]}"


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
