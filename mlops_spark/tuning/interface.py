"""Hyperparameter search behind a small interface.

`Tuner` is the seam: it minimises a loss over the configured search space and reports
every trial. Two ship, picked by `model.tuning.tuner`: `HyperoptTuner` (TPE, early stop
after rounds without progress, `SparkTrials` for parallel trials) and `OptunaTuner` (TPE,
the same early stop, trials on the driver). Another search library plugs in by implementing
`Tuner.minimize` (hyperopt is in maintenance mode, and its `SparkTrials` needs a classic
Spark driver: it does not work over Spark Connect).

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

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from mlops_spark.config import TuningConfig
from mlops_spark.errors import JobFailed

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


def default_startup_trials(max_evals: int) -> int:
    """Random trials before TPE starts modelling (both tuners): a third of the budget, 2 to 20."""
    return min(20, max(2, max_evals // 3))


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
