"""The promotion gate: `decision` decides (pure), `actions` evaluates and moves aliases."""

from __future__ import annotations

from mlops_spark.promotion.decision import Decision, decide

__all__ = ["Decision", "decide"]
