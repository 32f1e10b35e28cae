"""The compiled steps: train (gradient + SGD update), eval (forward only).

The tutorial's `step(..., forward_only)` becomes two functions. Nothing in a
step branches on a flag: every choice (head, full or mini batch, schedule,
penalty) is made once, when the functions are built. Each returns a named
result (`EpochResult`, `EvalResult`), never a bare tuple.

The gradient is the tutorial's closed form, dJ/dW = X^T (P - Y) / N + l2 W,
with P - Y from the head's XLA-fused loss-and-delta pass: it is what autodiff
computes for this model, without the tape's bookkeeping, and the tests hold
it to both the NumPy reference and tf.GradientTape. Keras's SGD applies it
(`w <- w - lr_t * g`, lr_t from a Keras schedule). On a CPU the rows of X go
in blocks sized from the cache (blocks.py): each block's logits and its share
of the gradient product are computed while it is in the cache, so X is read
from memory once per step, and nothing else of its size is made.
"""

from typing import Dict, NamedTuple, Optional, Protocol, Tuple

import keras
import tensorflow as tf

from logreg_tf.model import l2_penalty


class EpochResult(NamedTuple):
  loss: tf.Tensor  # the objective, averaged over the epoch's examples
  steps: tf.Tensor  # SGD steps taken (fewer when it stopped on divergence)
  finite: tf.Tensor  # loss and weights stayed finite
  finished: bool = False  # an exact solver stopped: no more epochs
  optimization: Optional[dict] = None  # a solver's objective, gradient, bound


class EvalResult(NamedTuple):
  loss: tf.Tensor  # mean cross-entropy over the split
  correct: tf.Tensor  # examples predicted right


def evaluate(model, head, x, y) -> EvalResult:
  """Forward only: no tape, no optimizer, no variable writes. The training
  loop and `python -m logreg_tf.evaluate` both measure with this."""
  loss_sum, correct = head.metrics(model(x), y)
  return EvalResult(loss_sum / tf.cast(tf.shape(x)[0], loss_sum.dtype),
                    correct)


def row_blocks(x, y, rows: Optional[int]):
  """(x, y) in row blocks of `rows` (one block when unset, or when the
  number of rows is known only at run time); slices along the rows alias
  X's memory, nothing is copied."""
  n = x.shape[0]
  if rows is None or n is None or n <= rows:
    return [(x, y)]
  return [(x[i:i + rows], y[i:i + rows]) for i in range(0, n, rows)]


class GradientSums(NamedTuple):
  """Sums over some rows: of the loss, of (P - Y)^T X [K, D], of P - Y [K]."""
  loss: tf.Tensor
  kernel: tf.Tensor
  bias: tf.Tensor


def zero_sums(model) -> GradientSums:
  """GradientSums over no rows, shaped for `model`."""
  outputs, features = model.kernel.shape[1], model.kernel.shape[0]
  return GradientSums(tf.constant(0.0), tf.zeros([outputs, features]),
                      tf.zeros([outputs]))


def gradient_sums(model, head, blocks) -> GradientSums:
  """The loss and gradient sums over the rows of `blocks`, [(x, y), ...].

  Block by block, so that each block of X is read from memory once: its
  logits, loss, P - Y and its share of the gradient product are computed
  while it is still in the cache. (P - Y)^T X is [K, D]: the product's long
  axis is X's rows, which TF's kernels stream faster than X^T (P - Y).
  Dividing by the batch size and adding the penalty is the caller's: one
  device does it on its whole batch, a replica's sums are added to the
  others' first.
  """
  loss_sums, kernel_parts, bias_parts = [], [], []
  for xb, yb in blocks:
    losses, delta = head.loss_and_delta(model(xb), yb)
    loss_sums.append(tf.reduce_sum(losses))
    kernel_parts.append(tf.matmul(delta, xb, transpose_a=True))
    bias_parts.append(tf.reduce_sum(delta, axis=0))
  return GradientSums(tf.add_n(loss_sums), tf.add_n(kernel_parts),
                      tf.add_n(bias_parts))


def normalised(sums: GradientSums, inv_n, model, l2: float,
               penalty_weight=1.0):
  """The objective and its gradient [kernel, (bias)] from sums over n rows:
  each sum times `inv_n` (1 / n), plus the 0.5 * l2 * ||W||^2 term, whose
  gradient l2 * W is added `penalty_weight` times (a replica other than the
  first adds it 0 times: the replicas' parts are summed)."""
  loss = sums.loss * inv_n
  grad_kernel = tf.transpose(sums.kernel) * inv_n
  if l2:
    loss += l2_penalty(model, l2)
    grad_kernel += penalty_weight * l2 * tf.convert_to_tensor(model.kernel)
  grads = [grad_kernel]
  if model.bias is not None:
    grads.append(sums.bias * inv_n)
  return loss, grads


def weights_finite(model) -> tf.Tensor:
  """Whether every trainable weight is finite (the divergence check)."""
  ok = tf.constant(True)
  for v in model.trainable_variables:
    ok = tf.logical_and(ok, tf.reduce_all(tf.math.is_finite(v)))
  return ok


def sgd(learning_rate: float, schedule: str = "constant",
        total_steps: int = 1) -> keras.optimizers.SGD:
  """Plain SGD, no momentum; `linear` decays to 0 at `total_steps`."""
  if schedule == "constant":
    rate = learning_rate
  elif schedule == "linear":
    rate = keras.optimizers.schedules.PolynomialDecay(
        learning_rate, decay_steps=max(total_steps, 1), end_learning_rate=0.0,
        power=1.0)
  else:
    raise ValueError(f"schedule={schedule!r}: expected constant or linear")
  return keras.optimizers.SGD(learning_rate=rate)


