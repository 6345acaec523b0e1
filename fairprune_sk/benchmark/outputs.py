"""Reading one method's final model on one split: probabilities, correctness, the audit table.


- nets and ``gridsearch``: ``predict_proba`` for the loss, its argmax for the accuracy;
- ``eg`` is a randomized classifier (a mixture of nets with weights ``weights_``). Its accuracy is
  the *expected* accuracy of the mixture, from fairlearn's ``_pmf_predict`` (exact, no sampling).
  Its loss uses, by default (``eg_proba="soft"``), the mixture of the members' ``predict_proba``,
  ``Σ_t w_t p_t(y | x)``. ``eg_proba="pmf"`` uses ``_pmf_predict`` instead, which mixes the
  members' *hard* predictions: a sample that every member misclassifies then gets probability
  0, clipped to 1e-12, i.e. a loss of 27.6 nats, so the losses measure error counts rather than
  confidence and are not comparable with the other methods;
- ``threshold`` has no class probabilities (it thresholds scores per group), so its losses,
  ``R(a)``, ``ξ`` and flip rates are NaN; its accuracies (expected accuracy of its randomized
  thresholds, from ``_pmf_predict``), accuracy gaps and excess accuracy gaps ψ_g are real.

Every per-group table is an :class:`~fairprune_sk.ExcessRiskFrame` (built with
``ExcessRiskFrame.from_outputs``), so the columns are the frame's (:data:`GROUP_COLUMNS` =
``FRAME_COLUMNS``) and ξ is ``fairness_violation`` everywhere.

The fairness constraint is enforced on training data; how well it holds on test data is a
different matter, so every summary reports both ``fairness_violation`` (test) and
``train_fairness_violation``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ..metrics import ExcessRiskFrame
from ..nets import PrunableNetClassifier


@dataclass
class _Split:
    """One evaluation split, with labels encoded against the dense net's classes."""

    X: Any
    y: np.ndarray
    y_index: np.ndarray
    A: Any



def _columns_by_class(estimator: Any, X: Any, n_classes: int) -> np.ndarray:
    """``predict_proba`` of a member of a fairlearn mixture, one column per label 0..K-1.

    Members trained on relabelled data may have seen one class only (fairlearn then fits a
    ``DummyClassifier``), so columns are placed by ``classes_``.
    """
    proba = np.asarray(estimator.predict_proba(X), dtype=np.float64)
    out = np.zeros((proba.shape[0], n_classes))
    for column, label in enumerate(np.asarray(estimator.classes_)):
        out[:, int(label)] = proba[:, column]
    return out


def _eg_soft_proba(eg: Any, X: Any, n_classes: int) -> np.ndarray:
    """``Σ_t w_t p_t(y | x)``: the EG mixture of its members' class probabilities."""
    proba = np.zeros((len(X), n_classes))
    for index, weight in eg.weights_.items():
        if weight > 0:
            proba += weight * _columns_by_class(eg.predictors_[index], X, n_classes)
    return proba


def _expected_correct(pmf: Any, y_index: np.ndarray) -> np.ndarray:
    """Probability that a randomized classifier with this pmf predicts the true label."""
    pmf = np.asarray(pmf, dtype=np.float64)
    return pmf[np.arange(len(y_index)), y_index]


def _eg_expected_correct(eg: Any, X: Any, y_index: np.ndarray) -> np.ndarray:
    """Expected accuracy per sample of EG's randomized mixture of hard predictions."""
    pmf = eg._pmf_predict(X)
    if isinstance(pmf, pd.DataFrame):  # loss moments: one column of predictions per member
        predictions = pmf[eg.weights_.index].to_numpy()
        hits = predictions == y_index[:, None]
        return hits @ eg.weights_.to_numpy(dtype=np.float64)
    return _expected_correct(pmf, y_index)


def _outputs(method: str, model: Any, split: _Split, *, n_classes: int,
             eg_proba: str) -> tuple[np.ndarray | None, np.ndarray]:
    """Class probabilities (None if the model has none) and per-sample (expected) correctness."""
    if method == "threshold":
        pmf = model._pmf_predict(split.X, sensitive_features=split.A)
        return None, _expected_correct(pmf, split.y_index)
    if method == "eg":
        correct = _eg_expected_correct(model, split.X, split.y_index)
        if eg_proba == "pmf":
            proba = model._pmf_predict(split.X)
            if isinstance(proba, pd.DataFrame):  # loss moments give no pmf over classes
                return None, correct
            return np.asarray(proba, dtype=np.float64), correct
        return _eg_soft_proba(model, split.X, n_classes), correct
    if method == "gridsearch":  # the selected member may be a one-class DummyClassifier
        proba = _columns_by_class(model.predictors_[model.best_idx_], split.X, n_classes)
    else:
        proba = np.asarray(model.predict_proba(split.X), dtype=np.float64)
    return proba, (proba.argmax(axis=1) == split.y_index).astype(np.float64)


def _audit_frame(split: _Split, classes: np.ndarray, proba_dense: np.ndarray,
           proba_after: np.ndarray | None, correct_after: np.ndarray) -> ExcessRiskFrame:
    """The audit table of a final model against θ* on one split (the one implementation)."""
    return ExcessRiskFrame.from_outputs(
        split.y, proba_dense, proba_after, sensitive_features=split.A, classes=classes,
        correct_pruned=correct_after,
    )


def _run_metrics(frame: ExcessRiskFrame) -> dict[str, float]:
    """:data:`RUN_METRICS` of one frame (NaN where the model has no probabilities)."""
    overall = frame.overall
    return {
        "accuracy": float(overall["accuracy_pruned"]),
        "fairness_violation": frame.fairness_violation,
        "max_excess_accuracy_gap": frame.max_excess_accuracy_gap,
        "accuracy_gap": frame.accuracy_gap,
        "worst_group_accuracy": frame.worst_group_accuracy,
        "flip_rate": float(overall["flip_rate"]),
    }


def _own_dense_accuracy(method: str, model: Any, rate: float, split: _Split,
                        classes: np.ndarray, by_group: pd.DataFrame) -> pd.Series:
    """Per-group accuracy of the dense net the method pruned (see ``MethodResult``)."""
    if method in ("none", "threshold"):
        return by_group["accuracy_dense"].copy()
    net = model
    if method == "gridsearch":
        net = model.predictors_[model.best_idx_]
    nan = pd.Series(np.nan, index=by_group.index, name="accuracy_dense")
    if method == "eg" or not isinstance(net, PrunableNetClassifier):
        return nan
    if rate == 0 or getattr(net, "dense_state_dict_", None) is None:
        return by_group["accuracy_pruned"].rename("accuracy_dense")
    own = net.dense_reference()
    proba_own = _columns_by_class(own, split.X, len(classes))
    frame = ExcessRiskFrame.from_outputs(split.y, proba_own, proba_own,
                                         sensitive_features=split.A, classes=classes)
    return frame.by_group["accuracy_dense"]


def _model_sparsity(method: str, model: Any) -> float:
    if method == "eg":
        weights = model.weights_
        values = [(w, getattr(model.predictors_[i], "sparsity_", np.nan))
                  for i, w in weights.items() if w > 0]
        total = sum(w for w, s in values if not np.isnan(s))
        return float(sum(w * s for w, s in values if not np.isnan(s)) / total) if total else np.nan
    if method == "gridsearch":
        return float(getattr(model.predictors_[model.best_idx_], "sparsity_", np.nan))
    if method == "threshold":
        return float(model.estimator.sparsity_)
    return float(model.sparsity_)

