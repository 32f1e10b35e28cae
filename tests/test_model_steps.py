"""Model shapes and counts, known losses, train and forward-only eval steps."""

import math

import numpy as np
import pytest
import tensorflow as tf

from logreg_tf import loop
from logreg_tf import steps as steps_lib
from logreg_tf.config import RunConfig
from logreg_tf.model import SigmoidHead, SoftmaxHead, linear_model
from logreg_tf.steps import EpochResult, EvalResult, Steps, sgd

from conftest import mnist_info


def _data(n=32, d=784, k=10, seed=0):
  rng = np.random.default_rng(seed)
  x = tf.constant(rng.random((n, d)), tf.float32)
  y = tf.constant(rng.integers(0, k, n), tf.int64)
  return x, y


def test_parameter_count_and_shapes():
  model = loop.build(RunConfig(), mnist_info(), num_train=100).model
  assert sum(int(np.prod(v.shape)) for v in model.weights) == 7850
  assert model.kernel.shape == (784, 10) and model.bias.shape == (10,)
  x, _ = _data()
  assert model(x).shape == (32, 10)


def test_binomial_model_has_one_logit():
  model = loop.build(RunConfig(), mnist_info(class_names=("3", "8")),
                     num_train=100).model
  assert model.kernel.shape == (784, 1)
  assert sum(int(np.prod(v.shape)) for v in model.weights) == 785


def test_tutorial_init_is_standard_normal_without_bias():
  model = linear_model(784, 10, use_bias=False, init="normal", seed=1)
  w = model.kernel.numpy()
  assert model.bias is None
  assert abs(w.mean()) < 0.03 and abs(w.std() - 1) < 0.03


def test_zero_weights_give_log_of_class_count():
  model = linear_model(784, 10, use_bias=True, init="zeros", seed=0)
  steps = Steps(model, SoftmaxHead(), sgd(0.1), l2=0.0, batch_size=None,
                seed=0)
  x, y = _data()
  loss, _ = steps.objective(x, y)
  assert float(loss) == pytest.approx(math.log(10), rel=1e-6)
  binomial = Steps(linear_model(784, 1, use_bias=True, init="zeros", seed=0),
                   SigmoidHead(), sgd(0.1), l2=0.0, batch_size=None, seed=0)
  loss, _ = binomial.objective(x, y % 2)
  assert float(loss) == pytest.approx(math.log(2), rel=1e-6)


def _snapshot(model, optimizer):
  return [v.numpy().copy() for v in model.weights] + [
      int(optimizer.iterations.numpy())]


def _ops(fn, *args):
  """Op types and lower-cased node names of fn's graph and its functions."""
  graph_def = fn.get_concrete_function(*args).graph.as_graph_def()
  nodes = list(graph_def.node)
  for f in graph_def.library.function:
    nodes.extend(f.node_def)
  return [n.op for n in nodes], {n.name.lower() for n in nodes}


def _writes(op_types):
  return sorted(t for t in op_types if "Assign" in t or "Scatter" in t)


def test_eval_is_forward_only():
  model = linear_model(784, 10, use_bias=True, init="normal", seed=0)
  optimizer = sgd(0.5)
  steps = Steps(model, SoftmaxHead(), optimizer, l2=0.1, batch_size=None,
                seed=0)
  x, y = _data()
  before = _snapshot(model, optimizer)
  result = steps.eval_step(x, y)
  assert isinstance(result, EvalResult)
  for a, b in zip(before, _snapshot(model, optimizer)):
    np.testing.assert_array_equal(a, b)
  # The compiled graph, with every function it calls, holds no write and no
  # gradient ...
  types, names = _ops(steps.eval_step, x, y)
  assert not _writes(types), types
  assert not any("grad" in n for n in names), names
  # ... while the train step does write.
  types, _ = _ops(steps.train_step, x, y)
  # (Keras SGD: assign_sub on the weights, a plain assign of its step count)
  assert {"AssignSubVariableOp", "AssignVariableOp"} <= set(types)
  logits = model(x).numpy()
  expected = np.sum(np.argmax(logits, 1) == y.numpy())
  assert int(result.correct) == expected


@pytest.mark.parametrize("batch_size", [None, 8])
def test_the_evaluation_fused_into_an_epoch_writes_nothing(batch_size):
  # What the command runs at a display step is train_epoch_and_eval: its
  # graph must hold exactly the writes of the epoch alone, and its
  # evaluation must equal eval_step's after the same epoch.
  def fresh():
    model = linear_model(784, 10, use_bias=True, init="normal", seed=0)
    return Steps(model, SoftmaxHead(), sgd(0.1), l2=0.1,
                 batch_size=batch_size, seed=0)
  x, y = _data(n=40)
  xt, yt = _data(n=24, seed=1)
  epoch = tf.constant(1, tf.int64)
  fused, alone = fresh(), fresh()
  fused_types, fused_names = _ops(fused.train_epoch_and_eval, x, y, epoch,
                                  xt, yt)
  epoch_types, epoch_names = _ops(alone.train_epoch, x, y, epoch)
  assert _writes(fused_types) == _writes(epoch_types)
  assert ({n for n in fused_names if "grad" in n}
          == {n for n in epoch_names if "grad" in n})
  result, evaluation = fused.train_epoch_and_eval(x, y, epoch, xt, yt)
  assert isinstance(result, EpochResult) and isinstance(evaluation, EvalResult)
  alone.train_epoch(x, y, epoch)
  separate = alone.eval_step(xt, yt)
  assert float(evaluation.loss) == float(separate.loss)
  assert int(evaluation.correct) == int(separate.correct)


