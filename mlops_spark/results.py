"""What each job returns: one typed result per job (in `JobRun.result`).

Callers (the pipeline, retrain, notebooks, tests) read these fields instead of string keys,
so a renamed or missing field is a type error, not a silent ``None``.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    import pandas as pd

    from mlops_spark.promotion import Decision
    from mlops_spark.registry import ModelRef
    from mlops_spark.tuning import TuningResult


@dataclass(frozen=True)
class IngestResult:
    tables: tuple[str, ...]
    """The bronze tables written."""


@dataclass(frozen=True)
class TableCounts:
    read: int
    silver: int
    quarantine: int


@dataclass(frozen=True)
class ValidateResult:
    rows: dict[str, TableCounts] = field(default_factory=dict)
    """Per source table: rows read, passed to silver, quarantined."""
    rule_counts: dict[str, dict[str, int]] = field(default_factory=dict)
    """Per source table: rows that failed each rule."""


@dataclass(frozen=True)
class FeaturesResult:
    partitions: tuple[dt.date, ...] = ()
    rows: int = 0


@dataclass(frozen=True)
class TrainResult:
    run_id: str
    model: ModelRef | None
    """The registered version (None for a reproduction, which is never registered)."""
    metrics: dict[str, float]
    params: dict[str, Any]
    importances: dict[str, float] = field(default_factory=dict)
    tuning: TuningResult | None = None
    reproduction_max_abs_diff: float | None = None
    task: str = "binary"
    """What the model predicts (binary, multiclass or regression), recorded with it."""


PromotionOutcome = Literal[
    "nothing",
    "refused",
    "promoted",
    "dry_run",
    "pending",
    "approved",
    "rejected",
    "rollback",
    "canary_refused",
]


@dataclass(frozen=True)
class PromoteResult:
    decision: PromotionOutcome
    challenger: int | None = None
    champion: int | None = None
    """The champion version after the job (rollback/approve) or compared against (gate)."""
    previous: int | None = None
    detail: Decision | None = None


@dataclass(frozen=True)
class ScoreResult:
    scored_partitions: int
    predictions: int = 0
    method: str | None = None
    ab_challenger_version: int | None = None


@dataclass(frozen=True)
class MonitorResult:
    monitored_partitions: int
    alerts: int = 0
    warnings: int = 0
    report: str | None = None
    newest: dt.date | None = None
    """The newest partition this run monitored."""
    newest_alerts: int = 0
    """Alerts on ``newest`` (``monitor --fail-on-alert`` exits 3 when there are any)."""


@dataclass(frozen=True)
class RetrainResult:
    decision: PromotionOutcome
    rule: str | None = None
    challenger: int | None = None


@dataclass(frozen=True)
class TrainSegmentedResult:
    run_id: str
    model: ModelRef
    metrics: dict[str, float]
    segments: pd.DataFrame
    fits: Any
    """The per-segment fit results (`mlops_spark.segmented.fitting.SegmentFits`)."""
