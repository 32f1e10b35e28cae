"""Newton-CG: Nocedal & Wright, Numerical Optimization (2nd ed.), Algorithm 7.1
(line search Newton-CG), its inner solve being preconditioned conjugate
gradients (Algorithm 5.3) with a Kronecker-factored approximation of the
Hessian as preconditioner (objective.py).

Each inner iteration multiplies by the exact Hessian of g (objective.py: the
closed form, checked against the NumPy reference and autodiff). The inner
solve stops at the relative residual min(0.5, sqrt(||grad||)) (eq. 7.3,
superlinear convergence), at a direction of non-positive curvature (only
possible with l2 = 0), or after `max_inner` products. It never asks for a
residual below half of what the stopping rule needs: the residual
H p + grad is the quadratic model's gradient at the new point, so solving
further would buy accuracy that the run does not ask for.
"""

import concurrent.futures
import math

import tensorflow as tf

from logreg_tf.solvers.base import Solver


def _dot(a, b):
  return tf.reduce_sum(a * b)


def _cg_iteration(objective, at, preconditioner, p, r, d, rz):
  """One iteration of Algorithm 5.3 from (p, r, d, r^T z): the next
  (p, r, d, r^T z), ||r|| and d's curvature d^T H d; `at` is the Hessian's
  point (objective.curvature_at)."""
  hd = objective.hessian_times(at, d)
  curvature = _dot(d, hd)
  alpha = rz / curvature
  p = p + alpha * d
  r = r + alpha * hd
  z = objective.apply_preconditioner(preconditioner, r)
  rz_next = _dot(r, z)
  d = -z + (rz_next / rz) * d
  return p, r, d, rz_next, tf.norm(r), curvature


# One compiled call per inner iteration, where X is a tensor.
_cg_step = tf.function(_cg_iteration, autograph=False)


class NewtonCG(Solver):

  name = "newton_cg"

  def __init__(self, w0, use_bias: bool, l2: float, tol: float, b0=None,
               max_inner: int = 200):
    super().__init__(w0, use_bias, l2, tol, b0)
    self.max_inner = max_inner
    # The residual norm at which the model's next gradient meets the
    # stopping rule with a factor 2 to spare: ||grad||^2 / (2 l2) <= tol,
    # or with l2 = 0 its largest component (at most its norm) <= tol.
    enough = math.sqrt(2 * self.l2 * self.tol) if self.l2 > 0 else self.tol
    self.enough = enough / 2

  def current(self, objective):
    """The point at W; the first one is computed while the preconditioner's
    pixel basis (X^T X and its eigenvectors, made once per objective) is
    made on a thread: the point's first call is mostly tracing, Python on
    one core, the basis TensorFlow's kernels on both (on MNIST the two took
    0.80 s together against 1.07 s one after the other, 5 alternated pairs).
    For an objective held in memory; a streamed one reads its file for
    both, one after the other."""
    if self._point is not None or not objective.traceable:
      return super().current(objective)
    with concurrent.futures.ThreadPoolExecutor(
        1, thread_name_prefix="pixel-basis") as pool:
      basis = pool.submit(objective.pixel_basis)
      point = super().current(objective)
      basis.result()
    return point

  def newton_direction(self, objective, point):
    """An approximate solution of H p = -grad (Algorithm 7.1's inner loop)."""
    grad = point.grad
    norm = float(tf.norm(grad))
    tolerance = max(min(0.5, math.sqrt(norm)) * norm, self.enough)
    preconditioner = objective.preconditioner(point.logits)
    at = objective.curvature_at(point.logits)
    step = _cg_step if objective.traceable else _cg_iteration
    p, r = tf.zeros_like(grad), grad  # r: the residual H p + grad
    z = objective.apply_preconditioner(preconditioner, r)
    d, rz = -z, _dot(r, z)
    for j in range(self.max_inner):
      p_next, r, d, rz, residual, curvature = step(
          objective, at, preconditioner, p, r, d, rz)
      if float(curvature) <= 0:
        return -grad if j == 0 else p
      p = p_next
      if float(residual) <= tolerance:
        break
    return p

  def _iterate(self, objective):
    point = self.current(objective)
    direction = self.newton_direction(objective, point)
    return self.line_search(objective, direction,
                            float(_dot(point.grad, direction)))
