"""Newton-CG: Nocedal & Wright, Numerical Optimization (2nd ed.), Algorithm 7.1
(line search Newton-CG), its inner solve being preconditioned conjugate
gradients (Algorithm 5.3) with a Kronecker-factored approximation of the
Hessian as preconditioner (objective.py).

Each inner iteration multiplies by the exact Hessian of g (objective.py: the
closed form, checked against the NumPy reference and autodiff). The inner
solve stops at the relative residual min(0.5, sqrt(||grad||)) (eq. 7.3,
superlinear convergence), at a direction of non-positive curvature (only
possible with l2 = 0), or after `max_inner` products.
"""

import math

import tensorflow as tf

from logreg_tf.solvers.base import Solver


def _dot(a, b):
  return float(tf.reduce_sum(a * b))


class NewtonCG(Solver):

  name = "newton_cg"

  def __init__(self, w0, use_bias: bool, l2: float, tol: float, b0=None,
               max_inner: int = 200):
    super().__init__(w0, use_bias, l2, tol, b0)
    self.max_inner = max_inner

  def newton_direction(self, objective, point):
    """An approximate solution of H p = -grad (Algorithm 7.1's inner loop)."""
    grad = point.grad
    norm = math.sqrt(_dot(grad, grad))
    tolerance = min(0.5, math.sqrt(norm)) * norm
    precondition = objective.preconditioner(point.logits)
    p = tf.zeros_like(grad)
    r = grad  # the residual H p + grad
    z = precondition(r)
    d = -z
    rz = _dot(r, z)
    for j in range(self.max_inner):
      hd = objective.hessian_product(point.logits, d)
      curvature = _dot(d, hd)
      if curvature <= 0:
        return -grad if j == 0 else p
      alpha = rz / curvature
      p = p + alpha * d
      r = r + alpha * hd
      if math.sqrt(_dot(r, r)) <= tolerance:
        break
      z = precondition(r)
      rz, rz_old = _dot(r, z), rz
      d = -z + (rz / rz_old) * d
    return p

  def _iterate(self, objective):
    point = self.current(objective)
    direction = self.newton_direction(objective, point)
    return self.line_search(objective, direction,
                            _dot(point.grad, direction))
