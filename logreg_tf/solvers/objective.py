"""The objective the exact solvers minimise, with the bias minimised out.

  f(W, b) = mean cross-entropy(X W + b, y) + 0.5 * l2 * ||W||^2

(the bias is not penalised). For each W the biases are solved exactly,
b*(W) = argmin_b f(W, b), by Newton's method on the K biases over the
logits X W, which costs O(N K) per step against O(N D K) for a pass over X.
The solvers then minimise the reduced objective g(W) = f(W, b*(W)), whose
gradient is grad_W f(W, b*(W)) (the bias gradient is zero there) and whose
Hessian is the Schur complement H_WW - H_Wb H_bb^-1 H_bW.

The certificate. f is convex in (W, b) and l2-strongly convex in W, so g is
l2-strongly convex (a partial minimum of a jointly convex function, plus the
penalty), and g(W) - f* <= ||grad g(W)||^2 / (2 l2). At any point (W, b),
an SGD checkpoint's for instance,

  f(W, b) - f* <= [f(W, b) - g(W)] + ||grad g(W)||^2 / (2 l2),

the first term the bias's own gap, computed. The exact solvers keep b = b*(W),
so for them the first term is zero. With l2 = 0 there is no such bound.

Everything here runs in float64: the bound wants gradients accurate to 1e-7,
past what float32 sums of 60,000 products give. X itself stays float32 (its
pixels k/255 lose nothing): the float64 products cast it row block by row
block (`_by_blocks`, blocks sized by blocks.block_rows), so no float64
copy of X, twice its size, is ever made.
"""

from typing import NamedTuple, Optional

import tensorflow as tf

from logreg_tf.blocks import block_rows

DTYPE = tf.float64
# The bias search ends when every bias derivative is below this: it moves
# grad g by about as much, far below what the certificate can see.
BIAS_TOLERANCE = 1e-12
# Rows of X, at most, on which Newton-CG's preconditioner estimates its
# scaling (a strided sample: every ceil(N / this)-th row).
PRECONDITIONER_SAMPLE = 10_000


class Point(NamedTuple):
  """The reduced objective at W, with what the solvers and the log need."""
  value: tf.Tensor  # g(W)
  grad: tf.Tensor  # grad g(W) [D, K]
  bias: Optional[tf.Tensor]  # b*(W) [K], or None without a bias
  logits: tf.Tensor  # X W + b*(W) [N, K]
  correct: tf.Tensor  # training examples predicted right


class Curvature(NamedTuple):
  """The Hessian of f at a point, as its products need it."""
  logits: tf.Tensor  # X W + b*(W) in float32 [N, K]
  h_bb: Optional[tf.Tensor]  # the bias block, mean J_i [K, K]
  h_bw: Optional[tf.Tensor]  # the bias-by-weights block: [l, k, :] is
  # mean_i J_i[k, l] x_i, so that (H_bW v)_k = sum_l,d h_bw[l, k, d] v[d, l]


class Certificate(NamedTuple):
  objective: float  # f(W, b)
  gradient_norm: float  # ||grad g(W)||
  suboptimality_bound: Optional[float]  # f(W, b) - f* is at most this

  def as_dict(self) -> dict:
    return self._asdict()


def _damped(hessian):
  """The bias Hessian plus a ridge relative to its dtype: on saturated
  logits (every p near 0 or 1, as separable classes drive them) it is
  singular, and the ridge keeps the Newton and Schur steps finite (the line
  search then decides)."""
  eps = 1e-12 if hessian.dtype == tf.float64 else 1e-8
  eye = tf.eye(tf.shape(hessian)[0], dtype=hessian.dtype)
  # Logits that overflowed (a trial step far too long) give no Hessian: an
  # identity keeps the solve defined; the line search rejects the point.
  return tf.where(tf.reduce_all(tf.math.is_finite(hessian)),
                  hessian + eps * eye, eye)


def _mean_loss(head, logits, y):
  return tf.reduce_mean(head.loss(logits, y))


