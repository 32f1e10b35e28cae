"""The model: one dense layer that returns logits, and the two heads.

The softmax head (multinomial) scores C classes with C logits; the sigmoid head
(binomial) scores the positive class with one logit. Losses are always computed
from logits by TensorFlow's fused, numerically stable ops.
"""

import tensorflow as tf


class LinearModel(tf.Module):
  """logits = x @ kernel + bias, kernel [D, K]."""

  def __init__(self, num_features: int, num_outputs: int, *, use_bias: bool,
               init: str, seed: int, name: str = "linear"):
    super().__init__(name=name)
    shape = (num_features, num_outputs)
    if init == "zeros":
      kernel = tf.zeros(shape)
    elif init == "normal":  # the tutorial's standard normal, from our seed
      kernel = tf.random.stateless_normal(shape, seed=[seed, 0])
    else:
      raise ValueError(f"init={init!r}: expected 'zeros' or 'normal'")
    self.kernel = tf.Variable(kernel, name="kernel")
    self.bias = (tf.Variable(tf.zeros([num_outputs]), name="bias")
                 if use_bias else None)

  def __call__(self, x: tf.Tensor) -> tf.Tensor:
    logits = tf.matmul(x, self.kernel)
    if self.bias is not None:
      logits += self.bias
    return logits

  @property
  def weights(self):
    """The variables SGD updates, kernel first."""
    return [self.kernel] if self.bias is None else [self.kernel, self.bias]

  def l2_penalty(self, l2: float) -> tf.Tensor:
    """0.5 * l2 * ||kernel||^2: the bias is not penalised."""
    return 0.5 * l2 * tf.reduce_sum(tf.square(self.kernel))


# The element-wise part of a step (softmax, loss, P - Y) compiled by XLA into
# one pass over the logits: 0.8 ms for the 60,000 x 10 logits of MNIST, where
# TensorFlow's fused SparseSoftmaxCrossEntropyWithLogits kernel takes 2.5 ms.
# The matrix products stay outside XLA, whose CPU products are slower here.
@tf.function(jit_compile=True, autograph=False)
def _softmax_loss_and_delta(logits, labels):
  shifted = logits - tf.reduce_max(logits, axis=1, keepdims=True)
  exp = tf.exp(shifted)
  norm = tf.reduce_sum(exp, axis=1, keepdims=True)
  one_hot = tf.one_hot(labels, tf.shape(logits)[1], dtype=logits.dtype)
  loss = tf.math.log(norm[:, 0]) - tf.reduce_sum(one_hot * shifted, axis=1)
  return loss, exp / norm - one_hot


def _sigmoid_loss(logits, labels):
  """Per-example binary cross-entropy [N] of one logit against 0/1 labels."""
  y = tf.cast(labels, logits.dtype)[:, None]
  return tf.nn.sigmoid_cross_entropy_with_logits(labels=y, logits=logits)[:, 0]


@tf.function(jit_compile=True, autograph=False)
def _sigmoid_loss_and_delta(logits, labels):
  y = tf.cast(labels, logits.dtype)[:, None]
  return _sigmoid_loss(logits, labels), tf.sigmoid(logits) - y


class _Head:
  """What both heads share: evaluation from their own loss and prediction."""

  def metrics(self, logits, labels):
    """(summed loss, number correct) over the examples given.

    Not compiled by XLA: compiling would cost a quarter of a second at start
    to save a fraction of a millisecond per evaluation.
    """
    correct = tf.equal(self.predict(logits), tf.cast(labels, tf.int64))
    return (tf.reduce_sum(self.loss(logits, labels)),
            tf.reduce_sum(tf.cast(correct, tf.int64)))


class SoftmaxHead(_Head):
  """Multinomial: integer labels 0..C-1 against C logits."""

  def loss(self, logits, labels):
    """Per-example cross-entropy [N]."""
    return tf.nn.sparse_softmax_cross_entropy_with_logits(
        labels=labels, logits=logits)

  def loss_and_delta(self, logits, labels):
    """Per-example loss [N] and its derivative by the logits, P - Y [N, C]."""
    return _softmax_loss_and_delta(logits, labels)

  def predict(self, logits):
    return tf.argmax(logits, axis=-1, output_type=tf.int64)


class SigmoidHead(_Head):
  """Binomial: labels in {0, 1} against one logit for class 1."""

  def loss(self, logits, labels):
    return _sigmoid_loss(logits, labels)

  def loss_and_delta(self, logits, labels):
    """Per-example loss [N] and its derivative by the logit, p - y [N, 1]."""
    return _sigmoid_loss_and_delta(logits, labels)

  def predict(self, logits):
    return tf.cast(logits[:, 0] > 0, tf.int64)


def head_for(num_outputs: int):
  return SigmoidHead() if num_outputs == 1 else SoftmaxHead()
