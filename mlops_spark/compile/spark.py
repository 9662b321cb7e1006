"""Fitted models -> plain Spark SQL expressions: no vectors, no UDFs, no Python workers.

A fitted pyspark.ml ``PipelineModel`` made of StringIndexer, OneHotEncoder, Imputer,
VectorAssembler, StandardScaler and a binary LogisticRegression, a LinearRegression or a
decision tree / random forest / gradient-boosted tree ensemble (classifier or regressor),
and a scikit-learn estimator (optionally behind StandardScaler / SimpleImputer steps) made
of a linear model or decision trees, are turned into two ``Column`` expressions: the
prediction and the positive-class probability. Spark then scores with generated Java
code over only the input columns, which costs about what copying the rows costs.

The expressions follow the models' own arithmetic step by step (same operations in the
same order, thresholds compared the same way, one-hot slots and scaling folded exactly),
so predictions equal ``model.transform``'s; probabilities agree to the last few bits
(Spark SQL's ``exp`` is ``StrictMath.exp``, MLlib's is ``Math.exp``). Anything without an
exact equivalent raises `NotCompilableError` with the reason, and the caller falls back
to the model's own transform.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from pyspark.sql import Column
from pyspark.sql import functions as F
from pyspark.sql.types import StructType

from mlops_spark.compile.common import (
    DEFAULT_MAX_TREE_NODES,
    CompiledModel,
    NotCompilableError,
    first_argmax,
    sequential_sum,
)
from mlops_spark.compile.spark_stages import FEATURE_STAGES, Scalar, Value, Vector, dot, vector_input

# --------------------------------------------------------------------------- pyspark.ml models


@dataclass(frozen=True)
class _Leaf:
    prediction: float
    stats: tuple[float, ...]


@dataclass(frozen=True)
class _Split:
    feature: int
    threshold: float | None
    left_categories: tuple[float, ...]
    left: _Node
    right: _Node


_Node = _Leaf | _Split


def _read_tree(root: Any, budget: list[int], with_stats: bool) -> _Node:
    """The JVM tree as Python values (one py4j call per attribute; ``budget`` caps nodes)."""

    def walk(node: Any) -> _Node:
        budget[0] -= 1
        if budget[0] < 0:
            raise NotCompilableError("the tree ensemble is too large to compile (raise max_tree_nodes)")
        if node.getClass().getSimpleName() != "InternalNode":
            stats = tuple(float(v) for v in node.impurityStats().stats()) if with_stats else ()
            return _Leaf(float(node.prediction()), stats)
        split = node.split()
        continuous = split.getClass().getSimpleName() == "ContinuousSplit"
        return _Split(
            feature=int(split.featureIndex()),
            threshold=float(split.threshold()) if continuous else None,
            left_categories=() if continuous else tuple(float(v) for v in split.leftCategories()),
            left=walk(node.leftChild()),
            right=walk(node.rightChild()),
        )

    return walk(root)


def _tree_expr(node: _Node, slot: Callable[[int], Column], leaf: Callable[[_Leaf], Column]) -> Column:
    if isinstance(node, _Leaf):
        return leaf(node)
    x = slot(node.feature)
    if node.threshold is not None:
        goes_left = x <= F.lit(node.threshold)
    else:
        goes_left = x.isin([F.lit(c) for c in node.left_categories])
    return F.when(goes_left, _tree_expr(node.left, slot, leaf)).otherwise(_tree_expr(node.right, slot, leaf))


def _features_used(node: _Node, out: set[int]) -> None:
    if isinstance(node, _Split):
        out.add(node.feature)
        _features_used(node.left, out)
        _features_used(node.right, out)


Layer = tuple[tuple[str, Column], ...]


def _leaf_layers(trees: Sequence[_Node], vector: Vector) -> tuple[list[Layer], list[list[_Leaf]]]:
    """Two layers: the vector slots the trees test, then each tree's leaf index (``__leaf{t}``),
    and each tree's leaves in index order."""
    used: set[int] = set()
    for tree in trees:
        _features_used(tree, used)
    slots: Layer = tuple((f"__slot{i}", vector.slot(i)) for i in sorted(used))
    leaves_of: list[list[_Leaf]] = []
    leaf_ids: list[tuple[str, Column]] = []
    for t, tree in enumerate(trees):
        leaves: list[_Leaf] = []
        _leaf_ids(tree, leaves)
        ids = {id(leaf): i for i, leaf in enumerate(leaves)}
        leaf_ids.append((f"__leaf{t}", _tree_expr(tree, lambda i: F.col(f"__slot{i}"), _leaf_index(ids))))
        leaves_of.append(leaves)
    return [slots, tuple(leaf_ids)], leaves_of


