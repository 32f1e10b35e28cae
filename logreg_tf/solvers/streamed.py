"""The objective over a streamed training set (data/streamed.py).

Its two products with X, X W for the logits and delta^T X for the
gradient, read X block by block from the split's file (each block cut into
the same cache-sized float64 pieces as in memory); the rest, the bias's
Newton search on the logits, the objective and the bound, is Objective's.
So are the float32 products of the exact solvers: Newton-CG's Hessian
products, (J (X v + db))^T X in one read of each block, the Hessian's
bias-by-weights block, and X^T X and a sample of rows for its
preconditioner. What a
certificate needs (`certify`: the end of every SGD run, and `evaluate`) and
what `--solver` needs on a streamed training set are then all here.
"""

import tensorflow as tf

from logreg_tf.data.streamed import to_float
from logreg_tf.solvers.objective import DTYPE, Objective


class StreamedObjective(Objective):
  """Objective whose X is a StreamedSplit."""

  # Its products read the file in Python: a trace would freeze the blocks.
  traceable = False

  def __init__(self, head, x, y, l2: float, use_bias: bool,
               bias_iterations: int = 50):
    super().__init__(head, x, y, l2, use_bias, bias_iterations)
    # Python loops over the file's blocks, each block's work compiled.
    self._traced_point = self._point
    self.curvature_at = self._curvature_at
    self.hessian_times = self._hessian_times
    fn = lambda f: tf.function(f, autograph=False)  # noqa: E731
    self._block_curvature = fn(lambda xb, logits, v, db: (
        lambda f: tf.matmul(self.head.curvature(logits, tf.matmul(f, v) + db),
                            f, transpose_a=True))(to_float(xb)))
    self._block_columns = fn(lambda xb, logits: tf.matmul(
        self._curvature_columns(logits), to_float(xb), transpose_a=True))
    self._block_gram = fn(lambda xb: (lambda f: tf.matmul(
        f, f, transpose_a=True))(to_float(xb)))
    self._refit = tf.function(super().refit_bias, autograph=False)
    self._block_logits = tf.function(self._pieces(
        lambda xb, w: tf.matmul(xb, w), lambda parts: tf.concat(parts, 0)),
        autograph=False)
    self._block_product = tf.function(self._pieces(
        lambda xb, delta: tf.matmul(delta, xb, transpose_a=True),
        tf.add_n, split_other=True), autograph=False)

  def _hold(self, x) -> None:
    self.stream, self.x32 = x, None

  def refit_bias(self, z, b):
    return self._refit(z, b)

  def _pieces(self, product, combine, split_other=False):
    """product(piece of the block in float64, other) over the block's
    cache-sized pieces, combined."""
    rows = self._rows

    def run(xb, other):
      parts = []
      for i in range(0, xb.shape[0], rows):
        part = other[i:i + rows] if split_other else other
        parts.append(product(tf.cast(to_float(xb[i:i + rows]), DTYPE),
                             part))
      return combine(parts)
    return run

  def _logits(self, w):
    return tf.concat([self._block_logits(xb, w)
                      for _, _, xb in self.stream.blocks()], 0)

  def _summed(self, block_fn, by_row=None, *args):
    """The sum over the file's blocks of block_fn(block, the block's rows
    of `by_row`, *args); of block_fn(block) without `by_row`."""
    total = 0
    for start, end, xb in self.stream.blocks():
      total += (block_fn(xb) if by_row is None
                else block_fn(xb, by_row[start:end], *args))
    return total

  def _transposed_product(self, delta):
    return self._summed(self._block_product, delta)

  def _curvature_columns_times_x(self, logits):
    return self._summed(self._block_columns, logits)

  def _curvature_pass(self, logits, v, db):
    return self._summed(self._block_curvature, logits, v, db)

  def _sample_rows(self):
    stride = self._sample_stride()
    return tf.concat([to_float(xb[(-start) % stride::stride])
                      for start, _, xb in self.stream.blocks()], 0)

  def _x_gram(self):
    return self._summed(self._block_gram)
