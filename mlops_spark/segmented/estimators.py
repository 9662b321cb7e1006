"""The per-segment estimator: importing it, shipping user code by value, checking and
building it (behind one-hot encoding and imputation), and its pandas input."""

from __future__ import annotations

import importlib
import inspect
import math
import sys
import sysconfig
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mlops_spark.config import SegmentedConfig
from mlops_spark.errors import ConfigError
from mlops_spark.segmented.spec import MISSING, FitSpec, RouteSpec, Task


def import_estimator(path: str, where: str = "segmented.estimator") -> Callable[..., Any]:
    """A class (``pkg.mod.Class``) or a factory (``pkg.mod:function``) by import path."""
    if ":" in path:
        module_name, attr = path.split(":", 1)
    else:
        module_name, _, attr = path.rpartition(".")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"{where}: cannot import module {module_name!r} of {path!r} ({exc})") from None
    target = getattr(module, attr, None)
    if target is None or not callable(target):
        raise ConfigError(f"{where}: module {module_name!r} has no class or function {attr!r}")
    return target  # type: ignore[no-any-return]


def importable_everywhere(module_name: str) -> bool:
    """True for modules that executors import themselves: the standard library, installed
    packages (site-packages) and this package."""
    top = module_name.split(".")[0]
    if top in sys.stdlib_module_names or top == "mlops_spark" or module_name == "__main__":
        return True  # __main__ is always pickled by value
    module = sys.modules.get(module_name)
    file = getattr(module, "__file__", None)
    if file is None:
        return True
    resolved = Path(file).resolve()
    roots = {sysconfig.get_paths()[k] for k in ("purelib", "platlib", "stdlib")}
    if any(resolved.is_relative_to(Path(r).resolve()) for r in roots):
        return True
    return "site-packages" in resolved.parts or "dist-packages" in resolved.parts


def ship_by_value(obj: Any) -> str | None:
    """Make cloudpickle send ``obj``'s module by value when executors cannot import it (a
    test, a notebook helper, a script). Returns the module name when it did so."""
    module_name = getattr(obj, "__module__", None)
    if not module_name or importable_everywhere(module_name):
        return None
    module = sys.modules[module_name]
    import cloudpickle
    from pyspark import cloudpickle as spark_cloudpickle

    cloudpickle.register_pickle_by_value(module)
    spark_cloudpickle.register_pickle_by_value(module)  # type: ignore[no-untyped-call]
    return str(module_name)


def _factory_parameters(factory: Callable[..., Any]) -> set[str] | None:
    """The keyword names a class or factory takes (None when it takes **kwargs)."""
    try:
        sig = inspect.signature(factory)
    except (TypeError, ValueError):
        return None
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in sig.parameters.values()):
        return None
    return {n for n, p in sig.parameters.items() if p.kind is not inspect.Parameter.VAR_POSITIONAL}


def check_estimator(
    factory: Callable[..., Any], seg: SegmentedConfig, task: Task, searched: Sequence[str] = ()
) -> None:
    """Fail before any Spark work when the estimator cannot be built with the configured
    params, names a searched param it does not take, or cannot predict for the task."""
    accepted = _factory_parameters(factory)
    if accepted is not None:
        for where, names in (("segmented.params", seg.params), ("segmented.tuning.search_space", searched)):
            for name in names:
                if name not in accepted:
                    raise ConfigError(
                        f"{where}.{name}: {seg.estimator} takes no parameter {name!r} "
                        f"(it takes: {', '.join(sorted(accepted)) or 'none'})"
                    )
    try:
        probe = factory(**seg.params)
    except Exception as exc:
        raise ConfigError(
            f"segmented.params: {seg.estimator} rejected them ({type(exc).__name__}: {exc})"
        ) from None
    needs = ("fit", "predict_proba") if task == "binary" else ("fit", "predict")
    for method in needs:
        if not callable(getattr(probe, method, None)):
            raise ConfigError(
                f"segmented.estimator: {seg.estimator} built a {type(probe).__name__}, which has no "
                f"{method}() (a {task} model needs {' and '.join(needs)})"
            )


def build_estimator(factory: Callable[..., Any], params: Mapping[str, Any], spec: FitSpec) -> Any:
    """An unfitted estimator from the factory, seeded when it takes ``random_state``, behind
    the configured one-hot encoder and imputer (a scikit-learn Pipeline)."""
    est = factory(**params)
    if hasattr(est, "get_params") and "random_state" in est.get_params(deep=False):
        if "random_state" not in params:
            est.set_params(random_state=spec.seed)
    route = spec.route
    one_hot = spec.one_hot and bool(route.categorical)
    impute = spec.impute != "none" and bool(route.numeric)
    if not one_hot and not impute:
        return est
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder

    parts: list[tuple[str, Any, list[str]]] = []
    if route.categorical:
        cat: Any = OneHotEncoder(handle_unknown="ignore", sparse_output=False) if one_hot else "passthrough"
        parts.append(("categorical", cat, list(route.categorical)))
    if route.numeric:
        num: Any = SimpleImputer(strategy=spec.impute, keep_empty_features=True) if impute else "passthrough"
        parts.append(("numeric", num, list(route.numeric)))
    prepare = ColumnTransformer(parts, remainder="drop", verbose_feature_names_out=False)
    return Pipeline([("prepare", prepare), ("model", est)])


def fit_estimator(est: Any, features: pd.DataFrame, label: pd.Series, weights: np.ndarray | None) -> Any:
    if weights is None:
        return est.fit(features, label)
    steps = getattr(est, "steps", None)
    if steps:  # a Pipeline routes fit params by step name
        return est.fit(features, label, **{f"{steps[-1][0]}__sample_weight": weights})
    return est.fit(features, label, sample_weight=weights)


def model_frame(pdf: pd.DataFrame, route: RouteSpec) -> pd.DataFrame:
    """The estimator's input: categorical columns as strings (null -> MISSING), numeric
    columns as float64 (null -> NaN), in the configured order."""
    out: dict[str, pd.Series] = {}
    for c in route.categorical:
        s = pdf[c]
        out[c] = s.astype(object).where(s.notna(), MISSING).astype(str)
    for c in route.numeric:
        out[c] = pd.to_numeric(pdf[c], errors="coerce").astype("float64")
    return pd.DataFrame(out, index=pdf.index)


def segment_keys(values: pd.Series) -> pd.Series:
    """Segment values as the strings Spark's ``cast(... AS string)`` gives (null stays None);
    whole floats print without '.0', as an integer column with nulls arrives in pandas."""

    def key(v: Any) -> str | None:
        if v is None or (isinstance(v, float) and math.isnan(v)) or v is pd.NA:
            return None
        if isinstance(v, float | np.floating) and float(v).is_integer():
            return str(int(v))
        if isinstance(v, bool | np.bool_):
            return "true" if v else "false"
        return str(v)

    return values.map(key).astype(object)


def positive_scores(model: Any, features: pd.DataFrame) -> np.ndarray:
    """P(label = 1) from a fitted classifier (0 when it never saw the positive class)."""
    proba = np.asarray(model.predict_proba(features))
    classes = [float(c) for c in getattr(model, "classes_", [0.0, 1.0])]
    if 1.0 not in classes:
        return np.zeros(len(features))
    return proba[:, classes.index(1.0)].astype("float64")
