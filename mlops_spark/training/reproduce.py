"""``train --reproduce RUN_ID``: refit from what a run recorded and prove the metrics agree."""

from __future__ import annotations

from mlops_spark import registry
from mlops_spark.config import AppConfig, resolved_dict, validate_config
from mlops_spark.errors import JobFailed


def load_run_for_reproduction(config: AppConfig, run_id: str) -> tuple[AppConfig, int, dict[str, float]]:
    """The config, feature-table version and test/validation metrics a run recorded.

    The recorded config is used except for where things run (``spark``, ``mlflow``): the
    reproduction is tracked in the store it was found in, on this machine's Spark.
    """
    client = registry.configure(config.mlflow)
    recorded, record = registry.recorded_config(client, run_id)
    if record.features_version is None:
        raise JobFailed(f"--reproduce: run {run_id} recorded no features version")
    current = resolved_dict(config)
    recorded.update({key: current[key] for key in ("spark", "mlflow")})
    metrics = {k: v for k, v in record.metrics.items() if k.startswith(("test_", "val_"))}
    return validate_config(recorded, default_origin=f"run {run_id}"), record.features_version, metrics


def compare_metrics(
    run_id: str, original: dict[str, float], metrics: dict[str, float], new_run_id: str, tolerance: float
) -> tuple[float, str, JobFailed | None]:
    """(largest absolute difference, summary line, the failure when past ``tolerance``)."""
    missing = sorted(set(original) - set(metrics))
    diffs = {k: abs(metrics[k] - v) for k, v in original.items() if k in metrics}
    worst = max(diffs.values(), default=0.0)
    off = {k: d for k, d in diffs.items() if d > tolerance}
    if off or missing:
        detail = ", ".join(f"{k}: {original[k]:.12g} -> {metrics[k]:.12g}" for k in sorted(off))
        if missing:
            detail += f"{'; ' if detail else ''}not measured again: {', '.join(missing)}"
        failure = JobFailed(
            f"--reproduce {run_id}: run {new_run_id} does not reproduce it within {tolerance:g} ({detail})"
        )
        return worst, "", failure
    return (
        worst,
        (
            f"reproduced run {run_id} as run {new_run_id}: {len(diffs)} metrics agree within "
            f"{tolerance:g} (largest difference {worst:.3g})"
        ),
        None,
    )
