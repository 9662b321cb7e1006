"""The promotion gate: a pure decision from the challenger's and champion's holdout metrics."""

from __future__ import annotations

from dataclasses import dataclass

from mlops_spark.config import PromotionConfig

LOWER_IS_BETTER = frozenset({"rmse", "mae", "log_loss"})


@dataclass(frozen=True)
class Decision:
    promote: bool
    reason: str
    metric: str
    challenger: float
    champion: float | None


def decide(
    metric: str,
    challenger: dict[str, float],
    champion: dict[str, float] | None,
    config: PromotionConfig,
) -> Decision:
    """Promote only if the challenger passes every absolute threshold and beats the
    champion's `metric` by at least ``min_improvement`` (any passing first model wins)."""
    if metric not in challenger:
        raise KeyError(f"the challenger has no metric {metric!r} (it has {sorted(challenger)})")
    value = challenger[metric]
    for name, bound in sorted(config.thresholds.items()):
        got = challenger.get(name)
        if got is None:
            return Decision(
                False, f"threshold on {name!r}: the challenger has no such metric", metric, value, None
            )
        lower = name in LOWER_IS_BETTER
        if (lower and got > bound) or (not lower and got < bound):
            sign = "<=" if lower else ">="
            return Decision(
                False, f"fails threshold {name} {sign} {bound} (got {got:.4f})", metric, value, None
            )
    if champion is None:
        return Decision(True, "first model: passes every threshold", metric, value, None)
    base = champion[metric]
    gain = (base - value) if metric in LOWER_IS_BETTER else (value - base)
    if gain > config.min_improvement or (config.min_improvement == 0 and gain > 0):
        return Decision(
            True,
            f"beats the champion on {metric} by {gain:+.4f} (needed > {config.min_improvement})",
            metric,
            value,
            base,
        )
    return Decision(
        False,
        f"does not beat the champion on {metric}: {value:.4f} vs {base:.4f} "
        f"(gain {gain:+.4f}, needed > {config.min_improvement})",
        metric,
        value,
        base,
    )
