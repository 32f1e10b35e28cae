"""The regularisation path: one exact solve per l2, strongest penalty first,
each solve warm-started, as glmnet and scikit-learn's
`_logistic_regression_path` walk it, and from a prediction of its optimum:
the quadratic in log l2 through the last three optima (a predictor step
of continuation methods; Allgower & Georg, Introduction to Numerical
Continuation Methods, ch. 2).

A strongly penalised problem is well conditioned and its optimum is near 0;
each weaker one starts next to its own optimum, so the path costs a few
cold solves, not one per point.
"""

import time
from typing import List, NamedTuple, Optional

import numpy as np
import tensorflow as tf

from logreg_tf.solvers import SOLVERS
from logreg_tf.solvers.objective import DTYPE, Objective


class Trial(NamedTuple):
  """One point of the path: the solve's record and its weights."""
  l2: float
  objective: float
  gradient_norm: float
  suboptimality_bound: Optional[float]
  iterations: int
  converged: bool
  seconds: float
  kernel: np.ndarray  # [D, K], float64
  bias: Optional[np.ndarray]  # [K]

  def record(self) -> dict:
    return {k: v for k, v in self._asdict().items()
            if k not in ("kernel", "bias")}


# Solved points the next start is extrapolated from: 3, a quadratic in
# log l2 (on MNIST's 25-point path, 42 Newton iterations in all against 52
# for a line through two and 74 for the last point alone).
EXTRAPOLATED_FROM = 3


def extrapolated(done, l2: float):
  """The weights at l2 predicted from the last solved points `done`,
  [(l2, W), ...]: the polynomial in log l2 through them (Lagrange's form),
  evaluated at log l2. The optimum moves smoothly with the penalty, so
  this starts each solve nearer its optimum than the last point does."""
  if not done:
    return None
  t = np.log([l for l, _ in done])
  at = np.log(l2)
  start = 0
  for j, (_, w) in enumerate(done):
    others = np.delete(t, j)
    start += float(np.prod((at - others) / (t[j] - others))) * w
  return start


def solve_path(objective: Objective, outputs: int, l2s: List[float],
               solver: str, tol: float, max_iter: int,
               log=lambda trial: None) -> List[Trial]:
  """One solve per l2 (strongest first), each started from the
  extrapolation of the points before it; the trials in the order of
  `l2s`."""
  w = tf.zeros([objective.features, outputs], DTYPE)
  b = None
  trials = {}
  done = []  # the last EXTRAPOLATED_FROM solved (l2, W)
  for l2 in sorted(l2s, reverse=True):
    start = time.perf_counter()
    objective.l2 = l2
    predicted = extrapolated(done, l2)
    run = SOLVERS[solver](w if predicted is None else predicted,
                          objective.use_bias, l2, tol, b).solve(
                              objective, max_iter)
    w = tf.convert_to_tensor(run.w)
    done = (done + [(l2, w)])[-EXTRAPOLATED_FROM:]
    b = None if run.b is None else tf.convert_to_tensor(run.b)
    record = run.record()
    trials[l2] = Trial(
        l2, record["objective"], record["gradient_norm"],
        record["suboptimality_bound"], record["iterations"],
        record["converged"], time.perf_counter() - start, w.numpy(),
        None if b is None else b.numpy())
    log(trials[l2])
  return [trials[l2] for l2 in l2s]


def metrics(trial: Trial, head, x, y) -> dict:
  """Mean cross-entropy and accuracy of a trial's weights on (x, y)."""
  logits = tf.matmul(tf.cast(x, DTYPE), trial.kernel)
  if trial.bias is not None:
    logits += trial.bias
  loss_sum, correct = head.metrics(logits, y)
  n = int(x.shape[0])
  return {"loss": float(loss_sum) / n, "accuracy": int(correct) / n}
