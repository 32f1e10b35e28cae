"""steps.Steps over streamed splits (data/streamed.py): the same math, the
training set read block by block instead of held as one float32 matrix.

- Full batch: the gradient sums of each block (steps.gradient_sums, the
  block cut into the same cache-sized pieces as in memory) are added up
  over the split, then divided by N and applied once: one SGD step per
  epoch, as in memory.
- Mini-batch: the epoch's order is the in-memory path's (the same op and
  seed); its batches go in groups of whole batches: a group's rows are read
  from the file at once, in file order (GROUP_BYTES), and the in-memory
  path's XLA-compiled loop of SGD steps runs over them, gathering each
  batch's rows in the shuffled order and making them float32 on the
  device. The weights follow the in-memory run's step for step.
- Evaluation sums the loss and the correct predictions block by block.

The file's uint8 pixels go to the device as they are; each compiled
function makes them float32 where it uses them (data/streamed.to_float),
so no float32 copy of a whole block is made ahead of the computation.
The next block or group is read from the file while the device computes
(a group into one of two buffers kept for the run; the next epoch's first
group while this epoch's last one is trained on).
"""

from typing import Optional

import numpy as np
import tensorflow as tf

from logreg_tf.data import aligned
from logreg_tf.data.streamed import (StreamedSplit, in_file_order,
                                     prefetched, to_device, to_float)
from logreg_tf.steps import (EpochResult, EvalResult, GradientSums, Steps,
                             gradient_sums, normalised, row_blocks,
                             weights_finite, zero_sums)

# Mini-batch: the rows of this many bytes of batches are read at once (a
# thread reads the next group meanwhile: twice this in memory).
GROUP_BYTES = 128 << 20


def block_sums(model, head, x, y, pieces: Optional[int]) -> GradientSums:
  """steps.gradient_sums over a uint8 block, made float32 piece by piece
  (`pieces` rows at a time) where it is used."""
  return gradient_sums(model, head, [(to_float(xb), yb)
                                     for xb, yb in row_blocks(x, y, pieces)])


def block_metrics(model, head, x, y):
  """The head's (summed loss, number correct) on a uint8 block."""
  return head.metrics(model(to_float(x)), y)


def evaluate_blocks(metrics, x: StreamedSplit, y) -> EvalResult:
  """steps.evaluate over a streamed split: metrics(block, labels) summed
  over its blocks (metrics: block_metrics, compiled by the caller)."""
  loss_sum, correct = tf.constant(0.0), tf.constant(0, tf.int64)
  for start, end, block in x.blocks():
    part_loss, part_correct = metrics(block, y[start:end])
    loss_sum += tf.cast(part_loss, loss_sum.dtype)
    correct += tf.cast(part_correct, tf.int64)
  return EvalResult(loss_sum / x.num_examples, correct)


