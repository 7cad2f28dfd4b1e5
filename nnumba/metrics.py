"""Metrics that ``evaluate`` reports and ``fit`` logs for the validation data.

Each metric is a function of the network's raw outputs z (n, k) (logits for the
classification losses), the targets T (n, k) and the integer labels (cross-entropy),
computed in float64 on the host:

=================  ===============================================================
name               value
=================  ===============================================================
accuracy           fraction of correct predictions: argmax z = label (cross-entropy),
                   (z > 0) = T per output (binary cross-entropy, sigmoid(z) > 1/2)
mae, mse           mean |z - T|, mean (z - T)^2 over samples and outputs (regression)
r2                 1 - sum (T - z)^2 / sum (T - mean T)^2 per output, averaged over
                   the outputs (scikit-learn's r2_score, "uniform_average")
auc                area under the ROC curve of a binary problem: one output with binary
                   cross-entropy, or two classes with cross-entropy (the score of class
                   1); the Mann-Whitney statistic with ties counted 1/2 (as scikit-
                   learn's roc_auc_score)
top_k_accuracy     fraction of samples whose label is among the k largest logits;
                   ``top_5_accuracy`` names k = 5 (cross-entropy)
=================  ===============================================================

Names are checked against the loss at ``compile``: a metric that needs labels is
refused for mse, and so on.
"""
import re

import numpy as np

from .backends import codes

CLASSIFICATION = (codes.BINARY_CROSS_ENTROPY, codes.CROSS_ENTROPY)


def accuracy(z, T, labels, loss):
    if loss == codes.CROSS_ENTROPY:
        return float(np.mean(np.argmax(z, axis=1) == labels))
    return float(np.mean((z > 0) == (T > 0.5)))


def mae(z, T, labels, loss):
    return float(np.mean(np.abs(z.astype(np.float64) - T)))


def mse(z, T, labels, loss):
    return float(np.mean((z.astype(np.float64) - T) ** 2))


def r2(z, T, labels, loss):
    T = T.astype(np.float64)
    residual = ((T - z) ** 2).sum(axis=0)
    total = ((T - T.mean(axis=0)) ** 2).sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        scores = np.where(total > 0, 1.0 - residual / total, np.where(residual > 0, 0.0, 1.0))
    return float(np.mean(scores))


def auc(z, T, labels, loss):
    if loss == codes.CROSS_ENTROPY:
        scores, positive = z[:, 1].astype(np.float64) - z[:, 0], labels == 1
    else:
        scores, positive = z[:, 0].astype(np.float64), T[:, 0] > 0.5
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")  # undefined with one class only
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores))
    sorted_scores = scores[order]
    # average ranks over ties: each run of equal scores gets the mean of its positions
    starts = np.flatnonzero(np.r_[True, sorted_scores[1:] != sorted_scores[:-1]])
    ends = np.r_[starts[1:], len(scores)]
    for a, b in zip(starts, ends):
        ranks[order[a:b]] = (a + b + 1) / 2.0
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def top_k_accuracy(z, T, labels, loss, k=5):
    k = min(k, z.shape[1])
    top = np.argpartition(-z, k - 1, axis=1)[:, :k]
    return float(np.mean((top == labels[:, None]).any(axis=1)))


METRICS = {"accuracy": accuracy, "mae": mae, "mse": mse, "r2": r2, "auc": auc,
           "top_k_accuracy": top_k_accuracy}
NEEDS = {"accuracy": CLASSIFICATION, "auc": CLASSIFICATION,
         "top_k_accuracy": (codes.CROSS_ENTROPY,), "mae": (codes.MSE, codes.MAE, codes.HUBER),
         "mse": (codes.MSE, codes.MAE, codes.HUBER), "r2": (codes.MSE, codes.MAE, codes.HUBER)}


def resolve(names, loss_code, n_out):
    """{name: function(z, T, labels)} for the names given to ``compile``; ValueError for
    an unknown name or one that does not fit the loss."""
    if names is None:
        return {}
    if isinstance(names, str) or not isinstance(names, (list, tuple)):
        raise TypeError(f"metrics must be a list of names, e.g. ['accuracy'], got {names!r}")
    found = {}
    for name in names:
        if not isinstance(name, str):
            raise TypeError(f"metrics must be names, got {name!r}")
        k = None
        match = re.fullmatch(r"top_(\d+)_accuracy", name)
        base = "top_k_accuracy" if match else name
        if match:
            k = int(match.group(1))
            if k < 1:
                raise ValueError(f"metric {name!r}: k must be >= 1")
        if base not in METRICS:
            raise ValueError(f"unknown metric {name!r}: expected one of "
                             f"{', '.join(map(repr, METRICS))} or 'top_<k>_accuracy'")
        if loss_code not in NEEDS[base]:
            raise ValueError(f"metric {name!r} does not apply to this loss (code {loss_code}): "
                             f"{'it needs class labels' if base in ('accuracy', 'auc', 'top_k_accuracy') else 'it is for regression'}")
        if base == "auc" and not (n_out == 1 or (loss_code == codes.CROSS_ENTROPY and n_out == 2)):
            raise ValueError(f"metric 'auc' is for binary problems: one output with "
                             f"binary_cross_entropy or two classes, but the model has {n_out} outputs")
        fn = METRICS[base]
        found[name] = (lambda z, T, labels, loss, fn=fn, k=k:
                       fn(z, T, labels, loss) if k is None else fn(z, T, labels, loss, k))
    return found