def test_train_step_moves_weights_down_the_loss():
  model = linear_model(784, 10, use_bias=True, init="zeros", seed=0)
  optimizer = sgd(0.01)
  steps = Steps(model, SoftmaxHead(), optimizer, l2=0.0, batch_size=None,
                seed=0)
  x, y = _data()
  first = steps.train_step(x, y)
  second = steps.train_step(x, y)
  assert float(second) < float(first)
  assert int(optimizer.iterations.numpy()) == 2


def test_linear_schedule_reaches_zero_at_the_last_step():
  optimizer = sgd(1.0, "linear", total_steps=4)
  rates = []
  for _ in range(5):
    rates.append(float(optimizer.learning_rate))
    optimizer.iterations.assign_add(1)
  np.testing.assert_allclose(rates, [1.0, 0.75, 0.5, 0.25, 0.0])


@pytest.mark.parametrize("n,batch,expected_steps", [(10, 3, 4), (10, 5, 2)])
def test_minibatch_epoch_keeps_the_last_partial_batch(n, batch, expected_steps):
  model = linear_model(784, 10, use_bias=True, init="zeros", seed=0)
  optimizer = sgd(0.1)
  steps = Steps(model, SoftmaxHead(), optimizer, l2=0.0, batch_size=batch,
                seed=0)
  x, y = _data(n=n)
  result = steps.train_epoch(x, y, tf.constant(1, tf.int64))
  assert int(result.steps) == expected_steps and bool(result.finite)
  assert int(optimizer.iterations.numpy()) == expected_steps


def test_minibatch_epoch_sees_every_example_once():
  # With lr 0 the epoch loss is the mean loss over all examples, whatever
  # the order: only true if each example is in exactly one batch.
  model = linear_model(784, 10, use_bias=True, init="normal", seed=0)
  steps = Steps(model, SoftmaxHead(), sgd(1e-30), l2=0.0, batch_size=7,
                seed=3)
  x, y = _data(n=50)
  result = steps.train_epoch(x, y, tf.constant(2, tf.int64))
  full, _ = steps.objective(x, y)
  assert int(result.steps) == 8
  assert float(result.loss) == pytest.approx(float(full), rel=1e-5)


def test_divergence_is_reported_not_hidden():
  model = linear_model(784, 10, use_bias=True, init="normal", seed=0)
  steps = Steps(model, SoftmaxHead(), sgd(1e38), l2=0.0, batch_size=4, seed=0)
  x, y = _data(n=40)
  result = steps.train_epoch(x, y, tf.constant(1, tf.int64))
  assert not bool(result.finite)
  assert 1 <= int(result.steps) < 10  # stopped early, at the failing step


@pytest.mark.parametrize("batch_size", [None, 7])
def test_no_step_function_retraces_after_the_first_epoch(batch_size):
  model = linear_model(784, 10, use_bias=True, init="zeros", seed=0)
  steps = Steps(model, SoftmaxHead(), sgd(0.1), l2=0.0, batch_size=batch_size,
                seed=0)
  x, y = _data(n=50)
  for epoch in range(1, 5):
    steps.train_epoch(x, y, tf.constant(epoch, tf.int64))
    steps.eval_step(x, y)
  assert steps.train_epoch.experimental_get_tracing_count() == 1
  assert steps.eval_step.experimental_get_tracing_count() == 1


def test_blocks_are_a_quarter_of_the_last_level_cache(monkeypatch):
  from logreg_tf import blocks
  assert blocks._size("32768K\n") == 32 << 20 and blocks._size("1M") == 1 << 20
  monkeypatch.setattr(blocks, "last_level_cache_bytes", lambda: 32 << 20)
  assert blocks.block_rows(784) == (32 << 20) // 4 // (784 * 4)  # 2674
  assert blocks.block_rows(3072) == (32 << 20) // 4 // (3072 * 4)
  monkeypatch.setattr(blocks, "last_level_cache_bytes", lambda: 256 << 10)
  assert blocks.block_rows(784) == 256  # the floor
  monkeypatch.setattr(blocks, "last_level_cache_bytes", lambda: None)
  assert blocks.block_rows(784) is None  # unknown: one block


def test_the_trainer_steps_in_blocks_on_this_cpu():
  steps = loop.build(RunConfig(), mnist_info(), num_train=60000)
  from logreg_tf import blocks
  assert steps.block_rows == blocks.block_rows(784)
  x, y = _data(n=100)
  steps.block_rows = 30
  assert [int(b[0].shape[0]) for b in
          steps_lib.row_blocks(x, y, steps.block_rows)] == [30, 30, 30, 10]
