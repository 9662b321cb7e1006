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
from dataclasses import dataclass, field
from typing import Any

from pyspark.sql import Column
from pyspark.sql import functions as F
from pyspark.sql.types import BooleanType, DataType, DoubleType, NumericType, StringType, StructType

DEFAULT_MAX_TREE_NODES = 20_000
"""Tree ensembles larger than this stay on transform: huge CASE expressions make Spark's
optimiser and Java code generation slower than the model's own vectorised loop."""

NAN = float("nan")


class NotCompilableError(Exception):
    """The model has a stage or a setting without an exact SQL equivalent (the reason says which)."""


@dataclass(frozen=True)
class CompiledModel:
    """A model as SQL: ``prediction`` (double) and, for binary classifiers, ``probability``
    of the positive class (double); ``inputs`` are the columns the expressions read."""

    prediction: Column
    probability: Column | None
    inputs: tuple[str, ...]
    stages: tuple[str, ...]

    def describe(self) -> str:
        return " -> ".join(self.stages)


# --------------------------------------------------------------------------- symbolic values


@dataclass(frozen=True)
class _Scalar:
    expr: Column
    dtype: DataType
    sources: frozenset[str]


@dataclass(frozen=True)
class _Dense:
    """One vector slot holding ``expr``."""

    expr: Column

    @property
    def size(self) -> int:
        return 1


@dataclass(frozen=True)
class _OneHot:
    """``len(values)`` slots of which at most one is non-zero: slot ``position`` holds
    ``values[position]``; a position outside the slots (a dropped or invalid category)
    leaves them all zero."""

    position: Column
    values: tuple[float, ...]

    @property
    def size(self) -> int:
        return len(self.values)

    def slot(self, j: int) -> Column:
        return F.when(self.position == F.lit(j), F.lit(self.values[j])).otherwise(F.lit(0.0))


_Segment = _Dense | _OneHot


@dataclass(frozen=True)
class _Vector:
    segments: tuple[_Segment, ...]
    sources: frozenset[str]
    _slots: list[Column] = field(default_factory=list, compare=False, repr=False)

    @property
    def size(self) -> int:
        return sum(s.size for s in self.segments)

    def slot(self, index: int) -> Column:
        """The expression of one slot (built once, on first use)."""
        if not self._slots:
            for seg in self.segments:
                if isinstance(seg, _Dense):
                    self._slots.append(seg.expr)
                else:
                    self._slots.extend(seg.slot(j) for j in range(seg.size))
        return self._slots[index]


_Value = _Scalar | _Vector


def _scalar(env: dict[str, _Value], name: str, stage: str) -> _Scalar:
    value = env.get(name)
    if value is None:
        raise NotCompilableError(f"{stage}: input column {name!r} is not available")
    if not isinstance(value, _Scalar):
        raise NotCompilableError(f"{stage}: input column {name!r} is a vector, expected a scalar")
    return value


def _vector(env: dict[str, _Value], name: str, stage: str) -> _Vector:
    value = env.get(name)
    if not isinstance(value, _Vector):
        raise NotCompilableError(
            f"{stage}: input {name!r} is not a vector assembled by a compilable stage of this pipeline"
        )
    return value


def _dot(vector: _Vector, coefficients: Sequence[float]) -> Column:
    """sum_i slot_i * coefficient_i, added left to right in slot order as MLlib's dot
    product does (a one-hot group contributes its single hot term, precomputed)."""
    if vector.size != len(coefficients):
        raise NotCompilableError(
            f"the model expects {len(coefficients)} features but the pipeline assembles {vector.size}"
        )
    total: Column = F.lit(0.0)
    offset = 0
    for seg in vector.segments:
        if isinstance(seg, _Dense):
            total = total + seg.expr * F.lit(float(coefficients[offset]))
        else:
            terms = [
                v * float(c)
                for v, c in zip(seg.values, coefficients[offset : offset + seg.size], strict=True)
            ]
            hot = F.get(F.array(*[F.lit(t) for t in terms]), seg.position)
            total = total + F.coalesce(hot, F.lit(0.0))
        offset += seg.size
    return total


# --------------------------------------------------------------------------- pyspark.ml stages


def _in_out(stage: Any) -> list[tuple[str, str]]:
    if stage.hasParam("inputCols") and stage.isSet(stage.inputCols):
        return list(zip(stage.getInputCols(), stage.getOutputCols(), strict=True))
    return [(stage.getInputCol(), stage.getOutputCol())]


