"""L-BFGS: Nocedal & Wright, Numerical Optimization (2nd ed.), Algorithm 7.5,
with the two-loop recursion of Algorithm 7.4 and the initial matrix
H0 = (s^T y / y^T y) I of eq. 7.20.

The line search is backtracking (Algorithm 3.1). That suffices here: g is
strongly convex with l2 > 0, so every step has s^T y >= l2 ||s||^2 > 0 and
the update stays positive definite without the Wolfe curvature condition;
with l2 = 0 a pair with s^T y <= 0 is skipped.
"""

import tensorflow as tf

from logreg_tf.solvers.base import Solver
from logreg_tf.solvers.objective import DTYPE


def _dot(a, b):
  return tf.reduce_sum(a * b)


class LBFGS(Solver):
  """The last `memory` pairs (s, y), newest last, in checkpointed variables."""

  name = "lbfgs"

  def __init__(self, w0, use_bias: bool, l2: float, tol: float, b0=None,
               memory: int = 10):
    super().__init__(w0, use_bias, l2, tol, b0)
    shape = [memory, *w0.shape]
    self.memory = memory
    self.s = tf.Variable(tf.zeros(shape, DTYPE), trainable=False)
    self.y = tf.Variable(tf.zeros(shape, DTYPE), trainable=False)
    self.pairs = tf.Variable(0, dtype=tf.int64, trainable=False)

  def variables(self):
    return {**super().variables(), "s": self.s, "y": self.y,
            "pairs": self.pairs}

  def direction(self, grad):
    """-H grad by the two-loop recursion (Algorithm 7.4)."""
    pairs = int(self.pairs)
    first = self.memory - pairs  # the stored pairs are the last `pairs`
    s, y = self.s, self.y
    q, alphas = grad, []
    for i in reversed(range(first, self.memory)):
      alpha = _dot(s[i], q) / _dot(y[i], s[i])
      q = q - alpha * y[i]
      alphas.append(alpha)
    if pairs:
      newest = self.memory - 1
      q = q * (_dot(s[newest], y[newest]) / _dot(y[newest], y[newest]))
    for i, alpha in zip(range(first, self.memory), reversed(alphas)):
      beta = _dot(y[i], q) / _dot(y[i], s[i])
      q = q + (alpha - beta) * s[i]
    return -q

  def _remember(self, s, y) -> None:
    """Appends the pair (newest last), dropping the oldest."""
    if float(_dot(s, y)) <= 1e-12 * float(tf.norm(s) * tf.norm(y)):
      return  # no curvature along s (l2 = 0 only): keep H positive definite
    self.s.assign(tf.concat([self.s[1:], s[None]], 0))
    self.y.assign(tf.concat([self.y[1:], y[None]], 0))
    self.pairs.assign(tf.minimum(self.pairs + 1, self.memory))

  def _iterate(self, objective):
    grad = tf.convert_to_tensor(self.grad)
    direction = self.direction(grad)
    slope = float(_dot(grad, direction))
    if slope >= 0:  # not a descent direction (rounding): start over
      self.pairs.assign(0)
      direction, slope = -grad, -float(_dot(grad, grad))
    found = self.line_search(objective, direction, slope)
    if found is not None:
      w, point = found
      self._remember(w - self.w, point.grad - grad)
    return found
