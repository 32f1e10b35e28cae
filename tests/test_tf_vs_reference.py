"""The TensorFlow trainer answers to the NumPy reference, in float32."""

import numpy as np
import pytest
import tensorflow as tf

from logreg_tf import reference as ref
from logreg_tf import steps as steps_lib
from logreg_tf.model import linear_model, head_for
from logreg_tf.steps import Steps, sgd


def _case(num_outputs, use_bias, l2, seed=0, n=64, lr=0.3):
  rng = np.random.default_rng(seed)
  x = rng.random((n, 784)).astype(np.float32)
  classes = 2 if num_outputs == 1 else num_outputs
  y = rng.integers(0, classes, n)
  model = linear_model(784, num_outputs, use_bias=use_bias, init="zeros",
                      seed=0)
  model.kernel.assign(rng.normal(0, 0.05, (784, num_outputs)))
  if use_bias:
    model.bias.assign(rng.normal(0, 0.5, num_outputs))
  steps = Steps(model, head_for(num_outputs), sgd(lr), l2=l2,
                batch_size=None, seed=0)
  return steps, model, x, y


def _reference(model, x, y, l2):
  """Reference loss and gradients; the bias rides as a column of ones."""
  W = model.kernel.numpy().astype(np.float64)
  X = x.astype(np.float64)
  if model.bias is not None:
    b = model.bias.numpy().astype(np.float64)
    W = np.vstack([W, b[None, :]])
    X = np.hstack([X, np.ones((len(X), 1))])
  if W.shape[1] == 1:
    loss, dW = ref.sigmoid_loss_vectorized(W[:, 0], X, y, l2)
    dW = dW[:, None]
  else:
    loss, dW = ref.softmax_loss_vectorized(W, X, y, l2)
  if model.bias is None:
    return loss, [dW]
  # The reference penalises every row of W; the trainer spares the bias.
  loss -= 0.5 * l2 * np.sum(b * b)
  return loss, [dW[:-1], dW[-1] - l2 * b]


def _close(actual, expected, rtol=1e-5):
  """Relative to the entry, with a floor relative to the largest entry."""
  np.testing.assert_allclose(actual, expected, rtol=rtol,
                             atol=rtol * np.max(np.abs(expected)))


CASES = [(k, bias, l2) for k in (10, 1) for bias in (True, False)
         for l2 in (0.0, 0.3)]


@pytest.mark.parametrize("num_outputs,use_bias,l2", CASES)
def test_loss_and_gradients_equal_the_reference(num_outputs, use_bias, l2):
  steps, model, x, y = _case(num_outputs, use_bias, l2)
  loss, grads = steps.loss_and_grads(tf.constant(x), tf.constant(y))
  ref_loss, ref_grads = _reference(model, x, y, l2)
  assert float(loss) == pytest.approx(ref_loss, rel=1e-5)
  assert len(grads) == len(ref_grads)
  for g, r in zip(grads, ref_grads):
    _close(g.numpy(), r)


@pytest.mark.parametrize("num_outputs,use_bias,l2", CASES)
def test_one_sgd_step_is_w_minus_lr_dw(num_outputs, use_bias, l2):
  lr = 0.3
  steps, model, x, y = _case(num_outputs, use_bias, l2, seed=1, lr=lr)
  before = [v.numpy().astype(np.float64) for v in model.weights]
  _, ref_grads = _reference(model, x, y, l2)
  steps.train_step(tf.constant(x), tf.constant(y))
  for v, w, g in zip(model.weights, before, ref_grads):
    _close(v.numpy(), w - lr * g)


def test_huge_scores_stay_finite_in_tensorflow():
  for num_outputs in (10, 1):
    steps, model, x, y = _case(num_outputs, True, 0.0)
    model.kernel.assign(model.kernel * 1e4)  # scores of order 1e4
    loss, grads = steps.loss_and_grads(tf.constant(x), tf.constant(y))
    assert np.isfinite(float(loss)) and float(loss) > 100
    assert all(np.all(np.isfinite(g.numpy())) for g in grads)


@pytest.mark.parametrize("num_outputs,use_bias,l2", CASES)
def test_closed_form_gradient_equals_autodiff(num_outputs, use_bias, l2):
  steps, model, x, y = _case(num_outputs, use_bias, l2, seed=2)
  x, y = tf.constant(x), tf.constant(y)
  _, grads = steps.loss_and_grads(x, y)
  with tf.GradientTape() as tape:
    loss, _ = steps.objective(x, y)
  for g, t in zip(grads, tape.gradient(loss, model.weights)):
    _close(g.numpy(), t.numpy())


@pytest.mark.parametrize("num_outputs,use_bias,l2", [(10, True, 0.1),
                                                     (1, False, 0.0)])
def test_minibatch_epoch_is_reference_sgd_in_the_seeded_order(
    num_outputs, use_bias, l2):
  n, b, lr, seed, epoch = 50, 8, 0.2, 5, 3  # 6 full batches and one of 2
  steps, model, x, y = _case(num_outputs, use_bias, l2, seed=3, n=n)
  steps = Steps(model, steps.head, sgd(lr, "linear", total_steps=10), l2=l2,
                batch_size=b, seed=seed)
  order = tf.random.experimental.stateless_shuffle(
      tf.range(n), seed=[seed, epoch]).numpy()
  # The reference, step by step, on a copy of the weights.
  shadow = linear_model(784, num_outputs, use_bias=use_bias, init="zeros",
                       seed=0)
  for s, v in zip(shadow.weights, model.weights):
    s.assign(v)
  expected_loss = 0.0
  for step, start in enumerate(range(0, n, b)):
    rows = order[start:start + b]
    loss, grads = _reference(shadow, x[rows], y[rows], l2)
    expected_loss += loss * len(rows)
    rate = lr * (1 - step / 10)
    for v, g in zip(shadow.weights, grads):
      v.assign(v.numpy() - rate * g)
  result = steps.train_epoch(tf.constant(x), tf.constant(y),
                             tf.constant(epoch, tf.int64))
  assert bool(result.finite) and int(result.steps) == 7
  assert int(steps.optimizer.iterations.numpy()) == 7
  assert float(result.loss) == pytest.approx(expected_loss / n, rel=1e-5)
  for v, s in zip(model.weights, shadow.weights):
    _close(v.numpy(), s.numpy())


@pytest.mark.parametrize("num_outputs,use_bias,l2", CASES)
def test_step_in_row_blocks_equals_the_reference(num_outputs, use_bias, l2):
  # Blocks of 16, 16, 16 and 2 rows: the last one uneven.
  steps, model, x, y = _case(num_outputs, use_bias, l2, seed=4, n=50)
  whole_loss, whole = steps.loss_and_grads(tf.constant(x), tf.constant(y))
  steps.block_rows = 16
  assert len(steps_lib.row_blocks(tf.constant(x), tf.constant(y), 16)) == 4
  loss, grads = steps.loss_and_grads(tf.constant(x), tf.constant(y))
  ref_loss, ref_grads = _reference(model, x, y, l2)
  assert float(loss) == pytest.approx(ref_loss, rel=1e-5)
  for g, r, w in zip(grads, ref_grads, whole):
    _close(g.numpy(), r)
    _close(g.numpy(), w.numpy(), rtol=1e-6)  # the unblocked step, to rounding
  assert float(loss) == pytest.approx(float(whole_loss), rel=1e-6)
