"""Hyperparameter search behind a small interface.

`Tuner` is the seam: it minimises a loss over the configured search space and reports
every trial. `HyperoptTuner` (TPE, early stop after rounds without progress) is the one
shipped; another search library can replace it by implementing `Tuner.minimize`
(hyperopt is in maintenance mode, and its `SparkTrials` needs a classic Spark driver:
it does not work over Spark Connect).

Two ways to use it:

* `tune_spark_pipeline` tunes a pyspark.ml estimator. Each fit is already distributed,
  so trials run one after another on the driver; featurisation is fitted once and its
  output cached, so a trial only fits the estimator.
* `tune_sklearn` tunes a single-node scikit-learn learner on pandas data. Each trial is
  one Spark task (`SparkTrials`), so ``tuning.parallelism`` trials run at once. The
  objective is pickled to the executors, which need scikit-learn, hyperopt and this
  package installed (a cluster gets them with the job's Python environment).

Every finished trial becomes a nested MLflow run under the training run (logged from the
driver with the times it really ran), and the search's summary is logged on the parent.
"""

from __future__ import annotations

import functools
import importlib
import math
import threading
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, Literal, Protocol

import numpy as np

from mlops_spark.config import AppConfig, ModelConfig, SearchDimension, SklearnConfig, TuningConfig
from mlops_spark.errors import ConfigError, JobFailed
from mlops_spark.runtime import progress

if TYPE_CHECKING:
    import pandas as pd
    from pyspark.sql import DataFrame, SparkSession

    from mlops_spark.runtime import JobContext

# --------------------------------------------------------------------------- the interface


@dataclass(frozen=True)
class TrialOutcome:
    """What an objective returns: the loss to minimise and the metrics behind it."""

    loss: float
    metrics: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class TrialResult:
    """One finished trial."""

    number: int
    params: dict[str, Any]
    loss: float | None
    metrics: dict[str, float]
    status: Literal["ok", "failed"]
    error: str | None = None
    started: float | None = None
    ended: float | None = None

    @property
    def seconds(self) -> float | None:
        return None if self.started is None or self.ended is None else self.ended - self.started


@dataclass(frozen=True)
class TuningResult:
    """Every trial in the order they finished, and whether the search stopped early."""

    trials: tuple[TrialResult, ...]
    stopped_early: bool
    seconds: float

    @property
    def succeeded(self) -> list[TrialResult]:
        return [t for t in self.trials if t.status == "ok" and t.loss is not None]

    @property
    def best(self) -> TrialResult:
        """The trial with the lowest loss (the earliest one on ties)."""
        ok = self.succeeded
        if not ok:
            first = next((t.error for t in self.trials if t.error), "no trial ran")
            raise JobFailed(f"tuning: all {len(self.trials)} trial(s) failed; the first error: {first}")
        return min(ok, key=lambda t: (t.loss, t.number))

    @property
    def best_params(self) -> dict[str, Any]:
        return dict(self.best.params)

    @property
    def trials_per_minute(self) -> float:
        return 60.0 * len(self.trials) / self.seconds if self.seconds > 0 else float("nan")


Objective = Callable[[dict[str, Any]], TrialOutcome]
"""Params -> outcome. Must be picklable when a tuner runs trials on executors."""

TrialCallback = Callable[[TrialResult], None]


class Tuner(Protocol):
    """Minimise ``objective`` over ``settings.search_space`` within ``settings.max_evals``
    trials, calling ``on_trial`` on the driver as each trial finishes."""

    def minimize(
        self,
        objective: Objective,
        settings: TuningConfig,
        seed: int,
        on_trial: TrialCallback | None = None,
    ) -> TuningResult: ...


# --------------------------------------------------------------------------- hyperopt


def _integral(*values: float | None) -> bool:
    return all(v is not None and float(v).is_integer() for v in values)


def hyperopt_space(space: Mapping[str, SearchDimension]) -> dict[str, Any]:
    """Config dimensions -> hyperopt expressions (``quniform`` on whole numbers gives ints)."""
    from hyperopt import hp
    from hyperopt.pyll import scope

    out: dict[str, Any] = {}
    for name, dim in space.items():
        if dim.kind == "choice":
            out[name] = hp.choice(name, list(dim.options))
            continue
        assert dim.low is not None and dim.high is not None
        if dim.kind == "uniform":
            out[name] = hp.uniform(name, dim.low, dim.high)
        elif dim.kind == "loguniform":
            out[name] = hp.loguniform(name, math.log(dim.low), math.log(dim.high))
        else:
            expr = hp.quniform(name, dim.low, dim.high, dim.q)
            out[name] = scope.int(expr) if _integral(dim.low, dim.high, dim.q) else expr
    return out


