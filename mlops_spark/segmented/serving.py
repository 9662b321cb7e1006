"""Logging the segmented model to MLflow as ONE model with two flavours that share the
routing code: ``python_function`` (`SegmentedModel`) and ``spark`` (the router stage)."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import Callable
from typing import Any

import pandas as pd
from mlflow.pyfunc.model import PythonModel

from mlops_spark.errors import JobFailed, MissingColumnError
from mlops_spark.segmented.estimators import importable_everywhere
from mlops_spark.segmented.router import SegmentRouter
from mlops_spark.segmented.routing import SegmentModels, route_predict
from mlops_spark.segmented.spec import RouteSpec


class SegmentedModel(PythonModel):
    """The python_function flavour: routes pandas rows to their segment's model.

    Loading needs this package, scikit-learn and the packages of the estimators (a user's
    own estimator code travels inside the pickled models)."""

    def __init__(self, route: RouteSpec) -> None:
        self.route = route
        self._models: SegmentModels | None = None

    def load_context(self, context: Any) -> None:
        table = pd.read_parquet(context.artifacts["segment_models"])
        self._models = SegmentModels.from_blobs(dict(zip(table["segment"], table["model"], strict=True)))

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> Any:
        if self._models is None:
            raise JobFailed("segmented model: predict() before load_context(); load it with mlflow.pyfunc")
        frame = model_input if isinstance(model_input, pd.DataFrame) else pd.DataFrame(model_input)
        missing = [c for c in [self.route.segment_column, *self.route.inputs] if c not in frame.columns]
        if missing:
            raise MissingColumnError("input of the segmented model", missing[0], list(frame.columns))
        return route_predict(self._models, frame, self.route)


def pip_requirements(factory: Callable[..., Any] | None = None) -> list[str]:
    """Pinned requirements of a logged segmented model (plus the estimator's package)."""
    from importlib import metadata

    names = ["mlflow", "scikit-learn", "cloudpickle", "pandas", "pyarrow", "pyspark", "mlops-spark"]
    module = getattr(factory, "__module__", "") or ""
    top = module.split(".")[0]
    if top and importable_everywhere(module) and top not in sys.stdlib_module_names:
        names += metadata.packages_distributions().get(top, [])
    out: list[str] = []
    for name in dict.fromkeys(names):
        try:
            out.append(f"{name}=={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            continue
    return out


class _SegmentedFlavor:
    """What `mlflow.models.Model.log` calls to write the model folder: the pyfunc flavour
    (SegmentedModel + the models as Parquet) and the spark flavour (the router stage)."""

    __name__ = "mlops_spark.segmented"

    @staticmethod
    def save_model(
        path: str,
        mlflow_model: Any,
        router: SegmentRouter,
        signature: Any = None,
        input_example: Any = None,
        pip_requirements: list[str] | None = None,
        dfs_tmpdir: str | None = None,
        **_: Any,
    ) -> None:
        import mlflow.spark
        from mlflow.models import Model
        from pyspark.ml import PipelineModel

        with tempfile.TemporaryDirectory() as tmp:
            blobs = pd.DataFrame(sorted(router.blobs.items()), columns=["segment", "model"])
            models_file = os.path.join(tmp, "segment_models.parquet")
            blobs.to_parquet(models_file, index=False)
            spark_dir = os.path.join(tmp, "spark")
            mlflow.spark.save_model(
                PipelineModel([router]), spark_dir, dfs_tmpdir=dfs_tmpdir, pip_requirements=pip_requirements
            )
            spark_flavor = Model.load(spark_dir).flavors["spark"]
            mlflow.pyfunc.save_model(
                path,
                python_model=SegmentedModel(router.route),
                artifacts={"segment_models": models_file},
                mlflow_model=mlflow_model,
                signature=signature,
                input_example=input_example,
                pip_requirements=pip_requirements,
            )
            shutil.copytree(
                os.path.join(spark_dir, spark_flavor["model_data"]), os.path.join(path, "sparkml")
            )
        mlflow_model.add_flavor("spark", **{**spark_flavor, "model_data": "sparkml"})
        mlflow_model.save(os.path.join(path, "MLmodel"))


def log_segmented_model(
    router: SegmentRouter,
    example: pd.DataFrame,
    registered_model_name: str | None,
    factory: Callable[..., Any] | None = None,
    dfs_tmpdir: str | None = None,
) -> Any:
    """Log ONE model (pyfunc + spark flavours) to the active run; register it when a name
    is given. Returns MLflow's ModelInfo."""
    from mlflow.models import Model, infer_signature

    output = route_predict(SegmentModels.from_blobs(router.blobs), example, router.route)
    return Model.log(
        artifact_path=None,
        name="model",
        flavor=_SegmentedFlavor,
        registered_model_name=registered_model_name,
        router=router,
        signature=infer_signature(example, output),
        input_example=example,
        pip_requirements=pip_requirements(factory),
        dfs_tmpdir=dfs_tmpdir,
    )