class StepFunctions(Protocol):
  """What the loop calls: `Steps` here, `ReplicatedSteps` under a strategy.
  (x, y) are always a whole split."""

  model: keras.layers.Dense
  head: object
  optimizer: keras.optimizers.SGD  # or a solver: `iterations` is counted
  state: Dict[str, tf.Variable]  # more to checkpoint (a solver's memory)
  finished: bool  # an exact solver has stopped; SGD never has

  def train_epoch(self, x, y, epoch) -> EpochResult: ...

  def train_epoch_and_eval(self, x, y, epoch, x_test,
                           y_test) -> Tuple[EpochResult, EvalResult]: ...

  def eval_step(self, x, y) -> EvalResult: ...

  def close(self) -> None:
    """Lets go of what the run's epochs held beyond the model (an input
    pipeline, read buffers): called when the run ends, however it ends."""


class Steps:
  """Compiled train/eval functions for one model, head and optimizer."""

  state: Dict[str, tf.Variable] = {}
  finished = False

  def __init__(self, model, head, optimizer, *, l2: float, batch_size,
               seed: int, block_rows: Optional[int] = None):
    self.model, self.head, self.optimizer = model, head, optimizer
    self.block_rows = block_rows
    optimizer.build(model.trainable_variables)  # no variables made in a trace
    self.l2 = float(l2)
    self.batch_size = batch_size
    self.seed = int(seed)
    # No autograph: the loops are explicit, and converting the code would
    # cost a third of a second of tracing at every start.
    self.train_step = tf.function(self._train_step, autograph=False)
    self.eval_step = tf.function(self._eval_step, autograph=False)
    epoch_fn = (self._full_batch_epoch if batch_size is None
                else self._minibatch_epoch)
    self.train_epoch = tf.function(epoch_fn, autograph=False)
    # An epoch and the evaluation after it in one call: one trip from Python
    # to the runtime per displayed epoch instead of two. Its evaluation is
    # `_eval_step`, the function `eval_step` compiles; the tests check that
    # it adds no write and no gradient to the epoch's graph.
    self.train_epoch_and_eval = tf.function(
        lambda x, y, epoch, x_test, y_test: (
            epoch_fn(x, y, epoch), self._eval_step(x_test, y_test)),
        autograph=False)
    self._batches_loop = tf.function(self._full_batches, jit_compile=True,
                                     autograph=False)

  def close(self) -> None:
    """StepFunctions.close: nothing is held here."""

  def objective(self, x, y):
    """Mean cross-entropy plus the L2 penalty, and the logits."""
    logits = self.model(x)
    loss = tf.reduce_mean(self.head.loss(logits, y))
    return loss + l2_penalty(self.model, self.l2), logits

  def loss_and_grads(self, x, y):
    """The objective and its gradient by [kernel, (bias)] on (x, y)."""
    sums = gradient_sums(self.model, self.head,
                         row_blocks(x, y, self.block_rows))
    return normalised(sums, 1.0 / tf.cast(tf.shape(x)[0], x.dtype),
                      self.model, self.l2)

  def _train_step(self, x, y):
    """One SGD update on (x, y); returns the objective before it."""
    loss, grads = self.loss_and_grads(x, y)
    self.optimizer.apply(grads, self.model.trainable_variables)
    return loss

  def _eval_step(self, x, y) -> EvalResult:
    return evaluate(self.model, self.head, x, y)

  def _full_batch_epoch(self, x, y, epoch) -> EpochResult:
    """One step on the whole training set."""
    del epoch  # full batch: nothing to shuffle
    loss = self._train_step(x, y)
    ok = tf.logical_and(tf.math.is_finite(loss), weights_finite(self.model))
    return EpochResult(loss, tf.constant(1), ok)

  def _full_batches(self, x, y, batches):
    """SGD over the rows of `batches` [steps, B], compiled whole by XLA.

    Stops after the first step whose loss is not finite (a non-finite
    weight makes the next loss non-finite). Returns the summed loss over
    the examples seen and the steps taken.
    """
    size = tf.cast(tf.shape(batches)[1], tf.float32)

    def more(i, total):
      return tf.logical_and(i < tf.shape(batches)[0], tf.math.is_finite(total))

    def step(i, total):
      batch = batches[i]
      loss = self._train_step(self._batch_rows(x, batch),
                              tf.gather(y, batch))
      return i + 1, total + loss * size

    i, total = tf.while_loop(more, step, (tf.constant(0), tf.constant(0.0)))
    return total, i

  def _batch_rows(self, x, batch):
    """The features of the rows `batch` of x, for a step."""
    return tf.gather(x, batch)

  def _minibatch_epoch(self, x, y, epoch) -> EpochResult:
    """Shuffled mini-batches, the last partial one kept.

    The order depends only on (seed, epoch), so a resumed run replays it.
    The full batches run as one XLA-compiled loop (static shapes, about
    half the per-step cost of a graph loop); a last partial batch follows
    as one more step.
    """
    n, b = x.shape[0], self.batch_size
    full, rest = divmod(n, b)
    seed = tf.stack([tf.constant(self.seed, tf.int64),
                     tf.cast(epoch, tf.int64)])
    order = tf.random.experimental.stateless_shuffle(tf.range(n), seed=seed)
    total, taken = self._batches_loop(
        x, y, tf.reshape(order[:full * b], [full, b]))
    if rest:
      def last_batch():
        loss = self._train_step(tf.gather(x, order[full * b:]),
                                tf.gather(y, order[full * b:]))
        return total + loss * rest, taken + 1
      total, taken = tf.cond(tf.math.is_finite(total), last_batch,
                             lambda: (total, taken))
    ok = tf.logical_and(tf.math.is_finite(total), weights_finite(self.model))
    return EpochResult(total / n, taken, ok)
