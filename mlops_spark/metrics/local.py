"""The same metrics on in-memory arrays (NumPy), for learners that fit on the driver or in a
Python worker (scikit-learn tuning trials, per-segment fits). Each function follows its
Spark twin formula for formula; tests check both against scikit-learn."""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from mlops_spark.metrics.frames import EPSILON


def _clip(p: np.ndarray[Any, np.dtype[np.float64]]) -> np.ndarray[Any, np.dtype[np.float64]]:
    clipped: np.ndarray[Any, np.dtype[np.float64]] = np.clip(p, EPSILON, 1.0 - EPSILON)
    return clipped


def _rank_metrics(y: np.ndarray[Any, Any], p: np.ndarray[Any, Any]) -> tuple[float | None, float | None]:
    scores, inverse = np.unique(p, return_inverse=True)
    pos = np.bincount(inverse, weights=y, minlength=len(scores))
    neg = np.bincount(inverse, weights=1.0 - y, minlength=len(scores))
    p_total, n_total = pos.sum(), neg.sum()
    if p_total == 0 or n_total == 0:
        return None, None
    neg_below = np.concatenate([[0.0], np.cumsum(neg)[:-1]])
    auc = float(np.sum(pos * (neg_below + 0.5 * neg)) / (p_total * n_total))
    tp_at = np.cumsum(pos[::-1])[::-1]
    fp_at = np.cumsum(neg[::-1])[::-1]
    ap = float(np.sum(pos * tp_at / (tp_at + fp_at)) / p_total)
    return auc, ap


def binary_metrics(label: ArrayLike, probability: ArrayLike, prediction: ArrayLike) -> dict[str, float]:
    """`mlops_spark.metrics.binary.binary_metrics` of one group, on arrays."""
    y = np.asarray(label, dtype=float)
    p = np.asarray(probability, dtype=float)
    yhat = np.asarray(prediction, dtype=float)
    n = float(len(y))
    if not n:
        return {"rows": 0.0}
    tp = float(np.sum(yhat * y))
    fp = float(np.sum(yhat * (1 - y)))
    fn = float(np.sum((1 - yhat) * y))
    tn = float(np.sum((1 - yhat) * (1 - y)))
    loss = np.where(y == 1.0, -np.log(_clip(p)), -np.log(_clip(1.0 - p)))
    out = {
        "rows": n,
        "positive_rate": float(y.mean()),
        "predicted_positive_rate": float(yhat.mean()),
        "mean_probability": float(p.mean()),
        "accuracy": (tp + tn) / n,
        "precision": tp / (tp + fp) if tp + fp else 0.0,
        "recall": tp / (tp + fn) if tp + fn else 0.0,
        "f1": 2 * tp / (2 * tp + fp + fn) if 2 * tp + fp + fn else 0.0,
        "log_loss": float(loss.mean()),
        "brier": float(np.mean((p - y) ** 2)),
    }
    auc, ap = _rank_metrics(y, p)
    if auc is not None and ap is not None:
        out["areaUnderROC"], out["average_precision"] = auc, ap
    return out


def regression_metrics(label: ArrayLike, prediction: ArrayLike) -> dict[str, float]:
    y = np.asarray(label, dtype=float)
    yhat = np.asarray(prediction, dtype=float)
    n = float(len(y))
    if not n:
        return {"rows": 0.0}
    err = yhat - y
    sse = float(np.sum(err * err))
    sst = float(np.sum((y - y.mean()) ** 2))
    r2 = 1.0 - sse / sst if sst > 0 else (1.0 if sse == 0 else 0.0)
    return {
        "rows": n,
        "rmse": float(np.sqrt(np.mean(err * err))),
        "mae": float(np.mean(np.abs(err))),
        "r2": r2,
        "bias": float(err.mean()),
        "label_mean": float(y.mean()),
        "mean_prediction": float(yhat.mean()),
    }


def multiclass_metrics(
    label: ArrayLike, prediction: ArrayLike, probabilities: ArrayLike | None = None
) -> dict[str, float]:
    y = np.asarray(label).astype(int)
    yhat = np.asarray(prediction).astype(int)
    n = float(len(y))
    if not n:
        return {"rows": 0.0}
    classes = np.union1d(y, yhat)
    precision, recall, f1, support = [], [], [], []
    for c in classes:
        tp = float(np.sum((y == c) & (yhat == c)))
        s = float(np.sum(y == c))
        pr = float(np.sum(yhat == c))
        precision.append(tp / pr if pr else 0.0)
        recall.append(tp / s if s else 0.0)
        f1.append(2 * tp / (s + pr) if s + pr else 0.0)
        support.append(s)
    out = {
        "rows": n,
        "accuracy": float(np.mean(y == yhat)),
        "macro_precision": float(np.mean(precision)),
        "macro_recall": float(np.mean(recall)),
        "macro_f1": float(np.mean(f1)),
        "weighted_f1": float(np.sum(np.asarray(f1) * np.asarray(support)) / np.sum(support)),
        "classes": float(len(classes)),
    }
    if probabilities is not None:
        proba = np.asarray(probabilities, dtype=float)
        p_true = proba[np.arange(len(y)), y]
        out["log_loss"] = float(np.mean(-np.log(_clip(p_true))))
    return out
