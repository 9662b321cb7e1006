"""The promotion gate: a pure decision from the challenger's and champion's holdout metrics.

No Spark, no MLflow: `decide` takes two metric dictionaries (both measured on the same
holdout rows by the promote job) and the configured rules, and says what to do and why.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from mlops_spark.config import PromotionConfig
from mlops_spark.errors import ConfigError
from mlops_spark.metrics import higher_is_better


@dataclass(frozen=True)
class Decision:
    """What the gate decided, on which metric, with both values and the reason in words."""

    promote: bool
    reason: str
    metric: str
    challenger: float
    champion: float | None
    challenger_metrics: Mapping[str, float] = field(default_factory=dict)
    champion_metrics: Mapping[str, float] | None = None


def _known(metrics: Mapping[str, float], name: str, where: str) -> None:
    if name not in metrics:
        raise ConfigError(
            f"{where}: no metric {name!r} is measured for this model (measured: {', '.join(sorted(metrics))})"
        )


def decide(
    metric: str,
    challenger: Mapping[str, float],
    champion: Mapping[str, float] | None,
    config: PromotionConfig,
) -> Decision:
    """Promote only if the challenger passes every absolute threshold and beats the
    champion's `metric` by at least ``min_improvement`` (strictly, when that is 0).

    Without a champion, a challenger that passes every threshold is promoted. Thresholds
    are floors for scores (areaUnderROC >= 0.6) and ceilings for errors (rmse <= 12).
    A metric or threshold name that the model does not measure is a config error.
    """
    _known(challenger, metric, "promotion.metric")
    for name in config.thresholds:
        _known(challenger, name, f"promotion.thresholds.{name}")
    value = challenger[metric]

    def result(promote: bool, reason: str, base: float | None) -> Decision:
        return Decision(
            promote,
            reason,
            metric,
            value,
            base,
            dict(challenger),
            None if champion is None else dict(champion),
        )

    for name, bound in sorted(config.thresholds.items()):
        got = challenger[name]
        lower = not higher_is_better(name)
        if (lower and got > bound) or (not lower and got < bound):
            sign = "<=" if lower else ">="
            return result(False, f"fails threshold {name} {sign} {bound} (got {got:.4f})", None)
    if champion is None:
        passed = "passes every threshold" if config.thresholds else "no thresholds configured"
        return result(True, f"first model: {passed}", None)
    _known(champion, metric, "promotion.metric (champion)")
    base = champion[metric]
    gain = value - base if higher_is_better(metric) else base - value
    margin = config.min_improvement
    if gain > 0 and gain >= margin:
        return result(
            True, f"beats the champion on {metric} by {gain:+.4f} (needed >= {margin:g} and > 0)", base
        )
    return result(
        False,
        f"does not beat the champion on {metric}: {value:.4f} vs {base:.4f} "
        f"(gain {gain:+.4f}, needed >= {margin:g} and > 0)",
        base,
    )