def _string_indexer(stage: Any, env: dict[str, _Value]) -> None:
    invalid = stage.getHandleInvalid()
    if invalid == "skip":
        raise NotCompilableError("StringIndexer(handleInvalid='skip') drops rows")
    for (src, dst), labels in zip(_in_out(stage), stage.labelsArray, strict=True):
        value = _scalar(env, src, "StringIndexer")
        lookup = F.create_map(*[x for i, label in enumerate(labels) for x in (F.lit(label), F.lit(float(i)))])
        found = F.try_element_at(lookup, value.expr.cast(StringType()))
        if invalid == "keep":
            index = F.coalesce(found, F.lit(float(len(labels))))
        else:
            message = F.lit(f"StringIndexer: unseen label in column {src!r} (handleInvalid='error')")
            index = F.when(found.isNull(), F.raise_error(message)).otherwise(found)
        env[dst] = _Scalar(index.cast(DoubleType()), DoubleType(), value.sources)


def _one_hot_encoder(stage: Any, env: dict[str, _Value]) -> None:
    keep = stage.getHandleInvalid() == "keep"
    drop_last = stage.getDropLast()
    for (src, dst), categories in zip(_in_out(stage), stage.categorySizes, strict=True):
        value = _scalar(env, src, "OneHotEncoder")
        label = value.expr.cast(DoubleType())
        size = categories + (1 if keep else 0) - (1 if drop_last else 0)
        valid = (label >= F.lit(0.0)) & (label < F.lit(float(categories)))
        if keep:
            invalid: Column = F.lit(categories)
        else:
            invalid = F.raise_error(F.lit(f"OneHotEncoder: invalid category index in {src!r}")).cast("int")
        position = F.when(valid, label.cast("int")).otherwise(invalid)
        env[dst] = _Vector((_OneHot(position, (1.0,) * size),), value.sources)


def _imputer(stage: Any, env: dict[str, _Value]) -> None:
    row = stage.surrogateDF.first()
    missing = float(stage.getMissingValue())
    for src, dst in _in_out(stage):
        value = _scalar(env, src, "Imputer")
        surrogate = F.lit(float(row[src]))
        ic = value.expr.cast(DoubleType())
        imputed = F.when(ic.isNull(), surrogate).when(ic == F.lit(missing), surrogate).otherwise(ic)
        env[dst] = _Scalar(imputed.cast(value.dtype), value.dtype, value.sources)


def _vector_assembler(stage: Any, env: dict[str, _Value]) -> None:
    invalid = stage.getHandleInvalid()
    if invalid == "skip":
        raise NotCompilableError("VectorAssembler(handleInvalid='skip') drops rows")
    segments: list[_Segment] = []
    sources: set[str] = set()
    for name in stage.getInputCols():
        value = env.get(name)
        if isinstance(value, _Vector):
            segments.extend(value.segments)
        elif isinstance(value, _Scalar) and isinstance(value.dtype, NumericType | BooleanType):
            x = value.expr.cast(DoubleType())
            if invalid == "keep":
                x = F.coalesce(x, F.lit(NAN))
            else:
                message = F.lit(f"VectorAssembler: null in column {name!r} (handleInvalid='error')")
                x = F.when(x.isNull(), F.raise_error(message).cast(DoubleType())).otherwise(x)
            segments.append(_Dense(x))
        else:
            raise NotCompilableError(
                f"VectorAssembler: input {name!r} is neither numeric nor a compiled vector"
            )
        sources |= value.sources
    env[stage.getOutputCol()] = _Vector(tuple(segments), frozenset(sources))


def _standard_scaler(stage: Any, env: dict[str, _Value]) -> None:
    vector = _vector(env, stage.getInputCol(), "StandardScaler")
    with_mean, with_std = stage.getWithMean(), stage.getWithStd()
    mean = [float(v) for v in stage.mean.toArray()]
    scale = [0.0 if v == 0.0 else 1.0 / float(v) for v in stage.std.toArray()]
    segments: list[_Segment] = []
    offset = 0
    for seg in vector.segments:
        if isinstance(seg, _OneHot) and not with_mean:
            hot = tuple(v * scale[offset + j] if with_std else v for j, v in enumerate(seg.values))
            segments.append(_OneHot(seg.position, hot))
        else:
            for j in range(seg.size):
                x = seg.expr if isinstance(seg, _Dense) else seg.slot(j)
                if with_mean:
                    x = x - F.lit(mean[offset + j])
                if with_std:
                    x = x * F.lit(scale[offset + j])
                segments.append(_Dense(x))
        offset += seg.size
    env[stage.getOutputCol()] = _Vector(tuple(segments), vector.sources)


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