def _leaf_value(t: int, values: Sequence[float]) -> Column:
    """The value of tree ``t``'s leaf (a lookup by the leaf index of layer ``__leaf{t}``)."""
    return F.get(F.array(*[F.lit(float(v)) for v in values]), F.col(f"__leaf{t}"))


def _leaf_ids(node: _Node, out: list[_Leaf]) -> None:
    if isinstance(node, _Leaf):
        out.append(node)
    else:
        _leaf_ids(node.left, out)
        _leaf_ids(node.right, out)


def _leaf_index(ids: dict[int, int]) -> Callable[[_Leaf], Column]:
    def leaf(node: _Leaf) -> Column:
        return F.lit(ids[id(node)])

    return leaf


def _thresholded(stage: Any, p0: Column, p1: Column, raw0: Column, raw1: Column) -> Column:
    """MLlib's prediction from a binary raw / probability pair: argmax of probability /
    threshold when thresholds are set, else argmax of the raw prediction (first max wins)."""
    if stage.isDefined(stage.thresholds):
        t0, t1 = (float(t) for t in stage.getThresholds())
        s0 = F.lit(math.inf) if t0 == 0.0 else p0 / F.lit(t0)
        s1 = F.lit(math.inf) if t1 == 0.0 else p1 / F.lit(t1)
        return F.when(s1 > s0, F.lit(1.0)).otherwise(F.lit(0.0))
    return F.when(raw1 > raw0, F.lit(1.0)).otherwise(F.lit(0.0))


def _multinomial(stage: Any, vector: Vector) -> _Outputs:
    """MLlib's multinomial logistic regression: margins, then softmax after subtracting the
    largest margin when it is positive, scaled by 1 / sum (as ``BLAS.scal``); prediction is
    the first largest margin (no thresholds)."""
    if stage.isDefined(stage.thresholds):
        raise NotCompilableError("LogisticRegression: a multinomial model with thresholds")
    matrix = stage.coefficientMatrix.toArray()
    intercepts = stage.interceptVector.toArray().tolist()
    k = len(intercepts)
    margin_layer: Layer = tuple(
        (f"__margin{c}", dot(vector, matrix[c].tolist()) + F.lit(float(b))) for c, b in enumerate(intercepts)
    )
    margins = [F.col(f"__margin{c}") for c in range(k)]
    largest = F.array_max(F.array(*margins))
    exp_layer: Layer = tuple(
        (f"__exp{c}", F.when(largest > F.lit(0.0), F.exp(m - largest)).otherwise(F.exp(m)))
        for c, m in enumerate(margins)
    )
    exps = [F.col(f"__exp{c}") for c in range(k)]
    scale = F.lit(1.0) / sequential_sum(exps)
    return _Outputs(
        first_argmax(margins),
        probabilities=F.array(*[e * scale for e in exps]),
        layers=(margin_layer, exp_layer),
    )


def _logistic_regression(stage: Any, vector: Vector) -> _Outputs:
    if stage.numClasses != 2 or stage.coefficientMatrix.numRows != 1:
        raise NotCompilableError("LogisticRegression: a multinomial model takes _multinomial")
    margin = F.col("__margin")
    p0 = F.lit(1.0) / (F.lit(1.0) + F.exp(margin))
    p1 = F.lit(1.0) - p0
    jvm = stage._java_obj
    threshold = float(jvm.getThreshold())
    if stage.getRawPredictionCol():
        if threshold == 0.0:
            raw_threshold = -math.inf
        elif threshold == 1.0:
            raw_threshold = math.inf
        else:  # MLlib takes this log with java.lang.Math; so do we, for the same bits
            raw_threshold = _java_log(threshold / (1.0 - threshold))
        prediction = F.when(margin > F.lit(raw_threshold), F.lit(1.0)).otherwise(F.lit(0.0))
    elif stage.getProbabilityCol():
        prediction = F.when(p1 > F.lit(threshold), F.lit(1.0)).otherwise(F.lit(0.0))
    else:
        score = F.lit(1.0) / (F.lit(1.0) + F.exp(-margin))
        prediction = F.when(score > F.lit(threshold), F.lit(1.0)).otherwise(F.lit(0.0))
    margin_layer: Layer = (
        ("__margin", dot(vector, stage.coefficients.toArray().tolist()) + F.lit(float(stage.intercept))),
    )
    return _Outputs(prediction, p1, layers=(margin_layer,))


