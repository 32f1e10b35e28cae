"""The implementations logreg_tf is measured against, on the same data.

Each is written the way its users would write it, not tuned for the race:
- PlainTF2: a tf.function train step with GradientTape, a tf.function eval
  step, data held as tensors.
- keras_fit: a Keras Dense layer (one unit per class) trained by model.fit.
- NumPy: the project's own vectorized reference (logreg_tf/reference.py),
  plus NumPy mini-batch SGD for the time-to-accuracy race.
"""

import time

import numpy as np
import tensorflow as tf

from logreg_tf import reference
class PlainTF2:
  """Full-batch or mini-batch SGD with a tape; returns loss and accuracy."""

  def __init__(self, lr: float, num_features: int, num_classes: int):
    self.lr = tf.Variable(lr, trainable=False)
    self.w = tf.Variable(tf.zeros([num_features, num_classes]))
    self.b = tf.Variable(tf.zeros([num_classes]))
    self.train_step = tf.function(self._train_step)
    self.eval_step = tf.function(self._eval_step)

  def _train_step(self, x, y):
    with tf.GradientTape() as tape:
      logits = tf.matmul(x, self.w) + self.b
      loss = tf.reduce_mean(
          tf.nn.sparse_softmax_cross_entropy_with_logits(y, logits))
    gw, gb = tape.gradient(loss, [self.w, self.b])
    self.w.assign_sub(self.lr * gw)
    self.b.assign_sub(self.lr * gb)
    return loss

  def _eval_step(self, x, y):
    logits = tf.matmul(x, self.w) + self.b
    loss = tf.reduce_mean(
        tf.nn.sparse_softmax_cross_entropy_with_logits(y, logits))
    correct = tf.reduce_mean(tf.cast(
        tf.equal(tf.argmax(logits, 1), y), tf.float32))
    return loss, correct


def keras_fit_epoch_times(x, y, xt, yt, lr, epochs):
  """Seconds per epoch of model.fit(batch = whole set, validation each epoch)."""
  import keras
  model = keras.Sequential([keras.Input((x.shape[1],)),
                            keras.layers.Dense(int(y.max()) + 1,
                                               kernel_initializer="zeros")])
  model.compile(optimizer=keras.optimizers.SGD(lr),
                loss=keras.losses.SparseCategoricalCrossentropy(
                    from_logits=True), metrics=["accuracy"])
  marks = []

  class Timer(keras.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None):
      marks.append(time.perf_counter())

    def on_epoch_end(self, epoch, logs=None):
      marks[-1] = time.perf_counter() - marks[-1]

  history = model.fit(x, y, batch_size=len(x), epochs=epochs, shuffle=False,
                      validation_data=(xt, yt), verbose=0, callbacks=[Timer()])
  return marks, history.history["val_accuracy"][-1]


def numpy_full_batch_epoch(w, x, y, xt, yt, lr):
  """One tutorial epoch with the reference: step, then test accuracy."""
  loss, dw = reference.softmax_loss_vectorized(w, x, y, 0.0)
  w -= np.float32(lr) * dw
  accuracy = np.mean(np.argmax(xt @ w, axis=1) == yt)
  return loss, accuracy


def numpy_minibatch_to(target, x, y, xt, yt, *, batch=100, lr=1.0,
                       total_steps=1200, eval_every=100, seed=0):
  """NumPy SGD with a bias, lr decayed linearly to 0 over total_steps.

  Returns (seconds until an evaluation reached `target` or None, steps,
  last accuracy).
  """
  rng = np.random.default_rng(seed)
  classes = int(y.max()) + 1
  w = np.zeros((x.shape[1], classes), np.float32)
  b = np.zeros(classes, np.float32)
  rows = np.arange(batch)
  start = time.perf_counter()
  step, accuracy = 0, 0.0
  while step < total_steps:
    order = rng.permutation(len(x))
    for i in range(0, len(x) - batch + 1, batch):
      idx = order[i:i + batch]
      xb = x[idx]
      logits = xb @ w + b
      logits -= logits.max(axis=1, keepdims=True)
      p = np.exp(logits)
      p /= p.sum(axis=1, keepdims=True)
      p[rows, y[idx]] -= 1
      rate = np.float32(lr * (1 - step / total_steps) / batch)
      w -= rate * (xb.T @ p)
      b -= rate * p.sum(axis=0)
      step += 1
      if step % eval_every == 0:
        accuracy = np.mean(np.argmax(xt @ w + b, axis=1) == yt)
        if accuracy >= target:
          return time.perf_counter() - start, step, accuracy
      if step >= total_steps:
        break
  return None, step, accuracy
