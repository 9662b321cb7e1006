"""The one package that talks to MLflow.

* `tracking`: which store, experiments, runs, nested runs, batch logging.
* `models`: registered versions, aliases, tags, loading and shipping models.
* `lineage`: what a training run records about its data, config and code, and reading it back.
"""

from __future__ import annotations

from mlops_spark.registry.lineage import (
    CONFIG_ARTIFACT,
    FEATURES_VERSION_TAG,
    REPRODUCES_TAG,
    TrainingRecord,
    log_lineage,
    model_requirements,
    recorded_config,
    run_tags,
    training_record,
    training_tags,
)
from mlops_spark.registry.models import (
    CHALLENGER,
    CHAMPION,
    STATUS_TAG,
    ModelRef,
    load_sklearn_model,
    load_spark_model,
    model_description,
    resolve,
    set_alias,
    set_version_tags,
    ship_model,
    try_resolve,
    version_tags,
)
from mlops_spark.registry.tracking import (
    check_server,
    child_runs,
    configure,
    ensure_experiment,
    git_commit,
    log_child_run,
    log_to_run,
    start_run,
)

__all__ = [
    "CHALLENGER",
    "CHAMPION",
    "CONFIG_ARTIFACT",
    "FEATURES_VERSION_TAG",
    "REPRODUCES_TAG",
    "STATUS_TAG",
    "ModelRef",
    "TrainingRecord",
    "check_server",
    "child_runs",
    "configure",
    "ensure_experiment",
    "git_commit",
    "load_sklearn_model",
    "load_spark_model",
    "log_child_run",
    "log_lineage",
    "log_to_run",
    "model_description",
    "model_requirements",
    "recorded_config",
    "resolve",
    "run_tags",
    "set_alias",
    "set_version_tags",
    "ship_model",
    "start_run",
    "training_record",
    "training_tags",
    "try_resolve",
    "version_tags",
]