def _java_log(value: float) -> float:
    """java.lang.Math.log(value), computed by the JVM that runs MLlib."""
    from pyspark import SparkContext

    sc = SparkContext._active_spark_context
    if sc is None or sc._jvm is None:
        return math.log(value)
    return float(sc._jvm.java.lang.Math.log(value))


def _tree_models(stage: Any) -> tuple[list[Any], list[float]]:
    jvm = stage._java_obj
    if jvm.getClass().getSimpleName().startswith("DecisionTree"):
        return [jvm], [1.0]
    return list(jvm.trees()), [float(w) for w in jvm.treeWeights()]


@dataclass(frozen=True)
class _Outputs:
    prediction: Column
    probability: Column | None = None
    probabilities: Column | None = None
    layers: tuple[Layer, ...] = ()


def _tree_ensemble(stage: Any, vector: Vector, max_nodes: int) -> _Outputs:
    """Regression and binary trees, forests and boosted trees, as MLlib computes them:
    regression = the (weighted) sum or mean of the trees' leaf values; binary GBT = a margin
    through the logistic link; binary tree / forest = the (normalised) class counts."""
    kind = stage._java_obj.getClass().getSimpleName()
    models, weights = _tree_models(stage)
    classifier = kind.endswith("ClassificationModel")
    gbt = kind.startswith("GBT")
    budget = [max_nodes]
    trees = [_read_tree(m.rootNode(), budget, with_stats=classifier and not gbt) for m in models]
    layers, leaves_of = _leaf_layers(trees, vector)
    if classifier and stage.numClasses != 2:
        raise NotCompilableError(f"{kind}: a multiclass model takes _multiclass_trees")
    if not classifier or gbt:
        preds = [_leaf_value(t, [leaf.prediction for leaf in leaves]) for t, leaves in enumerate(leaves_of)]
        if gbt:
            value = sequential_sum([p * F.lit(w) for p, w in zip(preds, weights, strict=True)])
        elif kind.startswith("RandomForest"):
            value = sequential_sum(preds) / F.lit(float(len(preds)))
        else:
            value = preds[0]
        layers.append((("__value", value),))
        if not classifier:
            return _Outputs(F.col("__value"), layers=tuple(layers))
        margin = F.col("__value")
        p0 = F.lit(1.0) / (F.lit(1.0) + F.exp(F.lit(-2.0) * (-margin)))
        p1 = F.lit(1.0) - p0
        return _Outputs(_thresholded(stage, p0, p1, -margin, margin), p1, layers=tuple(layers))
    # decision tree: raw = the leaf's class counts; random forest: sum of normalised counts
    forest = kind.startswith("RandomForest")
    raw_terms: list[list[Column]] = [[], []]
    for t, leaves in enumerate(leaves_of):
        for c in (0, 1):
            values = []
            for leaf in leaves:
                count = leaf.stats[0] + leaf.stats[1]
                values.append((leaf.stats[c] / count if count != 0 else 0.0) if forest else leaf.stats[c])
            raw_terms[c].append(_leaf_value(t, values))
    layers.append((("__raw0", sequential_sum(raw_terms[0])), ("__raw1", sequential_sum(raw_terms[1]))))
    raw0, raw1 = F.col("__raw0"), F.col("__raw1")
    total = raw0 + raw1
    p0 = F.when(total != F.lit(0.0), raw0 / total).otherwise(raw0)
    p1 = F.when(total != F.lit(0.0), raw1 / total).otherwise(raw1)
    return _Outputs(_thresholded(stage, p0, p1, raw0, raw1), p1, layers=tuple(layers))


