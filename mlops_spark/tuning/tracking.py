"""Tuning in MLflow: each trial a nested run of the training run, the search's summary on it."""

from __future__ import annotations

from collections.abc import Mapping

from mlops_spark.config import ModelConfig, TuningConfig
from mlops_spark.runtime import progress
from mlops_spark.tuning.interface import TrialCallback, TrialResult, TuningResult

# --------------------------------------------------------------------------- MLflow


def mlflow_trial_logger(
    parent_run_id: str, prefix: str = "val_", tags: Mapping[str, str] | None = None
) -> TrialCallback:
    """A callback that logs each trial as a nested run of ``parent_run_id`` and prints a line."""
    from mlops_spark import registry

    def log(trial: TrialResult) -> None:
        registry.log_child_run(
            parent_run_id,
            run_name=f"trial-{trial.number:03d}",
            params=trial.params,
            metrics={
                **{f"{prefix}{k}": v for k, v in trial.metrics.items()},
                **({"loss": trial.loss} if trial.loss is not None else {}),
            },
            tags={
                "mlops.tuning.trial": str(trial.number),
                "mlops.tuning.status": trial.status,
                **({"mlops.tuning.error": trial.error[:4000]} if trial.error else {}),
                **(tags or {}),
            },
            started=trial.started,
            ended=trial.ended or trial.started,
            failed=trial.status != "ok",
        )
        took = f" in {trial.seconds:.1f}s" if trial.seconds is not None else ""
        loss = f"loss {trial.loss:.5f}" if trial.loss is not None else f"FAILED ({trial.error})"
        progress(f"[tuning] trial {trial.number}: {loss}{took} {trial.params}")

    return log


def log_summary(parent_run_id: str, result: TuningResult, metric: str, kind: str, tuner: object) -> None:
    from mlops_spark import registry

    best = result.best
    registry.log_to_run(
        parent_run_id,
        params={f"tuning.best.{k}": v for k, v in best.params.items()},
        metrics={
            "tuning_trials": float(len(result.trials)),
            "tuning_failed_trials": float(len(result.trials) - len(result.succeeded)),
            "tuning_seconds": result.seconds,
            "tuning_trials_per_minute": result.trials_per_minute,
            f"tuning_best_val_{metric}": best.metrics.get(metric, float("nan")),
        },
        tags={
            "mlops.tuning.kind": kind,
            "mlops.tuning.tuner": type(tuner).__name__,
            "mlops.tuning.metric": metric,
            "mlops.tuning.stopped_early": str(result.stopped_early).lower(),
            "mlops.tuning.best_trial": str(best.number),
        },
    )


def active_run_id() -> str | None:
    import mlflow

    run = mlflow.active_run()
    return None if run is None else str(run.info.run_id)


def tuning_metric(model: ModelConfig, settings: TuningConfig, fallback: str | None) -> tuple[str, bool]:
    """The validation metric a search optimises and whether higher is better."""
    from mlops_spark.metrics import primary_metric

    where = "model.tuning.metric" if settings.metric else "promotion.metric"
    return primary_metric(model.resolved_task, settings.metric or fallback, where=where)
