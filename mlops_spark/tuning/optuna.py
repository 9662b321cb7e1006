"""The Optuna tuner: TPE search (Optuna's sampler), early stop after rounds without
progress, trials one after another on the driver.

It implements the same `Tuner` interface as `HyperoptTuner`, from the same config
(`model.tuning`, with ``tuner: optuna``): the same search-space kinds, the same seed rule
(a given seed gives the same trials), failed trials reported and the search going on. What it
does not do is run trials as Spark tasks (hyperopt's `SparkTrials`): a config that asks for
``parallelism`` above 1 with it is refused at load. Optuna works on a Spark Connect client,
where `SparkTrials` does not.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, NoReturn

from mlops_spark.config import SearchDimension, TuningConfig
from mlops_spark.errors import ConfigError
from mlops_spark.tuning.interface import (
    Objective,
    TrialCallback,
    TrialResult,
    TuningResult,
    default_startup_trials,
)

if TYPE_CHECKING:
    import optuna


class _TrialFailed(Exception):
    """Raised inside Optuna's objective for a trial that failed (caught by Optuna, which
    marks the trial FAIL and goes on)."""


def suggest(trial: optuna.Trial, space: Mapping[str, SearchDimension]) -> dict[str, Any]:
    """One point of the config's search space, drawn through Optuna's ``suggest_*``
    (``quniform`` on whole numbers gives ints, as with hyperopt)."""
    params: dict[str, Any] = {}
    for name, dim in space.items():
        if dim.kind == "choice":
            params[name] = dim.options[trial.suggest_categorical(name, list(range(len(dim.options))))]
            continue
        assert dim.low is not None and dim.high is not None
        if dim.kind == "uniform":
            params[name] = trial.suggest_float(name, dim.low, dim.high)
        elif dim.kind == "loguniform":
            params[name] = trial.suggest_float(name, dim.low, dim.high, log=True)
        else:
            assert dim.q is not None
            if all(float(v).is_integer() for v in (dim.low, dim.high, dim.q)):
                params[name] = trial.suggest_int(name, int(dim.low), int(dim.high), step=int(dim.q))
            else:
                params[name] = trial.suggest_float(name, dim.low, dim.high, step=dim.q)
    return params


def fail(trial: optuna.Trial, error: str) -> NoReturn:
    """End a trial as failed with ``error`` (Optuna records the state, the search goes on)."""
    trial.set_user_attr("error", error)
    if "ended" not in trial.user_attrs:
        trial.set_user_attr("ended", time.time())
    raise _TrialFailed(error)


class OptunaTuner:
    """TPE search with Optuna, on the driver (pyspark.ml fits are already distributed)."""

    def minimize(
        self,
        objective: Objective,
        settings: TuningConfig,
        seed: int,
        on_trial: TrialCallback | None = None,
    ) -> TuningResult:
        try:
            import optuna
        except ImportError as exc:
            raise ConfigError(
                "model.tuning.tuner is 'optuna' but optuna is not installed: "
                "pip install 'mlops-spark[optuna]'"
            ) from exc
        if not settings.search_space:
            raise ConfigError("model.tuning.search_space is empty: nothing to tune")
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        startup = settings.startup_trials or default_startup_trials(settings.max_evals)
        study = optuna.create_study(
            direction="minimize", sampler=optuna.samplers.TPESampler(seed=seed, n_startup_trials=startup)
        )
        results: list[TrialResult] = []
        rounds = settings.early_stop_rounds
        state = {"best": math.inf, "since": 0, "stopped": False}

        def run(trial: optuna.Trial) -> float:
            params = suggest(trial, settings.search_space)
            trial.set_user_attr("params", params)
            trial.set_user_attr("started", time.time())
            try:
                outcome = objective(params)
            except Exception as exc:
                fail(trial, f"{type(exc).__name__}: {exc}")
            trial.set_user_attr("ended", time.time())
            trial.set_user_attr("metrics", {k: float(v) for k, v in outcome.metrics.items()})
            if not math.isfinite(outcome.loss):
                fail(trial, f"the loss is not finite ({outcome.loss})")
            return float(outcome.loss)

        def finished(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
            ok = trial.state == optuna.trial.TrialState.COMPLETE and trial.value is not None
            attrs = trial.user_attrs
            error = None if ok else str(attrs.get("error") or "the trial did not finish")
            result = TrialResult(
                number=trial.number,
                params=dict(attrs.get("params") or trial.params),
                loss=float(trial.value) if ok and trial.value is not None else None,
                metrics=dict(attrs.get("metrics") or {}),
                status="ok" if ok else "failed",
                error=error,
                started=attrs.get("started"),
                ended=attrs.get("ended"),
            )
            results.append(result)
            if on_trial is not None:
                on_trial(result)
            loss = result.loss if result.loss is not None else math.inf
            if loss < state["best"]:
                state["best"], state["since"] = loss, 0
            else:  # a failed trial counts as a round without progress, as with hyperopt
                state["since"] += 1
            if rounds and state["since"] >= rounds and len(results) < settings.max_evals:
                state["stopped"] = True
                study.stop()

        started = time.time()
        study.optimize(run, n_trials=settings.max_evals, catch=(_TrialFailed,), callbacks=[finished])
        return TuningResult(tuple(results), bool(state["stopped"]), time.time() - started)
