"""The monitoring table's comparison parts: canary (shadow) rows and the A/B comparison."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from mlops_spark import canary, lake
from mlops_spark.config import AppConfig
from mlops_spark.monitoring.frames import ALL, SLICE
from mlops_spark.monitoring.quality import realised_quality
from mlops_spark.monitoring.table import tagged
from mlops_spark.registry import ModelRef
from mlops_spark.scoring.ab import ARM, CHAMPION_ARM


def canary_parts(
    config: AppConfig,
    champion_preds: DataFrame,
    shadow: DataFrame,
    feats: DataFrame,
    dates: Sequence[dt.date],
    challenger: ModelRef,
    label: str | None,
) -> list[DataFrame]:
    """Agreement of the shadow predictions with the champion's (kind canary) and the
    challenger's realised quality (kind canary_quality), both under the challenger's version."""
    spec = config.features
    date_col, entity = spec.date_column, spec.entity_id.name
    selected = lake.partition_filter(date_col, dates=dates)
    champion = champion_preds.where(selected)
    if ARM in champion.columns:
        champion = champion.where(F.col(ARM) == CHAMPION_ARM)
    agreement = canary.agreement_metrics(
        champion, shadow, entity, [date_col], config.model.resolved_task == "binary"
    ).withColumn(SLICE, F.lit(ALL))
    out = [
        tagged(agreement, "canary", challenger.version, f"champion predictions vs {challenger.describe()}")
    ]
    if label is not None:
        slices = config.monitoring.slices
        labelled = shadow.join(
            feats.where(selected).select(entity, date_col, label, *slices), [entity, date_col]
        )
        quality = realised_quality(labelled, config.model.resolved_task, label, [date_col], slices)
        out.append(tagged(quality, "canary_quality", challenger.version, "shadow predictions", label))
    return out


def ab_part(
    current: DataFrame, label: str, date_col: str, targets: Sequence[dt.date], version: int, confidence: float
) -> DataFrame:
    """The arms' realised quality and their difference with a significance test (kind ab)."""
    rows = current.where(F.col(ARM).isNotNull() & lake.partition_filter(date_col, dates=targets))
    ab = canary.ab_comparison(rows, label, [date_col], confidence)
    return tagged(ab.withColumn("window_days", F.lit(1)), "ab", version, "arms", ARM)
