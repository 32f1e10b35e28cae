"""The train and eval steps over the replicas of a tf.distribute strategy.

The same math as steps.Steps: each global batch holds exactly the examples
the one-device run puts in it, in the same seeded order, the last partial
batch kept. The trainer cuts each global batch of b rows into one
contiguous shard per replica (`shard_bounds`); replica r computes the sums of
its rows' loss and gradient, divides them by b (the global batch, not its own
share), and the replicas' parts are summed: the gradient is sum / b whatever
the shards' sizes, and the L2 term is added once, by replica 0. Keras's SGD
sums the parts across replicas (its all-reduce) and applies the update on
every replica.

Input: in full-batch mode each replica's shard of the training and test
sets is cut once and placed on its device. In mini-batch mode each worker's
tf.data pipeline gathers, per step, only its own replicas' rows of the
global batch, from the shuffled order that (seed, epoch) fixes, and
tf.distribute feeds each element to its replica's device.
"""

import math
from typing import List, Optional, Tuple

from absl import logging
import tensorflow as tf

from logreg_tf.steps import (EpochResult, EvalResult, gradient_sums,
                             normalised, row_blocks, weights_finite)

SUM = tf.distribute.ReduceOp.SUM


def shard_bounds(rows: int, replicas: int) -> List[Tuple[int, int]]:
  """[start, end) of each replica's contiguous share of `rows` rows; shares
  differ by at most one row (some are empty when rows < replicas)."""
  return [(r * rows // replicas, (r + 1) * rows // replicas)
          for r in range(replicas)]


def first_result(strategy, value):
  """A value every replica holds equally (all-reduced), as one tensor."""
  return tf.nest.map_structure(
      lambda v: strategy.experimental_local_results(v)[0], value)


class ReplicatedSteps:
  """steps.StepFunctions (train_epoch, train_epoch_and_eval, eval_step)
  over a strategy's replicas."""

  state = {}  # nothing but the model and the optimizer's step count
  finished = False

  def __init__(self, strategy, model, head, optimizer, *, l2: float,
               batch_size, seed: int, block_rows=None,
               epochs: Optional[int] = None):
    self.strategy = strategy
    # The run's last epoch, where the mini-batch pipeline ends (None: it
    # does not end).
    self.epochs = epochs
    self.model, self.head, self.optimizer = model, head, optimizer
    self.l2, self.batch_size, self.seed = float(l2), batch_size, int(seed)
    self.block_rows = block_rows
    with strategy.scope():
      optimizer.build(model.trainable_variables)
    self.replicas = strategy.num_replicas_in_sync
    if batch_size is not None and batch_size % self.replicas:
      logging.info(
          "--batch_size=%d does not split evenly over %d replicas: they take "
          "%s rows of each batch; the gradient is still their sum divided "
          "by %d, as on one device", batch_size, self.replicas,
          "/".join(str(e - s) for s, e in shard_bounds(batch_size,
                                                       self.replicas)),
          batch_size)
    self._devices = strategy.extended.worker_devices  # this worker's
    self._shards = {}  # id(x) -> (x, per-replica x, per-replica y, 1 / n)
    self._input = None  # (id(x), next epoch, x, distributed iterator)
    fn = lambda f: tf.function(f, autograph=False)  # noqa: E731
    self._full_epoch = fn(self._full_batch_epoch)
    self._loop = fn(self._steps_loop)
    self._eval = fn(self._distributed_eval)
    self._full_epoch_and_eval = fn(
        lambda xs, ys, inv_n, test: (self._full_batch_epoch(xs, ys, inv_n),
                                     self._distributed_eval(*test)))

  # Placement of the data.

  def _local(self, replica_id: int) -> int:
    """The position among this worker's devices of a global replica id."""
    return replica_id % len(self._devices)

  def _placed(self, x, y):
    """The per-replica shards of (x, y), cut and placed once."""
    key = id(x)
    if key not in self._shards:
      n = int(x.shape[0])
      bounds = shard_bounds(n, self.replicas)

      def shard(t):
        def value(ctx):
          start, end = bounds[ctx.replica_id_in_sync_group]
          with tf.device(self._devices[self._local(
              ctx.replica_id_in_sync_group)]):
            return tf.identity(t[start:end])
        return self.strategy.experimental_distribute_values_from_function(
            value)

      self._shards[key] = (x, shard(x), shard(y),
                           1.0 / tf.cast(n, x.dtype))
    _, xs, ys, inv_n = self._shards[key]
    return xs, ys, inv_n

  def _batches(self, x, y, first_epoch: int):
    """This worker's rows of each global batch, epoch after epoch from
    `first_epoch` to the run's last: one element per step and local replica
    (tf.distribute hands consecutive elements to consecutive local
    replicas). One pipeline for the whole run: each epoch's order is
    shuffled inside it, so nothing is traced again at each epoch. It ends
    with the run, so that once the run has taken its last batch no element
    is being made when the iterator is deleted."""
    n = int(x.shape[0])
    seed = tf.constant(self.seed, tf.int64)

    def dataset_fn(ctx: tf.distribute.InputContext):
      local = ctx.num_replicas_in_sync // ctx.num_input_pipelines
      first = ctx.input_pipeline_id * local

      def epoch_elements(epoch):
        # The one-device run's order: the same op and seed.
        order = tf.random.experimental.stateless_shuffle(
            tf.range(n), seed=tf.stack([seed, epoch]))
        return self._epoch_elements(x, y, order, local, first)

      last = 2 ** 62 if self.epochs is None else self.epochs
      return tf.data.Dataset.range(first_epoch, last + 1).flat_map(
          epoch_elements).prefetch(tf.data.AUTOTUNE)

    return self.strategy.distribute_datasets_from_function(dataset_fn)

  def _epoch_elements(self, x, y, order, local: int, first: int):
    """One epoch's elements of the pipeline whose local replicas are the
    global ones first .. first + local - 1: (rows, labels) of step k //
    local for its local replica k % local, the epoch's rows in `order`."""
    n, b, replicas = int(x.shape[0]), self.batch_size, self.replicas

    def rows(k):  # step k // local, local replica k % local
      start = k // local * b
      size = tf.minimum(tf.constant(b, tf.int64), n - start)
      g = first + k % local
      idx = order[start + g * size // replicas:
                  start + (g + 1) * size // replicas]
      return tf.gather(x, idx), tf.gather(y, idx)

    return tf.data.Dataset.range(math.ceil(n / b) * local).map(
        rows, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)

  def _iterator(self, x, y, epoch: int):
    """The run's input iterator, positioned at `epoch` (made again only
    when the loop asks for another epoch than the next, or other data)."""
    if self._input is None or self._input[:2] != (id(x), epoch):
      self._input = (id(x), epoch, x, iter(self._batches(x, y, epoch)))
    iterator = self._input[3]
    self._input = (id(x), epoch + 1, x, iterator)
    return iterator

  def close(self) -> None:
    """Frees the run's input iterator now. Left to Python's collector, it
    was freed seconds later, in whatever ran then, and its destructor
    waited 10 to 140 s, idle, for tf.data's autotuning thread to end its
    sleep (gdb, 2026-12-03: ~RootDataset::Iterator inside
    ~MultiDeviceIterator joining Model::OptimizeLoop); freed when the run
    ends it takes hundredths of a second."""
    self._input = None

  # The steps.

  def _replica_step(self, x, y, inv_b):
    """On one replica: its part of the gradient (its sums / b, L2 on
    replica 0), summed across replicas by the optimizer, and the global
    objective before the update."""
    return self._replica_apply(gradient_sums(
        self.model, self.head, row_blocks(x, y, self.block_rows)), inv_b)

  def _replica_apply(self, sums, inv_b):
    """_replica_step from this replica's sums over its rows."""
    ctx = tf.distribute.get_replica_context()
    first = tf.cast(tf.equal(ctx.replica_id_in_sync_group, 0),
                    sums.kernel.dtype)
    loss, grads = normalised(
        sums._replace(loss=ctx.all_reduce(SUM, sums.loss)), inv_b,
        self.model, self.l2, penalty_weight=first)
    self.optimizer.apply(grads, self.model.trainable_variables)
    return loss

  def _distributed_step(self, xs, ys, inv_b):
    return first_result(self.strategy, self.strategy.run(
        self._replica_step, args=(xs, ys, inv_b)))

  def _full_batch_epoch(self, xs, ys, inv_n) -> EpochResult:
    loss = self._distributed_step(xs, ys, inv_n)
    ok = tf.logical_and(tf.math.is_finite(loss), weights_finite(self.model))
    return EpochResult(loss, tf.constant(1), ok)

  def _steps_loop(self, iterator, sizes):
    """Every step of an epoch in one call (a graph loop over the
    distributed iterator): per-step Python would cost more than the step.
    Stops after the first non-finite loss, as the one-device loop does.
    Returns the steps taken and the loss summed over their examples."""
    def more(i, total):
      return tf.logical_and(i < tf.shape(sizes)[0], tf.math.is_finite(total))

    def step(i, total):
      xs, ys = iterator.get_next()
      loss = self._distributed_step(xs, ys, 1.0 / sizes[i])
      return i + 1, total + loss * sizes[i]

    return tf.while_loop(more, step, (tf.constant(0), tf.constant(0.0)))

  def _minibatch_epoch(self, x, y, epoch: int) -> EpochResult:
    n, b = int(x.shape[0]), self.batch_size
    sizes = tf.constant([min(b, n - start) for start in range(0, n, b)],
                        tf.float32)
    taken, total = self._loop(self._iterator(x, y, epoch), sizes)
    ok = tf.logical_and(tf.math.is_finite(total), weights_finite(self.model))
    return EpochResult(total / n, taken, ok)

  def _replica_eval(self, x, y):
    loss_sum, correct = self.head.metrics(self.model(x), y)
    return tf.distribute.get_replica_context().all_reduce(
        SUM, [tf.cast(loss_sum, tf.float64), tf.cast(correct, tf.float64)])

  def _distributed_eval(self, xs, ys, inv_n) -> EvalResult:
    loss_sum, correct = first_result(self.strategy, self.strategy.run(
        self._replica_eval, args=(xs, ys)))
    return EvalResult(tf.cast(loss_sum, inv_n.dtype) * inv_n,
                      tf.cast(correct, tf.int64))

  # steps.Steps' interface: (x, y) are the whole split; each worker uses
  # only its replicas' shards of it.

  def train_epoch(self, x, y, epoch) -> EpochResult:
    if self.batch_size is None:
      return self._full_epoch(*self._placed(x, y))
    return self._minibatch_epoch(x, y, int(epoch))

  def eval_step(self, x, y) -> EvalResult:
    return self._eval(*self._placed(x, y))

  def train_epoch_and_eval(self, x, y, epoch, x_test, y_test):
    if self.batch_size is None:
      return self._full_epoch_and_eval(*self._placed(x, y),
                                       self._placed(x_test, y_test))
    return (self._minibatch_epoch(x, y, int(epoch)),
            self.eval_step(x_test, y_test))
