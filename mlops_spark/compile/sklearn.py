"""Fitted scikit-learn estimators -> Spark SQL expressions (linear models, decision trees and
random forests, behind StandardScaler / SimpleImputer steps), following scikit-learn's own
arithmetic: float32 split comparisons, NaN routing, probability normalisation."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

from pyspark.sql import Column
from pyspark.sql import functions as F
from pyspark.sql.types import DoubleType

from mlops_spark.compile.common import (
    DEFAULT_MAX_TREE_NODES,
    NAN,
    CompiledModel,
    NotCompilableError,
    sequential_sum,
)


def _sk_features(columns: Sequence[str]) -> list[Column]:
    """Inputs as scikit-learn sees them after Spark -> pandas: float64, null -> NaN."""
    return [F.coalesce(F.col(c).cast(DoubleType()), F.lit(NAN)) for c in columns]


def _is_missing(x: Column) -> Column:
    return F.isnan(x)


def _sk_transform(step: Any, xs: list[Column]) -> list[Column]:
    kind = type(step).__name__
    if kind == "StandardScaler":
        out = list(xs)
        if step.with_mean:
            out = [x - F.lit(float(m)) for x, m in zip(out, step.mean_, strict=True)]
        if step.with_std:
            out = [x / F.lit(float(s)) for x, s in zip(out, step.scale_, strict=True)]
        return out
    if kind == "SimpleImputer":
        missing = step.missing_values
        if not (isinstance(missing, float) and math.isnan(missing)) or getattr(step, "add_indicator", False):
            raise NotCompilableError("SimpleImputer: only missing_values=NaN without indicators compiles")
        stats = [float(v) for v in step.statistics_]
        if any(math.isnan(v) for v in stats):
            raise NotCompilableError("SimpleImputer dropped an all-missing feature")
        return [F.when(_is_missing(x), F.lit(v)).otherwise(x) for x, v in zip(xs, stats, strict=True)]
    raise NotCompilableError(f"scikit-learn step {kind} has no SQL compiler")


def _sk_tree(tree: Any, xs: list[Column], leaf: Callable[[int], Column]) -> Column:
    left, right = tree.children_left, tree.children_right
    feature, threshold = tree.feature, tree.threshold
    missing_left = getattr(tree, "missing_go_to_left", None)

    def node(i: int) -> Column:
        if left[i] == right[i]:  # a leaf (both children are -1)
            return leaf(i)
        x = xs[int(feature[i])]
        # trees compare float32 inputs with float64 thresholds
        goes_left = x.cast("float") <= F.lit(float(threshold[i]))
        if missing_left is not None and bool(missing_left[i]):
            goes_left = _is_missing(x) | goes_left
        elif missing_left is not None:
            goes_left = ~_is_missing(x) & goes_left
        return F.when(goes_left, node(int(left[i]))).otherwise(node(int(right[i])))

    return node(0)


def _sk_leaf_value(tree: Any) -> Callable[[int], Column]:
    def leaf(i: int) -> Column:
        return F.lit(float(tree.value[i][0][0]))

    return leaf


def _sk_leaf_positive(tree: Any) -> Callable[[int], Column]:
    """A classification leaf's share of the second class (as ``predict_proba`` normalises it)."""

    def leaf(i: int) -> Column:
        counts = [float(v) for v in tree.value[i][0]]
        total = sum(counts) or 1.0
        return F.lit(counts[1] / total)

    return leaf


def sklearn_tree_nodes(model: Any) -> int:
    """The nodes of a fitted scikit-learn estimator's trees (0 for one without trees)."""
    est = model.steps[-1][1] if type(model).__name__ == "Pipeline" else model
    trees = [est] if hasattr(est, "tree_") else list(getattr(est, "estimators_", []) or [])
    return sum(int(t.tree_.node_count) for t in trees if hasattr(t, "tree_"))


def compile_sklearn_model(
    model: Any, columns: Sequence[str], threshold: float = 0.5, max_tree_nodes: int = DEFAULT_MAX_TREE_NODES
) -> CompiledModel:
    """Compile a fitted scikit-learn estimator that reads ``columns`` (in that order).

    Classifiers (binary, numeric classes) give the probability of ``classes_[1]`` and the
    prediction ``classes_[1] if probability > threshold else classes_[0]``.
    """
    steps: list[Any] = [s for _, s in model.steps] if type(model).__name__ == "Pipeline" else [model]
    names = list(getattr(steps[0], "feature_names_in_", columns))
    if list(names) != list(columns):
        columns = [str(n) for n in names]
    xs = _sk_features(columns)
    stages: list[str] = []
    for step in steps[:-1]:
        if step is None or step == "passthrough":
            continue
        xs = _sk_transform(step, xs)
        stages.append(type(step).__name__)
    est = steps[-1]
    kind = type(est).__name__
    stages.append(kind)
    classes = getattr(est, "classes_", None)
    if classes is not None:
        if len(classes) != 2:
            raise NotCompilableError(f"{kind}: only binary classifiers compile")
        try:
            low, high = float(classes[0]), float(classes[1])
        except (TypeError, ValueError):
            raise NotCompilableError(f"{kind}: class labels {list(classes)} are not numeric") from None
    probability: Column | None = None
    if hasattr(est, "tree_") or (hasattr(est, "estimators_") and hasattr(est, "n_estimators")):
        trees = [est] if hasattr(est, "tree_") else list(est.estimators_)
        if not all(hasattr(t, "tree_") for t in trees) or type(est).__name__.startswith(
            ("GradientBoosting", "HistGradient", "AdaBoost", "Bagging")
        ):
            raise NotCompilableError(f"{kind} has no SQL compiler")
        nodes = sum(int(t.tree_.node_count) for t in trees)
        if nodes > max_tree_nodes:
            raise NotCompilableError(f"{kind} has {nodes} nodes (more than {max_tree_nodes})")
        if classes is None:
            preds = [_sk_tree(t.tree_, xs, _sk_leaf_value(t.tree_)) for t in trees]
            value = preds[0] if len(preds) == 1 else sequential_sum(preds) / F.lit(float(len(preds)))
            return CompiledModel(value, None, tuple(columns), tuple(stages))

        probs = [_sk_tree(t.tree_, xs, _sk_leaf_positive(t.tree_)) for t in trees]
        probability = probs[0] if len(probs) == 1 else sequential_sum(probs) / F.lit(float(len(probs)))
    elif hasattr(est, "coef_") and hasattr(est, "intercept_"):
        coef = [float(c) for c in list(est.coef_.ravel())]
        if len(coef) != len(xs):
            raise NotCompilableError(f"{kind} has {len(coef)} coefficients for {len(xs)} inputs")
        intercept = (
            float(est.intercept_.ravel()[0]) if hasattr(est.intercept_, "ravel") else float(est.intercept_)
        )
        decision = sequential_sum([x * F.lit(c) for x, c in zip(xs, coef, strict=True)]) + F.lit(intercept)
        if classes is None:
            return CompiledModel(decision, None, tuple(columns), tuple(stages))
        if kind not in ("LogisticRegression", "LogisticRegressionCV"):
            raise NotCompilableError(f"{kind}: a linear classifier without logistic probabilities")
        probability = F.lit(1.0) / (F.lit(1.0) + F.exp(-decision))
    else:
        raise NotCompilableError(f"{kind} has no SQL compiler")
    prediction = F.when(probability > F.lit(float(threshold)), F.lit(high)).otherwise(F.lit(low))
    return CompiledModel(prediction, probability, tuple(columns), tuple(stages))
