"""Model shapes and counts, known losses, train and forward-only eval steps."""

import math

import numpy as np
import pytest
import tensorflow as tf

from logreg_tf import loop
from logreg_tf.config import Config
from logreg_tf.model import LinearModel, SigmoidHead, SoftmaxHead
from logreg_tf.steps import SGD, Steps


def _data(n=32, d=784, k=10, seed=0):
  rng = np.random.default_rng(seed)
  x = tf.constant(rng.random((n, d)), tf.float32)
  y = tf.constant(rng.integers(0, k, n), tf.int64)
  return x, y


def test_parameter_count_and_shapes():
  model, _, _ = loop.build(Config(), num_train=100)
  assert sum(int(np.prod(v.shape)) for v in model.weights) == 7850
  assert model.kernel.shape == (784, 10) and model.bias.shape == (10,)
  x, _ = _data()
  assert model(x).shape == (32, 10)


def test_binomial_model_has_one_logit():
  model, _, _ = loop.build(Config(classes=(3, 8)), num_train=100)
  assert model.kernel.shape == (784, 1)
  assert sum(int(np.prod(v.shape)) for v in model.weights) == 785


def test_tutorial_init_is_standard_normal_without_bias():
  model = LinearModel(784, 10, use_bias=False, init="normal", seed=1)
  w = model.kernel.numpy()
  assert model.bias is None
  assert abs(w.mean()) < 0.03 and abs(w.std() - 1) < 0.03


def test_zero_weights_give_log_of_class_count():
  model = LinearModel(784, 10, use_bias=True, init="zeros", seed=0)
  steps = Steps(model, SoftmaxHead(), SGD(0.1), l2=0.0, batch_size=None,
                seed=0)
  x, y = _data()
  loss, _ = steps.objective(x, y)
  assert float(loss) == pytest.approx(math.log(10), rel=1e-6)
  binomial = Steps(LinearModel(784, 1, use_bias=True, init="zeros", seed=0),
                   SigmoidHead(), SGD(0.1), l2=0.0, batch_size=None, seed=0)
  loss, _ = binomial.objective(x, y % 2)
  assert float(loss) == pytest.approx(math.log(2), rel=1e-6)


def _snapshot(model, optimizer):
  return [v.numpy().copy() for v in model.weights] + [
      optimizer.iterations.numpy()]


def test_eval_is_forward_only():
  model = LinearModel(784, 10, use_bias=True, init="normal", seed=0)
  optimizer = SGD(0.5)
  steps = Steps(model, SoftmaxHead(), optimizer, l2=0.1, batch_size=None,
                seed=0)
  x, y = _data()
  before = _snapshot(model, optimizer)
  loss, correct = steps.eval_step(x, y)
  for a, b in zip(before, _snapshot(model, optimizer)):
    np.testing.assert_array_equal(a, b)
  # The compiled graph, with every function it calls, holds no write and no
  # gradient ...
  def op_types(fn):
    graph_def = fn.get_concrete_function(x, y).graph.as_graph_def()
    nodes = list(graph_def.node)
    for f in graph_def.library.function:
      nodes.extend(f.node_def)
    return {n.op for n in nodes}, {n.name.lower() for n in nodes}
  types, names = op_types(steps.eval_step)
  assert not {t for t in types if "Assign" in t}, types
  assert not any("grad" in n for n in names), names
  # ... while the train step does write.
  types, _ = op_types(steps.train_step)
  assert {"AssignSubVariableOp", "AssignAddVariableOp"} <= types
  logits = model(x).numpy()
  expected = np.sum(np.argmax(logits, 1) == y.numpy())
  assert int(correct) == expected


def test_train_step_moves_weights_down_the_loss():
  model = LinearModel(784, 10, use_bias=True, init="zeros", seed=0)
  optimizer = SGD(0.01)
  steps = Steps(model, SoftmaxHead(), optimizer, l2=0.0, batch_size=None,
                seed=0)
  x, y = _data()
  first, predictions = steps.train_step(x, y)
  second, _ = steps.train_step(x, y)
  assert float(second) < float(first)
  assert predictions.shape == (32,) and predictions.dtype == tf.int64
  assert int(optimizer.iterations) == 2


def test_linear_schedule_reaches_zero_at_the_last_step():
  optimizer = SGD(1.0, "linear", total_steps=4)
  rates = []
  for _ in range(5):
    rates.append(float(optimizer.current_lr()))
    optimizer.iterations.assign_add(1)
  np.testing.assert_allclose(rates, [1.0, 0.75, 0.5, 0.25, 0.0])


@pytest.mark.parametrize("n,batch,expected_steps", [(10, 3, 4), (10, 5, 2)])
def test_minibatch_epoch_keeps_the_last_partial_batch(n, batch, expected_steps):
  model = LinearModel(784, 10, use_bias=True, init="zeros", seed=0)
  optimizer = SGD(0.1)
  steps = Steps(model, SoftmaxHead(), optimizer, l2=0.0, batch_size=batch,
                seed=0)
  x, y = _data(n=n)
  _, taken, ok = steps.train_epoch(x, y, tf.constant(1, tf.int64))
  assert int(taken) == expected_steps and bool(ok)
  assert int(optimizer.iterations) == expected_steps


def test_minibatch_epoch_sees_every_example_once():
  # With lr 0 the epoch loss is the mean loss over all examples, whatever
  # the order: only true if each example is in exactly one batch.
  model = LinearModel(784, 10, use_bias=True, init="normal", seed=0)
  steps = Steps(model, SoftmaxHead(), SGD(1e-30), l2=0.0, batch_size=7,
                seed=3)
  x, y = _data(n=50)
  loss, taken, _ = steps.train_epoch(x, y, tf.constant(2, tf.int64))
  full, _ = steps.objective(x, y)
  assert int(taken) == 8
  assert float(loss) == pytest.approx(float(full), rel=1e-5)


def test_divergence_is_reported_not_hidden():
  model = LinearModel(784, 10, use_bias=True, init="normal", seed=0)
  steps = Steps(model, SoftmaxHead(), SGD(1e38), l2=0.0, batch_size=4, seed=0)
  x, y = _data(n=40)
  _, taken, ok = steps.train_epoch(x, y, tf.constant(1, tf.int64))
  assert not bool(ok)
  assert 1 <= int(taken) < 10  # stopped early, at the failing step


@pytest.mark.parametrize("batch_size", [None, 7])
def test_no_step_function_retraces_after_the_first_epoch(batch_size):
  model = LinearModel(784, 10, use_bias=True, init="zeros", seed=0)
  steps = Steps(model, SoftmaxHead(), SGD(0.1), l2=0.0, batch_size=batch_size,
                seed=0)
  x, y = _data(n=50)
  for epoch in range(1, 5):
    steps.train_epoch(x, y, tf.constant(epoch, tf.int64))
    steps.eval_step(x, y)
  assert steps.train_epoch.experimental_get_tracing_count() == 1
  assert steps.eval_step.experimental_get_tracing_count() == 1