class StreamedSteps(Steps):
  """steps.StepFunctions whose x arguments are StreamedSplits (y: the
  labels, a tensor)."""

  def __init__(self, model, head, optimizer, *, l2: float, batch_size,
               seed: int, block_rows: Optional[int] = None,
               epochs: Optional[int] = None):
    super().__init__(model, head, optimizer, l2=l2, batch_size=batch_size,
                     seed=seed, block_rows=block_rows)
    # Mini-batch: the run's last epoch (None: unknown), past which no
    # group is read ahead; and the next epoch's order and first group, read
    # while this epoch's last steps ran: (split, epoch, order, read group).
    self.epochs = epochs
    self._ahead = None
    # The two buffers the groups are read into in turn (one trained on,
    # one being read), kept for the run: a fresh 128 MB buffer for each
    # group cost page faults, some reads 0.1 s of system time on this
    # machine (memory the kernel had taken back).
    self._buffers, self._reads = None, 0
    fn = lambda f: tf.function(f, autograph=False)  # noqa: E731
    # Each uint8 block is made float32 piece by piece where it is used,
    # compiled by XLA, which fuses the conversion with the products: half
    # the steps' cache-sized pieces measured fastest here (2.1 ms a block
    # of 5,348 MNIST rows, against 1.7 ms for the float32 matrix's step
    # and 3.1 ms for the same ops unfused).
    pieces = max(1, block_rows // 2) if block_rows else None
    # The sums so far plus a block's: one call a block.
    self._block_sums = tf.function(
        lambda x, y, total: GradientSums(*(
            a + b for a, b in zip(total, block_sums(self.model, self.head,
                                                     x, y, pieces)))),
        jit_compile=True, autograph=False)
    self._apply_sums = fn(self._apply)
    self._block_metrics = fn(lambda x, y: block_metrics(self.model,
                                                        self.head, x, y))
    self._last_batch = fn(lambda x, y: self._train_step(to_float(x), y))
    self._order = fn(lambda n, seed: tf.random.experimental.stateless_shuffle(
        tf.range(n), seed=seed))
    # Steps made these tf.functions over tensors; here they are Python
    # loops over the blocks, each block's work a compiled function.
    self.train_epoch = self._train_epoch
    self.eval_step = self._eval_blocks
    self.train_epoch_and_eval = lambda x, y, epoch, x_test, y_test: (
        self._train_epoch(x, y, epoch), self._eval_blocks(x_test, y_test))

  def close(self) -> None:
    """StepFunctions.close: the two group buffers (up to 256 MB) and the
    group read ahead are the run's, not the model's."""
    self._buffers, self._ahead = None, None

  def _batch_rows(self, x, batch):
    return to_float(tf.gather(x, batch))

  def _apply(self, sums: GradientSums, n):
    loss, grads = normalised(sums, 1.0 / tf.cast(n, tf.float32), self.model,
                             self.l2)
    self.optimizer.apply(grads, self.model.trainable_variables)
    ok = tf.logical_and(tf.math.is_finite(loss), weights_finite(self.model))
    return loss, ok

  def _train_epoch(self, x: StreamedSplit, y, epoch) -> EpochResult:
    if self.batch_size is None:
      return self._full_batch(x, y)
    return self._minibatches(x, y, epoch)

  def _full_batch(self, x: StreamedSplit, y) -> EpochResult:
    total = zero_sums(self.model)
    for start, end, block in x.blocks():
      total = self._block_sums(block, y[start:end], total)
    loss, ok = self._apply_sums(total, x.num_examples)
    return EpochResult(loss, tf.constant(1), ok)

  def _epoch_order(self, n: int, epoch: int) -> np.ndarray:
    """The in-memory path's shuffled order of the epoch: the same op and
    seed."""
    seed = tf.constant([self.seed, epoch], tf.int64)
    return self._order(n, seed).numpy()

  def _minibatches(self, x: StreamedSplit, y, epoch) -> EpochResult:
    n, b = x.num_examples, self.batch_size
    full, rest = divmod(n, b)
    epoch = int(epoch)
    ahead, self._ahead = self._ahead, None
    if ahead is not None and ahead[0] is x and ahead[1] == epoch:
      order, first = ahead[2], ahead[3]
    else:
      order, first = self._epoch_order(n, epoch), None
    # The rows of a group of batches are read from the file at once, in
    # file order: each read maps (and then unmaps) the file's pages once,
    # whatever the number of rows. The compiled loop of SGD steps then
    # gathers each batch's rows from the group in the shuffled order and
    # makes them float32: the in-memory run's steps, bit for bit.
    per_group = max(1, GROUP_BYTES // (b * x.features)) * b
    groups = [order[s:min(s + per_group, full * b)]
              for s in range(0, full * b, per_group)]
    # The next epoch's first group is read while this epoch's last group
    # is trained on, so that no epoch starts by waiting for the file (at
    # MNIST's size, one group is the whole epoch).
    following = None
    if groups and (self.epochs is None or epoch < self.epochs):
      following = self._epoch_order(n, epoch + 1)
    total, taken = tf.constant(0.0), tf.constant(0)
    largest = (len(groups[0]) if groups else 0, x.features)  # rows, pixels
    if self._buffers is None or self._buffers[0].shape != largest:
      self._buffers = [aligned(largest) for _ in range(2)]
    def read(group):  # in the reading thread
      positions, at = in_file_order(group)
      # The buffer of the group before the last: its steps have finished.
      out = self._buffers[self._reads % 2]
      self._reads += 1
      return positions, at, x.take_in_order(positions, out)

    for i, (positions, at, rows) in enumerate(prefetched(
        groups + ([following[:len(groups[0])]] if following is not None
                  else []),
        read, lambda group, read_group: read_group, first=first)):
      if i == len(groups):
        self._ahead = (x, epoch + 1, following, (positions, at, rows))
        break
      # The in-memory path's XLA loop of steps (Steps._batches_loop), whose
      # _batch_rows here makes each batch's uint8 rows float32.
      part, steps = self._batches_loop(to_device(rows),
                                       tf.gather(y, positions),
                                       tf.reshape(at, [-1, b]))
      total, taken = total + part, taken + steps
      if not np.isfinite(float(total)):
        break
    if rest and np.isfinite(float(total)):
      last = order[full * b:]
      loss = self._last_batch(to_device(x.take(last)), tf.gather(y, last))
      total, taken = total + loss * rest, taken + 1
    ok = tf.logical_and(tf.math.is_finite(total), weights_finite(self.model))
    return EpochResult(total / n, taken, ok)

  def _eval_blocks(self, x: StreamedSplit, y) -> EvalResult:
    return evaluate_blocks(self._block_metrics, x, y)