def _tree_expr(node: _Node, vector: _Vector, leaf: Callable[[_Leaf], Column]) -> Column:
    if isinstance(node, _Leaf):
        return leaf(node)
    x = vector.slot(node.feature)
    if node.threshold is not None:
        goes_left = x <= F.lit(node.threshold)
    else:
        goes_left = x.isin([F.lit(c) for c in node.left_categories])
    return F.when(goes_left, _tree_expr(node.left, vector, leaf)).otherwise(
        _tree_expr(node.right, vector, leaf)
    )


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


def _sequential_sum(terms: Sequence[Column]) -> Column:
    total: Column = F.lit(0.0)
    for term in terms:
        total = total + term
    return total


def _thresholded(stage: Any, p0: Column, p1: Column, raw0: Column, raw1: Column) -> Column:
    """MLlib's prediction from a binary raw / probability pair: argmax of probability /
    threshold when thresholds are set, else argmax of the raw prediction (first max wins)."""
    if stage.isDefined(stage.thresholds):
        t0, t1 = (float(t) for t in stage.getThresholds())
        s0 = F.lit(math.inf) if t0 == 0.0 else p0 / F.lit(t0)
        s1 = F.lit(math.inf) if t1 == 0.0 else p1 / F.lit(t1)
        return F.when(s1 > s0, F.lit(1.0)).otherwise(F.lit(0.0))
    return F.when(raw1 > raw0, F.lit(1.0)).otherwise(F.lit(0.0))


def _logistic_regression(stage: Any, vector: _Vector) -> tuple[Column, Column]:
    if stage.numClasses != 2 or stage.coefficientMatrix.numRows != 1:
        raise NotCompilableError("LogisticRegression: only binary (binomial) models compile")
    margin = _dot(vector, stage.coefficients.toArray().tolist()) + F.lit(float(stage.intercept))
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
    return prediction, p1


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


def _tree_ensemble(stage: Any, vector: _Vector, max_nodes: int) -> tuple[Column, Column | None]:
    kind = stage._java_obj.getClass().getSimpleName()
    models, weights = _tree_models(stage)
    classifier = kind.endswith("ClassificationModel")
    gbt = kind.startswith("GBT")
    budget = [max_nodes]
    trees = [_read_tree(m.rootNode(), budget, with_stats=classifier and not gbt) for m in models]
    if not classifier:
        preds = [_tree_expr(t, vector, lambda leaf: F.lit(leaf.prediction)) for t in trees]
        if gbt:
            return _sequential_sum([p * F.lit(w) for p, w in zip(preds, weights, strict=True)]), None
        if kind.startswith("RandomForest"):
            return _sequential_sum(preds) / F.lit(float(len(preds))), None
        return preds[0], None
    if stage.numClasses != 2:
        raise NotCompilableError(f"{kind}: only binary classifiers compile")
    if gbt:
        preds = [_tree_expr(t, vector, lambda leaf: F.lit(leaf.prediction)) for t in trees]
        margin = _sequential_sum([p * F.lit(w) for p, w in zip(preds, weights, strict=True)])
        p0 = F.lit(1.0) / (F.lit(1.0) + F.exp(F.lit(-2.0) * (-margin)))
        p1 = F.lit(1.0) - p0
        return _thresholded(stage, p0, p1, -margin, margin), p1
    # decision tree: raw = the leaf's class counts; random forest: sum of normalised counts
    forest = kind.startswith("RandomForest")
    raw0_terms: list[Column] = []
    raw1_terms: list[Column] = []
    for tree in trees:
        leaves: list[_Leaf] = []
        _leaf_ids(tree, leaves)
        ids = {id(leaf): i for i, leaf in enumerate(leaves)}
        leaf_id = _tree_expr(tree, vector, _leaf_index(ids))
        values0, values1 = [], []
        for leaf in leaves:
            c0, c1 = leaf.stats
            count = c0 + c1
            if forest:
                values0.append(c0 / count if count != 0 else 0.0)
                values1.append(c1 / count if count != 0 else 0.0)
            else:
                values0.append(c0)
                values1.append(c1)
        raw0_terms.append(F.get(F.array(*[F.lit(v) for v in values0]), leaf_id))
        raw1_terms.append(F.get(F.array(*[F.lit(v) for v in values1]), leaf_id))
    raw0, raw1 = _sequential_sum(raw0_terms), _sequential_sum(raw1_terms)
    total = raw0 + raw1
    p0 = F.when(total != F.lit(0.0), raw0 / total).otherwise(raw0)
    p1 = F.when(total != F.lit(0.0), raw1 / total).otherwise(raw1)
    return _thresholded(stage, p0, p1, raw0, raw1), p1


