"""Plain SGD and the compiled steps: train (gradient + update), eval (forward).

The tutorial's `step(..., forward_only)` becomes two functions. Nothing in a
step branches on a flag: every choice (head, full or mini batch, schedule) is
made once, when the functions are built.
"""

import tensorflow as tf


class SGD(tf.Module):
  """w <- w - lr_t * g, no momentum; `iterations` counts the updates."""

  def __init__(self, learning_rate: float, schedule: str = "constant",
               total_steps: int = 1):
    super().__init__(name="sgd")
    self.iterations = tf.Variable(0, dtype=tf.int64, trainable=False,
                                  name="iterations")
    self._base = float(learning_rate)
    self._total = float(max(total_steps, 1))
    if schedule == "constant":
      self.current_lr = lambda: tf.constant(self._base)
    elif schedule == "linear":
      self.current_lr = self._linear
    else:
      raise ValueError(f"schedule={schedule!r}: expected constant or linear")

  def _linear(self):
    """Decays linearly from the base rate to 0 at step `total_steps`."""
    done = tf.cast(self.iterations, tf.float32) / self._total
    return self._base * tf.maximum(1.0 - done, 0.0)

  def apply(self, grads, variables):
    lr = self.current_lr()
    for g, v in zip(grads, variables):
      v.assign_sub(lr * g)
    self.iterations.assign_add(1)


def _all_finite(loss, variables):
  ok = tf.math.is_finite(loss)
  for v in variables:
    ok = tf.logical_and(ok, tf.reduce_all(tf.math.is_finite(v)))
  return ok


class Steps:
  """Compiled train/eval functions for one model, head and optimizer."""

  def __init__(self, model, head, optimizer, *, l2: float, batch_size,
               seed: int):
    self.model, self.head, self.optimizer = model, head, optimizer
    self.l2 = float(l2)
    self.batch_size = batch_size
    self.seed = int(seed)
    self.train_step = tf.function(self._train_step)
    self.eval_step = tf.function(self._eval_step)
    epoch_fn = (self._full_batch_epoch if batch_size is None
                else self._minibatch_epoch)
    self.train_epoch = tf.function(epoch_fn)

  def objective(self, x, y):
    """Mean cross-entropy plus the L2 penalty, and the logits."""
    logits = self.model(x)
    loss = tf.reduce_mean(self.head.loss(logits, y))
    return loss + self.model.l2_penalty(self.l2), logits

  def loss_and_grads(self, x, y):
    """The objective, the logits and d(objective)/d(weights)."""
    with tf.GradientTape() as tape:
      loss, logits = self.objective(x, y)
    return loss, logits, tape.gradient(loss, self.model.weights)

  def _train_step(self, x, y):
    loss, logits, grads = self.loss_and_grads(x, y)
    self.optimizer.apply(grads, self.model.weights)
    return loss, self.head.predict(logits)

  def _eval_step(self, x, y):
    """Forward only: no tape, no optimizer, no variable writes."""
    logits = self.model(x)
    loss = tf.reduce_mean(self.head.loss(logits, y))
    correct = tf.reduce_sum(
        tf.cast(tf.equal(self.head.predict(logits), tf.cast(y, tf.int64)),
                tf.int64))
    return loss, correct

  def _full_batch_epoch(self, x, y, epoch):
    """One step on the whole training set. Returns (loss, steps, finite)."""
    del epoch  # full batch: nothing to shuffle
    loss, _ = self._train_step(x, y)
    return loss, tf.constant(1), _all_finite(loss, self.model.weights)

  def _minibatch_epoch(self, x, y, epoch):
    """Shuffled mini-batches, the last partial one kept.

    The order depends only on (seed, epoch), so a resumed run replays it.
    Stops at the first non-finite loss or weight; returns the mean loss over
    the examples, the steps taken and whether everything stayed finite.
    """
    n = tf.shape(x)[0]
    b = self.batch_size
    seed = tf.stack([tf.constant(self.seed, tf.int64), tf.cast(epoch, tf.int64)])
    order = tf.random.experimental.stateless_shuffle(tf.range(n), seed=seed)
    total = tf.constant(0.0)
    taken = tf.constant(0)
    ok = tf.constant(True)
    for i in tf.range((n + b - 1) // b):
      if not ok:
        break
      batch = order[i * b:(i + 1) * b]
      loss, _ = self._train_step(tf.gather(x, batch), tf.gather(y, batch))
      total += loss * tf.cast(tf.size(batch), tf.float32)
      taken = i + 1
      ok = _all_finite(loss, self.model.weights)
    return total / tf.cast(n, tf.float32), taken, ok