class Objective:
  """g(W), its gradient and Hessian products on one training set."""

  # Its products may be traced into a caller's tf.function (X is a tensor).
  traceable = True

  def __init__(self, head, x, y, l2: float, use_bias: bool,
               bias_iterations: int = 50):
    self.head, self.use_bias = head, use_bias
    # A variable, so that a regularisation path changes it without tracing
    # the functions again.
    self._l2 = tf.Variable(float(l2), dtype=DTYPE, trainable=False)
    self.y = y
    self.n, self.features = int(x.shape[0]), int(x.shape[1])
    # Float64 row blocks of X, made one at a time while in the cache.
    self._rows = block_rows(self.features, bytes_per_value=8) or self.n
    self._rows32 = block_rows(self.features) or self.n  # float32 products
    self._blocks = -(-self.n // self._rows)
    self._hold(x)
    self.bias_iterations = bias_iterations
    self._traced_point = tf.function(self._point, autograph=False)
    self.curvature_at = tf.function(self._curvature_at, autograph=False)
    self.hessian_times = tf.function(self._hessian_times, autograph=False)
    # One graph instead of some 40 eager ops a Newton iteration.
    self._traced_preconditioner = tf.function(self._preconditioner,
                                              autograph=False)
    self._basis = None  # pixel_basis(), when made

  def _hold(self, x) -> None:
    """Keeps X: in memory, as float32 (x itself when it is float32)."""
    self.x32 = tf.cast(x, tf.float32)

  @property
  def l2(self) -> float:
    return float(self._l2)

  @l2.setter
  def l2(self, value: float) -> None:
    self._l2.assign(float(value))

  def _penalty(self, w):
    return 0.5 * self._l2 * tf.reduce_sum(tf.square(w))

  def refit_bias(self, z, b):
    """b*(W) from logits z = X W, by Newton's method from `b` with
    backtracking (Armijo), until the bias gradient's largest component is
    below BIAS_TOLERANCE or a step no longer lowers the loss."""
    head, y = self.head, self.y

    def loss(b):
      return _mean_loss(head, z + b, y)

    def newton_step(i, b, f, done):
      del done
      _, delta = head.loss_and_delta(z + b, y)
      g = tf.reduce_mean(delta, axis=0)
      if_small = tf.reduce_max(tf.abs(g)) < BIAS_TOLERANCE
      step = -tf.linalg.solve(_damped(head.bias_hessian(z + b)),
                              g[:, None])[:, 0]
      step = tf.where(tf.math.is_finite(step), step, tf.zeros_like(step))
      slope = tf.reduce_sum(g * step)

      def shorter(t, f_t):
        del f_t
        t = t / 2
        return t, loss(b + t * step)

      t, f_t = tf.while_loop(
          lambda t, f_t: tf.logical_and(f_t > f + 1e-4 * t * slope, t > 1e-8),
          shorter, (tf.constant(1.0, DTYPE), loss(b + step)))
      better = tf.logical_and(f_t < f, tf.logical_not(if_small))
      return (i + 1, tf.where(better, b + t * step, b),
              tf.where(better, f_t, f), tf.logical_not(better))

    _, b, _, _ = tf.while_loop(
        lambda i, b, f, done: tf.logical_and(
            i < self.bias_iterations, tf.logical_not(done)),
        newton_step, (tf.constant(0), b, loss(b), tf.constant(False)))
    return b

  def _by_blocks(self, fn, initial, dtype=DTYPE):
    """fn(state, start, X[start:start + rows] in `dtype`) over X's row
    blocks (_rows of them in float64, _rows32 in float32), one after the
    other: a loop in the graph, so that one float64 block exists at a time
    and the graph's size does not grow with the number of blocks (unrolled,
    MNIST's 12 float32 blocks made tracing take 0.2 to 0.5 s a function);
    one block on a GPU."""
    rows = self._rows if dtype == DTYPE else self._rows32

    def body(i, state):
      start = i * rows
      return i + 1, fn(state, start,
                       tf.cast(self.x32[start:start + rows], dtype))
    return tf.while_loop(lambda i, _: i < -(-self.n // rows), body,
                         (tf.constant(0), initial))[1]

  def _logits(self, w):
    """X W in float64."""
    z = tf.TensorArray(DTYPE, size=self._blocks, infer_shape=False)
    z = self._by_blocks(lambda z, start, xb: z.write(
        start // self._rows, tf.matmul(xb, w)), z)
    return tf.ensure_shape(z.concat(), [self.n, w.shape[1]])

  def _transposed_product(self, delta):
    """delta^T X in float64 [K, D], a block of rows at a time."""
    return self._by_blocks(
        lambda total, start, xb: total + tf.matmul(
            delta[start:start + tf.shape(xb)[0]], xb, transpose_a=True),
        tf.zeros([delta.shape[1], self.features], DTYPE))

  def point(self, w, b) -> Point:
    """g(W) and its gradient; `b` is where the bias search starts (None or
    empty without a bias). Either may be a variable (a solver's state) or a
    tensor (a trial step): both are read as tensors, so that the function is
    traced once, not once for each (its first trace and call take 0.4 to
    0.7 s on MNIST)."""
    b = tf.zeros([0], DTYPE) if b is None else tf.convert_to_tensor(b)
    return self._traced_point(tf.convert_to_tensor(w), b)

  def _point(self, w, b) -> Point:
    z = self._logits(w)
    if self.use_bias:
      b = self.refit_bias(z, b)
      z = z + b
    losses, delta = self.head.loss_and_delta(z, self.y)
    n = tf.constant(self.n, DTYPE)
    grad = tf.transpose(self._transposed_product(delta)) / n
    correct = tf.reduce_sum(tf.cast(
        tf.equal(self.head.predict(z), tf.cast(self.y, tf.int64)), tf.int64))
    return Point(tf.reduce_mean(losses) + self._penalty(w),
                 grad + self._l2 * w, b if self.use_bias else None, z,
                 correct)

  def _curvature_at(self, logits) -> Curvature:
    """What every Hessian product at the point of `logits` shares, made once
    per Newton iteration (one product of X with K^2 columns)."""
    logits = tf.cast(logits, tf.float32)
    if not self.use_bias:
      return Curvature(logits, None, None)
    k = logits.shape[1]
    h_bw = tf.reshape(self._curvature_columns_times_x(logits),
                      [k, k, self.features]) / self.n
    return Curvature(logits, self.head.bias_hessian(logits), h_bw)

  def _curvature_columns(self, logits):
    """[rows, K^2]: column l * K + k holds each example's J_i[k, l] (J_i is
    symmetric, so also column k * K + l), from the head's closed form."""
    k = logits.shape[1]
    return tf.reshape(self.head.curvature_matrices(logits),
                      [tf.shape(logits)[0], k * k])

  def _curvature_columns_times_x(self, logits):
    """_curvature_columns(logits)^T X [K^2, D], a row block at a time (so
    that the K^2 columns exist for one block only)."""
    k = logits.shape[1]
    return self._by_blocks(
        lambda total, start, xb: total + tf.matmul(self._curvature_columns(
            logits[start:start + tf.shape(xb)[0]]), xb, transpose_a=True),
        tf.zeros([k * k, self.features], tf.float32), tf.float32)

  def _hessian_times(self, at: Curvature, v):
    """The reduced Hessian of g at the point `at` (curvature_at) times v
    [D, K]: X^T J (X v + db) / N + l2 v, where J is each example's Hessian
    by its logits and db = -H_bb^-1 H_bW v is how the optimal bias moves
    with W. Since db comes from H_bW, made once per point, X is read once
    per product: each row block's X v, J and share of X^T are done while
    the block is in the cache.

    In float32, three times as fast as float64 here: a Hessian product only
    steers Newton-CG's direction (its relative error, about 1e-6, is far
    below the inner solve's tolerance), while the gradient and objective,
    which the certificate and the line search read, stay in float64."""
    v32 = tf.cast(v, tf.float32)
    db = tf.zeros([v.shape[1]], tf.float32)
    if self.use_bias:
      moved = tf.einsum("lkd,dl->k", at.h_bw, v32)  # H_bW v
      db = -tf.linalg.solve(_damped(at.h_bb), moved[:, None])[:, 0]
    hv = self._curvature_pass(at.logits, v32, db)
    return (tf.cast(tf.transpose(hv), DTYPE) / tf.constant(self.n, DTYPE)
            + self._l2 * v)

  def _curvature_pass(self, logits, v, db):
    """(J (X v + db))^T X [K, D] in float32, a row block at a time."""
    return self._by_blocks(
        lambda total, start, xb: total + tf.matmul(self.head.curvature(
            logits[start:start + tf.shape(xb)[0]], tf.matmul(xb, v) + db),
            xb, transpose_a=True),
        tf.zeros([v.shape[1], self.features], tf.float32), tf.float32)

  def _x_gram(self):
    """X^T X in float32."""
    return tf.matmul(self.x32, self.x32, transpose_a=True)

  def _sample_stride(self) -> int:
    return max(1, -(-self.n // PRECONDITIONER_SAMPLE))

  def _sample_rows(self):
    """Every _sample_stride()-th row of X, float32."""
    return self.x32[::self._sample_stride()]

  def pixel_basis(self):
    """The eigenvectors U of G = X^T X / N and, for a sample of the rows,
    the squares of their coordinates in it, (U^T x_i)^2 [S, D] (made once:
    X does not change)."""
    if self._basis is None:
      _, u = tf.linalg.eigh(tf.cast(self._x_gram() / self.n, DTYPE))
      coordinates = tf.matmul(self._sample_rows(), tf.cast(u, tf.float32))
      self._basis = (u, tf.cast(tf.square(coordinates), DTYPE))
    return self._basis

  def preconditioner(self, logits):
    """M^-1 for Newton-CG, in the eigenbasis of the Kronecker factorisation
    of K-FAC (Martens & Grosse, 2015): the weights' Hessian
    sum_i x_i x_i^T V J_i / N with the examples' pixels and curvatures
    taken as independent is G V A (G = X^T X / N, A = mean J_i), whose
    eigenvectors are U (G's) and Q (A's). It captures how pixels move
    together, which makes a weak penalty's Hessian ill-conditioned. The
    scaling along U_d Q_k^T is not K-FAC's product of eigenvalues but the
    Hessian's own curvature there, mean_i (U_d^T x_i)^2 (Q_k^T J_i Q_k),
    estimated on a sample of at most PRECONDITIONER_SAMPLE rows (EKFAC:
    George et al., 2018), plus l2. Both bases are small and the scaling a
    [D, K] product, so M^-1 costs two small products
    (apply_preconditioner). Returns the factors (U, Q, scale)."""
    u, squares = self.pixel_basis()
    return self._traced_preconditioner(logits, u, squares)

  def _preconditioner(self, logits, u, squares):
    _, q = tf.linalg.eigh(self.head.mean_curvature(logits))
    sample = logits[::self._sample_stride()]
    # Q_k^T J_i Q_k for each sampled example i and class direction k, in
    # float64: along 1 (softmax) it is 0 up to rounding, which must stay
    # far below a weak penalty.
    along = tf.stack([tf.reduce_sum(q[:, k] * self.head.curvature(
        sample, tf.broadcast_to(q[:, k], tf.shape(sample))), axis=1)
                      for k in range(q.shape[1])], axis=1)
    curvature = tf.matmul(squares, along, transpose_a=True) / tf.cast(
        tf.shape(sample)[0], DTYPE)
    scale = tf.maximum(curvature, 0) + self._l2
    scale = tf.maximum(scale, 1e-10 * tf.reduce_max(scale))
    return u, q, scale

  @staticmethod
  def apply_preconditioner(factors, r):
    """M^-1 r, from preconditioner()'s factors."""
    u, v, scale = factors
    return u @ ((tf.transpose(u) @ r @ v) / scale) @ tf.transpose(v)

  def initial_bias(self, outputs: int):
    return tf.zeros([outputs], DTYPE) if self.use_bias else None

  def certificate(self, w, b=None) -> Certificate:
    """How far (W, b) is from the optimum: f(W, b), ||grad g(W)|| and the
    bound (None with l2 = 0). `b` None: the bias is b*(W) (or absent)."""
    w = tf.cast(w, DTYPE)
    point = self.point(w, self.initial_bias(w.shape[1]) if b is None
                       else tf.cast(b, DTYPE))
    value = float(point.value)
    if b is not None and self.use_bias:  # f(W, b): the point's X W, b's bias
      value = float(_mean_loss(self.head, point.logits - point.bias
                               + tf.cast(b, DTYPE), self.y)
                    + self._penalty(w))
    norm = float(tf.norm(point.grad))
    bound = None
    if self.l2 > 0:
      bound = max(value - float(point.value), 0.0) + norm ** 2 / (2 * self.l2)
    return Certificate(value, norm, bound)


def bound_of(grad, l2: float) -> Optional[float]:
  """The suboptimality bound ||grad g(W)||^2 / (2 l2) at a point where
  b = b*(W); None with l2 = 0."""
  if l2 <= 0:
    return None
  return float(tf.reduce_sum(tf.square(grad))) / (2 * l2)


def objective_for(head, x, y, l2: float, use_bias: bool) -> Objective:
  """The objective on the training set (x, y): x a tensor, or a streamed
  split (data/streamed.py), whose products solvers/streamed.py reads from
  the file."""
  kind = Objective
  if hasattr(x, "blocks"):
    from logreg_tf.solvers.streamed import StreamedObjective as kind
  return kind(head, x, y, l2, use_bias)


def certify(model, head, x, y, l2: float) -> Certificate:
  """The certificate of a model's weights (any run's, SGD's too) on the
  training set (x, y); x a tensor, or a streamed split."""
  bias = model.bias
  return objective_for(head, x, y, l2, bias is not None).certificate(
      tf.convert_to_tensor(model.kernel),
      None if bias is None else tf.convert_to_tensor(bias))
