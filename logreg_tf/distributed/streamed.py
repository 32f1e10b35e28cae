"""ReplicatedSteps over streamed splits (data/streamed.py, --input=stream).

The same shards and math as replicated.py; only where the rows come from
differs. Each worker reads only its own replicas' rows from the split's
file:
- Full batch: replica r's contiguous shard of the training set is read
  block by block on its device, its gradient sums added up there, and the
  sums applied as replicated.py applies a replica's (loss all-reduced, L2
  on replica 0, Keras's SGD summing the gradients across replicas).
- Mini-batch: the input pipeline reads this worker's replicas' rows of a
  group of global batches from the file at once, in file order (a NumPy
  function in tf.data, as streamed_steps reads a group), and hands each
  replica its rows of each batch, made float32 there by NumPy's k / 255,
  the in-memory path's values.
- Evaluation: each replica's shard by blocks, the sums all-reduced.
"""

import math

import numpy as np
import tensorflow as tf

from logreg_tf.data import pixels_to_float32
from logreg_tf.data.streamed import StreamedSplit, in_file_order
from logreg_tf.distributed.replicated import (SUM, ReplicatedSteps,
                                              first_result, shard_bounds)
from logreg_tf.steps import (EpochResult, EvalResult, GradientSums,
                             weights_finite, zero_sums)
from logreg_tf import streamed_steps
from logreg_tf.streamed_steps import block_metrics, block_sums


class StreamedReplicatedSteps(ReplicatedSteps):
  """ReplicatedSteps whose x arguments are StreamedSplits."""

  def __init__(self, strategy, model, head, optimizer, **kwargs):
    super().__init__(strategy, model, head, optimizer, **kwargs)
    fn = lambda f: tf.function(f, autograph=False)  # noqa: E731
    self._block_sums = fn(lambda x, y: block_sums(
        self.model, self.head, x, y, self.block_rows))
    self._block_metrics = fn(lambda x, y: [
        tf.cast(m, tf.float64)
        for m in block_metrics(self.model, self.head, x, y)])
    self._apply_sums = fn(lambda sums, inv_n: first_result(
        self.strategy, self.strategy.run(self._replica_apply,
                                         args=(sums, inv_n))))
    self._all_reduced = fn(lambda values: first_result(
        self.strategy, self.strategy.run(
            lambda v: tf.distribute.get_replica_context().all_reduce(
                SUM, _on_replica(v)), args=(values,))))

  def _replica_apply(self, sums, inv_b):
    return super()._replica_apply(_on_replica(sums), inv_b)

  def _epoch_elements(self, x, y, order, local: int, first: int):
    """As in memory, the rows of a group of steps read from the file at
    once, in file order (streamed_steps.GROUP_BYTES of this pipeline's
    rows; the next group read meanwhile), then each element's rows taken
    from its group in the shuffled order and made float32 by NumPy's
    k / 255."""
    if not isinstance(x, StreamedSplit):
      return super()._epoch_elements(x, y, order, local, first)
    n, b, replicas = x.num_examples, self.batch_size, self.replicas
    steps = math.ceil(n / b)
    per_group = max(1, streamed_steps.GROUP_BYTES * replicas // (
        b * local * x.features))

    def read(j, part):
      """The group j's rows (ascending), where each element's rows are
      among them (concatenated), the elements' ends, and the positions."""
      s0 = int(j) * per_group
      pieces = []
      for s in range(s0, min(s0 + per_group, steps)):
        start, size = s * b, min(b, n - s * b)
        for g in range(first, first + local):
          pieces.append(part[start - s0 * b + g * size // replicas:
                             start - s0 * b + (g + 1) * size // replicas])
      positions = np.concatenate(pieces).astype(np.int64)
      ascending, at = in_file_order(positions)
      ends = np.cumsum([len(p) for p in pieces], dtype=np.int64)
      return x.take_in_order(ascending), at, ends, positions

    def group(j):
      part = order[j * per_group * b:(j + 1) * per_group * b]
      return tuple(tf.numpy_function(
          read, [j, part], [tf.uint8, tf.int64, tf.int64, tf.int64],
          stateful=False))

    def elements(rows, at, ends, positions):
      starts = tf.concat([[0], ends[:-1]], 0)

      def element(s, e):
        features = tf.numpy_function(
            lambda r, a: pixels_to_float32(r[a]), [rows, at[s:e]],
            tf.float32, stateful=False)
        return (tf.ensure_shape(features, [None, x.features]),
                tf.gather(y, positions[s:e]))
      return tf.data.Dataset.from_tensor_slices((starts, ends)).map(element)

    return tf.data.Dataset.range(math.ceil(steps / per_group)).map(
        group, num_parallel_calls=2, deterministic=True).flat_map(elements)

  def _per_replica(self, x: StreamedSplit, fold, initial):
    """Per replica (on its device): fold(total, start, end, block) over the
    blocks of its shard of x's rows, from `initial()`."""
    bounds = shard_bounds(x.num_examples, self.replicas)

    def value(ctx):
      replica = ctx.replica_id_in_sync_group
      start, end = bounds[replica]
      with tf.device(self._devices[self._local(replica)]):
        total = initial()
        for s, e, block in x.part(start, end).blocks():
          total = fold(total, start + s, start + e, block)
        # On the replica's device by name (the worker's, in a cluster), as
        # the collectives expect.
        return tf.nest.map_structure(tf.identity, total)
    return self.strategy.experimental_distribute_values_from_function(value)

  def _full_epoch_streamed(self, x: StreamedSplit, y) -> EpochResult:
    def add(total, start, end, block):
      part = self._block_sums(block, y[start:end])
      return GradientSums(*(a + b for a, b in zip(total, part)))

    sums = self._per_replica(x, add, lambda: zero_sums(self.model))
    loss = self._apply_sums(sums, tf.constant(1.0 / x.num_examples))
    ok = tf.logical_and(tf.math.is_finite(loss), weights_finite(self.model))
    return EpochResult(loss, tf.constant(1), ok)

  def _eval_streamed(self, x: StreamedSplit, y) -> EvalResult:
    def add(total, start, end, block):
      return [a + b for a, b in zip(total, self._block_metrics(
          block, y[start:end]))]

    sums = self._per_replica(x, add, lambda: [tf.constant(0.0, tf.float64)] * 2)
    loss_sum, correct = self._all_reduced(sums)
    return EvalResult(tf.cast(loss_sum / x.num_examples, tf.float32),
                      tf.cast(correct, tf.int64))

  def train_epoch(self, x, y, epoch) -> EpochResult:
    if self.batch_size is None:
      return self._full_epoch_streamed(x, y)
    return self._minibatch_epoch(x, y, int(epoch))

  def eval_step(self, x, y) -> EvalResult:
    return self._eval_streamed(x, y)

  def train_epoch_and_eval(self, x, y, epoch, x_test, y_test):
    return self.train_epoch(x, y, epoch), self._eval_streamed(x_test, y_test)


def _on_replica(values):
  """Values handed to a replica function, made there (tf.identity under the
  replica's device): a collective takes its devices from its inputs, and a
  function argument has none."""
  return tf.nest.map_structure(tf.identity, values)