_FEATURE_STAGES: dict[str, Callable[[Any, dict[str, _Value]], None]] = {
    "StringIndexerModel": _string_indexer,
    "OneHotEncoderModel": _one_hot_encoder,
    "ImputerModel": _imputer,
    "VectorAssembler": _vector_assembler,
    "StandardScalerModel": _standard_scaler,
}
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


def compile_spark_model(
    model: Any, schema: StructType, max_tree_nodes: int = DEFAULT_MAX_TREE_NODES
) -> CompiledModel:
    """Compile a fitted pyspark.ml model (usually a ``PipelineModel``) for inputs of ``schema``.

    Raises `NotCompilableError` naming the first stage or setting that has no exact SQL form.
    """
    env: dict[str, _Value] = {f.name: _Scalar(F.col(f.name), f.dataType, frozenset([f.name])) for f in schema}
    stages = _flatten(model)
    if not stages:
        raise NotCompilableError("the pipeline has no stages")
    names: list[str] = []
    for stage in stages[:-1]:
        kind = type(stage).__name__
        handler = _FEATURE_STAGES.get(kind)
        if handler is None:
            raise NotCompilableError(
                f"stage {kind} has no SQL compiler (supported: {', '.join(_FEATURE_STAGES)})"
            )
        handler(stage, env)
        names.append(kind)
    last = stages[-1]
    kind = type(last).__name__
    vector = _vector(env, last.getFeaturesCol(), kind) if last.hasParam("featuresCol") else None
    if vector is None:
        raise NotCompilableError(f"the last stage {kind} is not a predictor")
    probability: Column | None
    if kind == "LogisticRegressionModel":
        prediction, probability = _logistic_regression(last, vector)
    elif kind == "LinearRegressionModel":
        coefficients = last.coefficients.toArray().tolist()
        prediction, probability = _dot(vector, coefficients) + F.lit(float(last.intercept)), None
    elif kind in _TREE_MODELS:
        prediction, probability = _tree_ensemble(last, vector, max_tree_nodes)
    else:
        raise NotCompilableError(f"model {kind} has no SQL compiler")
    names.append(kind)
    return CompiledModel(prediction, probability, tuple(sorted(vector.sources)), tuple(names))


# --------------------------------------------------------------------------- scikit-learn


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
            value = preds[0] if len(preds) == 1 else _sequential_sum(preds) / F.lit(float(len(preds)))
            return CompiledModel(value, None, tuple(columns), tuple(stages))

        probs = [_sk_tree(t.tree_, xs, _sk_leaf_positive(t.tree_)) for t in trees]
        probability = probs[0] if len(probs) == 1 else _sequential_sum(probs) / F.lit(float(len(probs)))
    elif hasattr(est, "coef_") and hasattr(est, "intercept_"):
        coef = [float(c) for c in list(est.coef_.ravel())]
        if len(coef) != len(xs):
            raise NotCompilableError(f"{kind} has {len(coef)} coefficients for {len(xs)} inputs")
        intercept = (
            float(est.intercept_.ravel()[0]) if hasattr(est.intercept_, "ravel") else float(est.intercept_)
        )
        decision = _sequential_sum([x * F.lit(c) for x, c in zip(xs, coef, strict=True)]) + F.lit(intercept)
        if classes is None:
            return CompiledModel(decision, None, tuple(columns), tuple(stages))
        if kind not in ("LogisticRegression", "LogisticRegressionCV"):
            raise NotCompilableError(f"{kind}: a linear classifier without logistic probabilities")
        probability = F.lit(1.0) / (F.lit(1.0) + F.exp(-decision))
    else:
        raise NotCompilableError(f"{kind} has no SQL compiler")
    prediction = F.when(probability > F.lit(float(threshold)), F.lit(high)).otherwise(F.lit(low))
    return CompiledModel(prediction, probability, tuple(columns), tuple(stages))
