"""Evaluation beyond loss and accuracy: probabilities, the confusion matrix,
per-class precision / recall / F1, and calibration (ECE), in NumPy.

`analyze` computes them once; `evaluate` prints them and the figures draw
them.
"""

from typing import Dict, List, NamedTuple, Sequence

import numpy as np


class Analysis(NamedTuple):
  """What a model's logits on one split show, beyond loss and accuracy."""

  probabilities: np.ndarray  # [N, C]
  labels: np.ndarray  # [N]
  predictions: np.ndarray  # [N], the most probable class
  class_names: Sequence[str]
  confusion: np.ndarray  # [true, predicted] counts
  per_class: List[Dict[str, object]]  # precision, recall, f1, support
  ece: float
  reliability: List[Dict]  # the calibration table, one row per bin


def analyze(logits: np.ndarray, labels, class_names) -> Analysis:
  probs = probabilities(logits)
  labels = np.asarray(labels)
  predictions = probs.argmax(axis=1)
  confusion = confusion_matrix(labels, predictions, len(class_names))
  ece, table = calibration(probs, labels)
  return Analysis(probs, labels, predictions, tuple(class_names), confusion,
                  per_class(confusion, class_names), ece, table)


def probabilities(logits: np.ndarray) -> np.ndarray:
  """[N, C] class probabilities from [N, C] softmax or [N, 1] sigmoid logits."""
  logits = np.asarray(logits, np.float64)
  if logits.shape[1] == 1:
    p = 1 / (1 + np.exp(-logits[:, 0]))
    return np.stack([1 - p, p], axis=1)
  shifted = logits - logits.max(axis=1, keepdims=True)
  e = np.exp(shifted)
  return e / e.sum(axis=1, keepdims=True)


def confusion_matrix(labels, predictions, classes: int) -> np.ndarray:
  """[true, predicted] counts."""
  out = np.zeros((classes, classes), np.int64)
  np.add.at(out, (np.asarray(labels), np.asarray(predictions)), 1)
  return out


def per_class(confusion: np.ndarray, names) -> List[Dict[str, object]]:
  """Precision, recall, F1 and support of each class (0 where undefined)."""
  rows = []
  for k, name in enumerate(names):
    tp = confusion[k, k]
    predicted, support = confusion[:, k].sum(), confusion[k, :].sum()
    precision = tp / predicted if predicted else 0.0
    recall = tp / support if support else 0.0
    f1 = (2 * precision * recall / (precision + recall)
          if precision + recall else 0.0)
    rows.append({"class": name, "precision": float(precision),
                 "recall": float(recall), "f1": float(f1),
                 "support": int(support)})
  return rows


def calibration(probs: np.ndarray, labels, bins: int = 15):
  """Expected calibration error and its reliability table.

  Each example's confidence is the probability of its predicted class; the
  examples are binned by confidence in `bins` equal bins over [0, 1], and
  ECE is the mean over examples of |accuracy - confidence| of their bin.
  """
  confidence = probs.max(axis=1)
  correct = probs.argmax(axis=1) == np.asarray(labels)
  which = np.minimum((confidence * bins).astype(int), bins - 1)
  table, ece = [], 0.0
  for b in range(bins):
    members = which == b
    count = int(members.sum())
    if count:
      acc, conf = float(correct[members].mean()), float(
          confidence[members].mean())
      ece += count * abs(acc - conf)
    else:
      acc = conf = None
    table.append({"low": b / bins, "high": (b + 1) / bins, "count": count,
                  "accuracy": acc, "confidence": conf})
  return ece / max(len(confidence), 1), table