def _multiclass_trees(stage: Any, vector: Vector, max_nodes: int) -> _Outputs:
    """A multiclass decision tree (raw = the leaf's class counts) or random forest (raw = the
    sum of each tree's normalised counts): probabilities = raw / sum(raw), prediction = the
    first largest raw value (no thresholds)."""
    kind = stage._java_obj.getClass().getSimpleName()
    if stage.isDefined(stage.thresholds):
        raise NotCompilableError(f"{kind}: a multiclass model with thresholds")
    models, _ = _tree_models(stage)
    budget = [max_nodes]
    trees = [_read_tree(m.rootNode(), budget, with_stats=True) for m in models]
    layers, leaves_of = _leaf_layers(trees, vector)
    forest = kind.startswith("RandomForest")
    k = int(stage.numClasses)
    terms: list[list[Column]] = [[] for _ in range(k)]
    for t, leaves in enumerate(leaves_of):
        for c in range(k):
            values = []
            for leaf in leaves:
                count = sequential_total(leaf.stats)
                values.append((leaf.stats[c] / count if count != 0 else 0.0) if forest else leaf.stats[c])
            terms[c].append(_leaf_value(t, values))
    layers.append(tuple((f"__raw{c}", sequential_sum(terms[c])) for c in range(k)))
    raw = [F.col(f"__raw{c}") for c in range(k)]
    layers.append((("__total", sequential_sum(raw)),))
    total = F.col("__total")
    return _Outputs(first_argmax(raw), probabilities=F.array(*[r / total for r in raw]), layers=tuple(layers))


def sequential_total(values: Sequence[float]) -> float:
    """Scala's ``Array.sum``: a left fold from 0.0, in order."""
    total = 0.0
    for v in values:
        total += v
    return total


_TREE_MODELS = {
    "DecisionTreeClassificationModel",
    "DecisionTreeRegressionModel",
    "RandomForestClassificationModel",
    "RandomForestRegressionModel",
    "GBTClassificationModel",
    "GBTRegressionModel",
}


def _flatten(model: Any) -> list[Any]:
    if type(model).__name__ == "PipelineModel":
        return [s for stage in model.stages for s in _flatten(stage)]
    return [model]


def tree_nodes(model: Any) -> int:
    """The nodes of a fitted pyspark.ml model's trees (0 for a model without trees)."""
    last = _flatten(model)[-1] if _flatten(model) else None
    if last is None or type(last).__name__ not in _TREE_MODELS:
        return 0
    total = getattr(last, "totalNumNodes", None)
    return int(total if total is not None else last.numNodes)


def compile_spark_model(
    model: Any, schema: StructType, max_tree_nodes: int = DEFAULT_MAX_TREE_NODES
) -> CompiledModel:
    """Compile a fitted pyspark.ml model (usually a ``PipelineModel``) for inputs of ``schema``.

    Raises `NotCompilableError` naming the first stage or setting that has no exact SQL form.
    """
    env: dict[str, Value] = {f.name: Scalar(F.col(f.name), f.dataType, frozenset([f.name])) for f in schema}
    stages = _flatten(model)
    if not stages:
        raise NotCompilableError("the pipeline has no stages")
    names: list[str] = []
    for stage in stages[:-1]:
        kind = type(stage).__name__
        handler = FEATURE_STAGES.get(kind)
        if handler is None:
            raise NotCompilableError(
                f"stage {kind} has no SQL compiler (supported: {', '.join(FEATURE_STAGES)})"
            )
        handler(stage, env)
        names.append(kind)
    last = stages[-1]
    kind = type(last).__name__
    vector = vector_input(env, last.getFeaturesCol(), kind) if last.hasParam("featuresCol") else None
    if vector is None:
        raise NotCompilableError(f"the last stage {kind} is not a predictor")
    multiclass = getattr(last, "numClasses", 2) > 2 and kind != "LinearRegressionModel"
    if kind == "LogisticRegressionModel" and multiclass:
        out = _multinomial(last, vector)
    elif kind == "LogisticRegressionModel":
        out = _logistic_regression(last, vector)
    elif kind in _TREE_MODELS and multiclass:
        out = _multiclass_trees(last, vector, max_tree_nodes)
    elif kind == "LinearRegressionModel":
        coefficients = last.coefficients.toArray().tolist()
        out = _Outputs(dot(vector, coefficients) + F.lit(float(last.intercept)))
    elif kind in _TREE_MODELS:
        out = _tree_ensemble(last, vector, max_tree_nodes)
    else:
        raise NotCompilableError(f"model {kind} has no SQL compiler")
    names.append(kind)
    return CompiledModel(
        out.prediction,
        out.probability,
        tuple(sorted(vector.sources)),
        tuple(names),
        out.probabilities,
        out.layers,
    )