def default_startup_trials(max_evals: int) -> int:
    """Random trials before TPE starts modelling: a third of the budget, 2 to 20."""
    return min(20, max(2, max_evals // 3))


def _native(value: Any) -> Any:
    """numpy scalars -> Python values, so params log, pickle and convert cleanly."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, tuple | list):
        return type(value)(_native(v) for v in value)
    return value


def _run_objective(objective: Objective, params: dict[str, Any]) -> dict[str, Any]:
    """Run one trial; a failing trial is reported (status fail), not raised, so one bad
    point does not end the search. Runs wherever hyperopt evaluates (driver or executor)."""
    from hyperopt import STATUS_FAIL, STATUS_OK

    started = time.time()
    try:
        outcome = objective({k: _native(v) for k, v in params.items()})
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}"
        return {"status": STATUS_FAIL, "error": error, "started": started, "ended": time.time()}
    ended = time.time()
    metrics = {k: float(v) for k, v in outcome.metrics.items()}
    if not math.isfinite(outcome.loss):
        return {
            "status": STATUS_FAIL,
            "error": f"the loss is not finite ({outcome.loss})",
            "metrics": metrics,
            "started": started,
            "ended": ended,
        }
    return {
        "status": STATUS_OK,
        "loss": float(outcome.loss),
        "metrics": metrics,
        "started": started,
        "ended": ended,
    }


class _TrialWatcher:
    """hyperopt's ``early_stop_fn`` used as a per-trial hook on the driver.

    It turns each newly finished trial into a `TrialResult`, hands it to ``on_trial`` and
    feeds it to hyperopt's ``no_progress_loss``. It looks only at finished trials, so it
    also works with `SparkTrials`, where the newest trial is usually still running
    (``no_progress_loss`` alone reads the newest trial's loss and breaks there). A failed
    trial counts as a round without progress.
    """

    def __init__(self, space: dict[str, Any], rounds: int, on_trial: TrialCallback | None) -> None:
        from hyperopt.early_stop import no_progress_loss

        self.space = space
        self.on_trial = on_trial
        self.stop_rule = no_progress_loss(rounds) if rounds > 0 else None
        self.stop_state: list[Any] = []
        self.results: list[TrialResult] = []
        self.seen: set[int] = set()
        self.stopped = False
        self.callback_error: BaseException | None = None
        self._lock = threading.Lock()

    def __call__(self, trials: Any, *_: Any) -> tuple[bool, list[Any]]:
        with self._lock:
            for trial in self._newly_finished(trials):
                self._take(trial)
            return self.stopped or self.callback_error is not None, []

    def _newly_finished(self, trials: Any) -> list[dict[str, Any]]:
        from hyperopt import JOB_STATE_DONE, JOB_STATE_ERROR

        done = [
            t
            for t in list(trials.trials)
            if t["state"] in (JOB_STATE_DONE, JOB_STATE_ERROR) and t["tid"] not in self.seen
        ]
        return sorted(done, key=lambda t: (t["result"].get("ended") or math.inf, t["tid"]))

    def _take(self, trial: dict[str, Any]) -> None:
        from hyperopt import JOB_STATE_DONE, STATUS_OK, space_eval

        self.seen.add(trial["tid"])
        vals = {k: v[0] for k, v in trial["misc"].get("vals", {}).items() if v}
        try:
            params = {k: _native(v) for k, v in space_eval(self.space, vals).items()}
        except Exception:
            params = {k: _native(v) for k, v in vals.items()}
        res = trial.get("result") or {}
        ok = res.get("status") == STATUS_OK and trial["state"] == JOB_STATE_DONE
        error = res.get("error")
        if not ok and error is None:
            misc_error = trial["misc"].get("error")
            error = ": ".join(str(x) for x in misc_error) if misc_error else "the trial did not finish"
        result = TrialResult(
            number=int(trial["tid"]),
            params=params,
            loss=float(res["loss"]) if ok else None,
            metrics=dict(res.get("metrics") or {}),
            status="ok" if ok else "failed",
            error=None if ok else str(error),
            started=res.get("started"),
            ended=res.get("ended"),
        )
        self.results.append(result)
        if self.on_trial is not None and self.callback_error is None:
            try:
                self.on_trial(result)
            except BaseException as exc:  # re-raised after fmin: never kill hyperopt's threads
                self.callback_error = exc
        if self.stop_rule is not None and not self.stopped:
            loss = result.loss if result.loss is not None else math.inf
            view = SimpleNamespace(trials=[{"result": {"loss": loss}}])
            stop, self.stop_state = self.stop_rule(view, *self.stop_state)
            self.stopped = bool(stop)


class HyperoptTuner:
    """TPE search with hyperopt.

    ``spark=None``: trials run one after another in this process (right for pyspark.ml,
    whose fits are already distributed). With a session: `SparkTrials`, each trial one
    Spark task, ``settings.parallelism`` at a time (right for single-node learners).
    """

    def __init__(self, spark: SparkSession | None = None) -> None:
        self.spark = spark

    def minimize(
        self,
        objective: Objective,
        settings: TuningConfig,
        seed: int,
        on_trial: TrialCallback | None = None,
    ) -> TuningResult:
        from hyperopt import Trials, fmin, tpe
        from hyperopt.exceptions import AllTrialsFailed

        if not settings.search_space:
            raise ConfigError("model.tuning.search_space is empty: nothing to tune")
        space = hyperopt_space(settings.search_space)
        startup = settings.startup_trials or default_startup_trials(settings.max_evals)
        algo = functools.partial(tpe.suggest, n_startup_jobs=startup)
        trials: Any
        if self.spark is not None:
            from hyperopt import SparkTrials

            # pyspark warns once per trial thread that hyperopt starts; nothing to act on
            warnings.filterwarnings("ignore", message="Spark session is not provided", category=UserWarning)
            trials = SparkTrials(parallelism=settings.parallelism, spark_session=self.spark)
        else:
            trials = Trials()
        watcher = _TrialWatcher(space, settings.early_stop_rounds, on_trial)
        started = time.time()
        try:
            fmin(
                functools.partial(_run_objective, objective),
                space,
                algo=algo,
                max_evals=settings.max_evals,
                trials=trials,
                rstate=np.random.default_rng(seed),
                early_stop_fn=watcher,
                show_progressbar=False,
                verbose=False,
                return_argmin=False,
            )
        except AllTrialsFailed:
            pass  # reported by TuningResult.best with the trials' own errors
        trials.refresh()
        watcher(trials)  # trials that finished after hyperopt's last check
        if watcher.callback_error is not None:
            raise watcher.callback_error
        stopped_early = watcher.stopped and len(watcher.results) < settings.max_evals
        return TuningResult(tuple(watcher.results), stopped_early, time.time() - started)


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


def _log_summary(parent_run_id: str, result: TuningResult, metric: str, kind: str) -> None:
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
            "mlops.tuning.metric": metric,
            "mlops.tuning.stopped_early": str(result.stopped_early).lower(),
            "mlops.tuning.best_trial": str(best.number),
        },
    )


def _active_run_id() -> str | None:
    import mlflow

    run = mlflow.active_run()
    return None if run is None else str(run.info.run_id)


def tuning_metric(model: ModelConfig, settings: TuningConfig, fallback: str | None) -> tuple[str, bool]:
    """The validation metric a search optimises and whether higher is better."""
    from mlops_spark.training import primary_metric

    where = "model.tuning.metric" if settings.metric else "promotion.metric"
    return primary_metric(model, settings.metric or fallback, where=where)


# --------------------------------------------------------------------------- pyspark.ml


def tune_spark_pipeline(
    ctx: JobContext,
    config: AppConfig,
    train_df: DataFrame,
    val_df: DataFrame,
    label: str,
    tuner: Tuner | None = None,
) -> dict[str, Any]:
    """Search the estimator's params on the validation range; return the best ones.

    The featurisation stages do not depend on the searched params, so they are fitted
    once on the train rows and their vectors cached; each trial fits only the estimator.
    The caller refits the whole pipeline with the returned params.
    """
    from pyspark.ml import Pipeline
    from pyspark.sql import functions as F

    from mlops_spark.training import (
        FEATURES_VECTOR,
        WEIGHT,
        check_estimator_params,
        featurizer_stages,
        make_estimator,
        scored_metrics,
        with_balanced_weights,
    )

    model_cfg, seed = config.model, config.split.seed
    settings = model_cfg.tuning
    if settings is None or not settings.search_space:
        raise ConfigError("model.tuning.search_space is empty: nothing to tune")
    check_estimator_params(model_cfg, list(settings.search_space), "model.tuning.search_space")
    metric, higher = tuning_metric(model_cfg, settings, config.promotion.metric)

    if model_cfg.class_weight == "balanced" and model_cfg.task == "classification":
        if WEIGHT not in train_df.columns:
            share = train_df.agg(F.avg(label)).first()
            train_df = with_balanced_weights(train_df, label, float((share and share[0]) or 0.0))
    featurizer = Pipeline(stages=featurizer_stages(model_cfg)).fit(train_df)
    keep = [FEATURES_VECTOR, label, *([WEIGHT] if WEIGHT in train_df.columns else [])]
    train_vec = featurizer.transform(train_df).select(*keep).persist()
    val_vec = featurizer.transform(val_df).select(FEATURES_VECTOR, label).persist()
    n_train, n_val = train_vec.count(), val_vec.count()
    if not n_val:
        raise JobFailed("tuning: the validation range has no labelled rows (see split.validation)")

    def objective(params: dict[str, Any]) -> TrialOutcome:
        fitted = make_estimator(model_cfg, label, params, seed).fit(train_vec)
        metrics = scored_metrics(fitted.transform(val_vec), model_cfg, label)
        return TrialOutcome(-metrics[metric] if higher else metrics[metric], metrics)

    parent = _active_run_id()
    on_trial = mlflow_trial_logger(parent) if parent else None
    ctx.say(
        f"tuning {model_cfg.estimator}: up to {settings.max_evals} trials on {n_train:,} train / "
        f"{n_val:,} validation rows, optimising validation {metric}"
    )
    try:
        result = (tuner or HyperoptTuner()).minimize(objective, settings, seed, on_trial)
    finally:
        train_vec.unpersist()
        val_vec.unpersist()
    best = result.best
    if parent:
        _log_summary(parent, result, metric, "spark")
    stop = ", stopped early" if result.stopped_early else ""
    ctx.say(
        f"tuned: {len(result.trials)} trials in {result.seconds:.0f}s{stop}; best trial {best.number} "
        f"validation {metric} = {best.metrics.get(metric, float('nan')):.4f} with {best.params}"
    )
    ctx.result["tuning"] = result
    return best.params


# --------------------------------------------------------------------------- scikit-learn


def import_learner(path: str) -> type:
    """The class at an import path such as ``sklearn.ensemble.RandomForestClassifier``."""
    module_name, _, attr = path.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"model.sklearn.estimator: cannot import {path!r} ({exc})") from None
    if not isinstance(cls, type):
        raise ConfigError(f"model.sklearn.estimator: {path!r} is not a class")
    return cls


def make_learner(learner: SklearnConfig, params: Mapping[str, Any] | None = None, seed: int = 42) -> Any:
    """An unfitted learner with config params, then ``params``; ``random_state`` = seed
    unless set. Unknown parameter names are a ConfigError."""
    cls = import_learner(learner.estimator)
    est = cls()
    valid = set(est.get_params(deep=False))
    merged = {
        **({"random_state": seed} if "random_state" in valid else {}),
        **learner.params,
        **(params or {}),
    }
    for name in merged:
        if name not in valid:
            raise ConfigError(
                f"model.sklearn.params.{name}: {learner.estimator} has no parameter {name!r} "
                f"(it has: {', '.join(sorted(valid))})"
            )
    return est.set_params(**merged)


def sklearn_metrics(
    model: Any,
    features: pd.DataFrame,
    label: pd.Series,
    task: Literal["classification", "regression"],
    threshold: float = 0.5,
) -> dict[str, float]:
    """The same metric names as the Spark path (binary labels 0/1 for classification)."""
    from sklearn import metrics as m

    y = np.asarray(label, dtype=float)
    n = float(len(y))
    if task == "regression":
        pred = np.asarray(model.predict(features), dtype=float)
        return {
            "rmse": float(np.sqrt(m.mean_squared_error(y, pred))),
            "mae": float(m.mean_absolute_error(y, pred)),
            "r2": float(m.r2_score(y, pred)),
            "rows": n,
        }
    classes = [float(c) for c in model.classes_]
    if 1.0 not in classes:
        raise JobFailed(f"tune_sklearn: the learner saw no positive (1) label; classes {classes}")
    p = np.asarray(model.predict_proba(features))[:, classes.index(1.0)]
    hit = (p > threshold).astype(float)
    return {
        "areaUnderROC": float(m.roc_auc_score(y, p)),
        "areaUnderPR": float(m.average_precision_score(y, p)),
        "log_loss": float(m.log_loss(y, np.clip(p, 1e-15, 1 - 1e-15), labels=[0.0, 1.0])),
        "accuracy": float(m.accuracy_score(y, hit)),
        "precision": float(m.precision_score(y, hit, zero_division=0)),
        "recall": float(m.recall_score(y, hit, zero_division=0)),
        "f1": float(m.f1_score(y, hit, zero_division=0)),
        "positive_rate": float(y.mean()),
        "rows": n,
    }


def balanced_sample_weight(label: pd.Series) -> np.ndarray:
    """The Spark path's class weights: 0.5 / share of the row's class."""
    y = np.asarray(label, dtype=float)
    share = float(y.mean())
    if not 0.0 < share < 1.0:
        raise JobFailed(f"cannot balance classes: positive share is {share:.3f}")
    return np.where(y == 1.0, 0.5 / share, 0.5 / (1.0 - share))


@dataclass(frozen=True)
class SklearnTuning:
    """The search and the learner refitted on the train rows with the best params."""

    result: TuningResult
    model: Any
    metric: str

    @property
    def best_params(self) -> dict[str, Any]:
        return self.result.best_params


def _sklearn_objective(
    learner: SklearnConfig,
    train: tuple[pd.DataFrame, pd.Series],
    validation: tuple[pd.DataFrame, pd.Series],
    task: Literal["classification", "regression"],
    metric: str,
    higher: bool,
    threshold: float,
    seed: int,
    sample_weight: np.ndarray | None,
) -> Objective:
    def objective(params: dict[str, Any]) -> TrialOutcome:
        est = make_learner(learner, params, seed)
        if sample_weight is not None:
            est.fit(train[0], train[1], sample_weight=sample_weight)
        else:
            est.fit(train[0], train[1])
        metrics = sklearn_metrics(est, validation[0], validation[1], task, threshold)
        return TrialOutcome(-metrics[metric] if higher else metrics[metric], metrics)

    return objective


def tune_sklearn(
    spark: SparkSession | None,
    model: ModelConfig,
    train: tuple[pd.DataFrame, pd.Series],
    validation: tuple[pd.DataFrame, pd.Series],
    metric: str | None = None,
    seed: int = 42,
    tuner: Tuner | None = None,
) -> SklearnTuning:
    """Tune ``model.sklearn`` over ``model.tuning`` on pandas (features, label) pairs.

    With a Spark session the trials run on Spark through `SparkTrials`,
    ``model.tuning.parallelism`` at a time; without one, one after another here. Class
    weights follow ``model.class_weight``; the decision threshold ``model.threshold``.
    Inside an active MLflow run each trial is logged as a nested run. The best params are
    refitted on the train rows.
    """
    learner, settings = model.sklearn, model.tuning
    if learner is None:
        raise ConfigError("model.sklearn is not configured (an estimator import path and params)")
    if settings is None or not settings.search_space:
        raise ConfigError("model.tuning.search_space is empty: nothing to tune")
    probe = make_learner(learner, seed=seed)
    unknown = sorted(set(settings.search_space) - set(probe.get_params(deep=False)))
    if unknown:
        raise ConfigError(
            f"model.tuning.search_space.{unknown[0]}: {learner.estimator} has no parameter {unknown[0]!r}"
        )
    name, higher = tuning_metric(model, settings, metric)
    weights = (
        balanced_sample_weight(train[1])
        if model.class_weight == "balanced" and model.task == "classification"
        else None
    )
    objective = _sklearn_objective(
        learner, train, validation, model.task, name, higher, model.threshold, seed, weights
    )
    parent = _active_run_id()
    on_trial = mlflow_trial_logger(parent) if parent else None
    result = (tuner or HyperoptTuner(spark)).minimize(objective, settings, seed, on_trial)
    best = make_learner(learner, result.best_params, seed)
    if weights is not None:
        best.fit(train[0], train[1], sample_weight=weights)
    else:
        best.fit(train[0], train[1])
    if parent:
        _log_summary(parent, result, name, "sklearn")
    return SklearnTuning(result=result, model=best, metric=name)


__all__ = [
    "HyperoptTuner",
    "Objective",
    "SklearnTuning",
    "TrialOutcome",
    "TrialResult",
    "Tuner",
    "TuningResult",
    "hyperopt_space",
    "tune_sklearn",
    "tune_spark_pipeline",
]
