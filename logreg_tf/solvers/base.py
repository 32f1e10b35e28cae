"""What every exact solver shares: its state, the line search, the stopping
rule and the certificate, checked where the rule is.

The state is tf.Variables only (the point W in float64, its bias b*(W), the
objective and gradient there, the iteration count and whether it stopped),
so a checkpoint holds a solver whole and a resumed run repeats the
iterations of a run done in one go, bit for bit.
"""

import math
from typing import Dict, Optional

from absl import logging
import tensorflow as tf

from logreg_tf.errors import NoOptimumError
from logreg_tf.solvers.objective import DTYPE, Objective, Point, bound_of

# Armijo's sufficient decrease constant (Nocedal & Wright, eq. 3.4).
ARMIJO = 1e-4
# Halvings before a line search gives up: the objective no longer resolves
# a lower value along the direction (float64's last digits).
MAX_HALVINGS = 60


class Solver:
  """A full-batch solver of g(W) (objective.py); `step` is one iteration."""

  name = "solver"

  def __init__(self, w0, use_bias: bool, l2: float, tol: float, b0=None):
    """From W = w0 (and the bias search from b0, default 0)."""
    self.l2, self.tol = float(l2), float(tol)
    shape = w0.shape
    self.iterations = tf.Variable(0, dtype=tf.int64, trainable=False)
    self.w = tf.Variable(tf.cast(w0, DTYPE), trainable=False)
    self.b = None
    if use_bias:
      self.b = tf.Variable(tf.zeros([shape[1]], DTYPE) if b0 is None
                           else tf.cast(b0, DTYPE), trainable=False)
    self.value = tf.Variable(math.nan, dtype=DTYPE, trainable=False)
    self.grad = tf.Variable(tf.zeros(shape, DTYPE), trainable=False)
    self.converged = tf.Variable(False, trainable=False)
    self.stalled = tf.Variable(False, trainable=False)
    self._point: Optional[Point] = None  # the current point, when computed

  def variables(self) -> Dict[str, tf.Variable]:
    """The state, by checkpoint name."""
    out = {"w": self.w, "value": self.value, "grad": self.grad,
           "converged": self.converged, "stalled": self.stalled}
    if self.b is not None:
      out["b"] = self.b
    return out

  @property
  def finished(self) -> bool:
    return bool(self.converged) or bool(self.stalled)

  def current(self, objective: Objective) -> Point:
    """The point at W (computed again after a restore: the same bits)."""
    if self._point is None:
      self._point = objective.point(self.w, self._bias_start())
      if int(self.iterations) == 0:  # a new solver: its state starts here
        self._accept(self.w, self._point)
    return self._point

  def _bias_start(self):
    """Where the bias search starts: the current bias (none: empty)."""
    return self.b if self.b is not None else tf.zeros([0], DTYPE)

  def _accept(self, w, point: Point) -> None:
    self.w.assign(w)
    if self.b is not None:
      self.b.assign(point.bias)
    self.value.assign(point.value)
    self.grad.assign(point.grad)
    self._point = point

  def line_search(self, objective: Objective, direction, slope):
    """Backtracking from the unit step until the Armijo condition holds
    (Nocedal & Wright, Algorithm 3.1). Returns (W, point), or None when no
    halving lowers the objective."""
    t = 1.0
    for _ in range(MAX_HALVINGS):
      w = self.w + t * direction
      point = objective.point(w, self._bias_start())
      if float(point.value) <= float(self.value) + ARMIJO * t * slope:
        return w, point
      t /= 2
    return None

  def step(self, objective: Objective) -> Point:
    """One iteration; then the stopping rule at the new point."""
    point = self.current(objective)
    found = self._iterate(objective)
    if found is None:  # then steepest descent, before giving up
      found = self.line_search(objective, -point.grad,
                               -float(tf.reduce_sum(point.grad ** 2)))
    if found is None:
      self.stalled.assign(True)
      logging.warning(
          "%s: no step lowers the objective at iteration %d (float64 cannot "
          "resolve more progress); stopping with gradient norm %.3e%s",
          self.name, int(self.iterations) + 1, float(tf.norm(point.grad)),
          "" if self.l2 <= 0 else f", suboptimality bound {self.bound():.3e}")
    else:
      self._accept(*found)
    self.iterations.assign_add(1)
    self.check(objective)
    return self._point

  def solve(self, objective: Objective, max_iter: Optional[int] = None):
    """Iterates until the stopping rule holds (or `max_iter` iterations)."""
    while not self.finished and (max_iter is None
                                 or int(self.iterations) < max_iter):
      self.step(objective)
    return self

  def _iterate(self, objective: Objective):
    """The solver's own iteration: the new (W, point), or None."""
    raise NotImplementedError

  def bound(self) -> Optional[float]:
    return bound_of(self.grad, self.l2)

  def check(self, objective: Objective) -> None:
    """The stopping rule, with the certificate: with l2 > 0, stop once
    g(W) - f* <= ||grad||^2 / (2 l2) <= tol; with l2 = 0, once the
    gradient's largest component is. With l2 = 0 a point that classifies
    every training example right proves there is no finite optimum: scaling
    W (and b) up lowers the loss towards 0 without end; such runs go on
    until it does (or until --max_iter), since their gradient vanishes
    without an optimum being near."""
    point = self._point
    if self.l2 > 0:
      self.converged.assign(self.bound() <= self.tol)
      return
    if int(point.correct) == objective.n:
      raise NoOptimumError(
          f"no finite optimum: at iteration {int(self.iterations)} the "
          f"weights classify all {objective.n} training examples right (the "
          "classes are linearly separable), so with --l2=0 the loss falls "
          "towards 0 as the weights grow without end; add a penalty, e.g. "
          "--l2=1e-4")
    small = float(tf.reduce_max(tf.abs(point.grad))) <= self.tol
    # A small gradient is not enough without a penalty: on (nearly)
    # separable classes it shrinks while the weights still want to grow. An
    # optimum is the least value along every ray, the one through W included.
    self.converged.assign(small and float(objective.point(
        2.0 * self.w, self._bias_start()).value) >= float(self.value))

  def record(self) -> dict:
    """run.json's "optimization" entry."""
    return {"solver": self.name, "objective": float(self.value),
            "gradient_norm": float(tf.norm(self.grad)),
            "suboptimality_bound": self.bound(),
            "iterations": int(self.iterations),
            "converged": bool(self.converged)}
