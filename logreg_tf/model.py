"""The model: one Keras dense layer that returns logits, and the two heads.

The softmax head (multinomial) scores C classes with C logits; the sigmoid head
(binomial) scores the positive class with one logit. Every loss is computed
from logits, never from probabilities: evaluation uses TensorFlow's fused
cross-entropy ops, and training uses an XLA-compiled pass that computes the
same loss by log-sum-exp (softplus for the sigmoid) together with its
derivative by the logits, which the closed-form gradient needs.
"""

import keras
import tensorflow as tf


def num_outputs(num_classes: int) -> int:
  """Logits per example: one for the binomial model, else one per class."""
  return 1 if num_classes == 2 else num_classes


class StatelessNormal(keras.initializers.Initializer):
  """Standard normal draws fixed by `seed` alone (the tutorial's init)."""

  def __init__(self, seed: int = 0):
    self.seed = int(seed)

  def __call__(self, shape, dtype=None):
    return tf.random.stateless_normal(shape, seed=[self.seed, 0],
                                      dtype=dtype or "float32")

  def get_config(self):
    return {"seed": self.seed}


def linear_model(num_features: int, outputs: int, *, use_bias: bool,
                 init: str, seed: int) -> keras.layers.Dense:
  """logits = x @ kernel + bias, kernel [D, K], built and ready to call."""
  if init not in ("zeros", "normal"):
    raise ValueError(f"init={init!r}: expected 'zeros' or 'normal'")
  layer = keras.layers.Dense(
      outputs, use_bias=use_bias, name="linear",
      kernel_initializer="zeros" if init == "zeros" else StatelessNormal(seed),
      bias_initializer="zeros")
  layer.build((None, num_features))
  return layer


def l2_penalty(model, l2: float) -> tf.Tensor:
  """0.5 * l2 * ||kernel||^2: the bias is not penalised."""
  return 0.5 * l2 * tf.reduce_sum(tf.square(model.kernel))


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

  def curvature(self, logits, direction):
    """Each example's Hessian of the loss by its logits, (diag(p) - p p^T),
    times that example's row of `direction` [N, C]."""
    p = tf.nn.softmax(logits)
    pd = p * direction
    return pd - p * tf.reduce_sum(pd, axis=1, keepdims=True)

  def curvature_diagonal(self, logits):
    """The diagonal of each example's Hessian by its logits, p (1 - p)."""
    p = tf.nn.softmax(logits)
    return p * (1 - p)

  def curvature_matrices(self, logits):
    """Each example's Hessian of the loss by its logits [N, C, C]:
    diag(p) - p p^T."""
    p = tf.nn.softmax(logits)
    return tf.linalg.diag(p) - p[:, :, None] * p[:, None, :]

  def mean_curvature(self, logits):
    """The mean of the examples' Hessians by their logits,
    diag(mean p) - P^T P / N [C, C]."""
    p = tf.nn.softmax(logits)
    n = tf.cast(tf.shape(p)[0], p.dtype)
    return (tf.linalg.diag(tf.reduce_sum(p, axis=0) / n)
            - tf.matmul(p, p, transpose_a=True) / n)

  def bias_hessian(self, logits):
    """The Hessian by the bias, mean_curvature, plus 1 1^T / C. Adding the
    same number to every bias changes no probability, so the mean Hessian
    is singular along 1 = (1, ..., 1); the added term makes it invertible
    and, since every gradient and Hessian product by the bias is orthogonal
    to 1, changes no solution of the systems it is used in."""
    classes = tf.shape(logits)[1]
    return self.mean_curvature(logits) + tf.ones(
        [classes, classes], logits.dtype) / tf.cast(classes, logits.dtype)


class SigmoidHead(_Head):
  """Binomial: labels in {0, 1} against one logit for class 1."""

  def loss(self, logits, labels):
    return _sigmoid_loss(logits, labels)

  def loss_and_delta(self, logits, labels):
    """Per-example loss [N] and its derivative by the logit, p - y [N, 1]."""
    return _sigmoid_loss_and_delta(logits, labels)

  def predict(self, logits):
    return tf.cast(logits[:, 0] > 0, tf.int64)

  def curvature(self, logits, direction):
    """Each example's second derivative of the loss by its logit,
    p (1 - p), times `direction` [N, 1]."""
    return self.curvature_diagonal(logits) * direction

  def curvature_diagonal(self, logits):
    p = tf.sigmoid(logits)
    return p * (1 - p)

  def curvature_matrices(self, logits):
    """Each example's second derivative by its logit [N, 1, 1]."""
    return self.curvature_diagonal(logits)[:, :, None]

  def mean_curvature(self, logits):
    """The mean second derivative by the logit [1, 1]."""
    return tf.reduce_mean(self.curvature_diagonal(logits), keepdims=True)

  def bias_hessian(self, logits):
    return self.mean_curvature(logits)


def head_for(outputs: int):
  return SigmoidHead() if outputs == 1 else SoftmaxHead()
