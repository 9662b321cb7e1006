"""The hyperopt tuner: TPE search, early stop after rounds without progress, trials on the
driver (`Trials`) or as Spark tasks (`SparkTrials`, classic Spark only)."""

from __future__ import annotations

import functools
import logging
import math
import threading
import time
import warnings
from collections.abc import Mapping
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import numpy as np

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
    from pyspark.sql import SparkSession

log = logging.getLogger(__name__)

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
        except Exception as exc:  # hyperopt's own evaluation of its space: report the raw draws
            log.warning(
                "trial %s: cannot map %s onto the search space (%s); logging raw values",
                trial["tid"],
                vals,
                exc,
            )
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
