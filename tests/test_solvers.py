"""The exact solvers: their Hessian against the NumPy reference and autodiff,
the certificate against the true gap, the optimum against scikit-learn, and
the solvers as runs (log, events, run.json, resume, no finite optimum)."""

import json
import os
import re
import signal
import threading

import numpy as np
import pytest
import tensorflow as tf

from helpers import (error_lines, final_state, parse_train, read_tags,
                     shared_idx_dir, train)
from logreg_tf import reference as ref
from logreg_tf.errors import Interrupted
from logreg_tf.model import head_for
from logreg_tf.solvers import LBFGS, NewtonCG
from logreg_tf.solvers.objective import Objective

CASES = [(k, bias, l2) for k in (3, 1) for bias in (True, False)
         for l2 in (0.0, 0.1)]


def _problem(outputs, n=60, d=7, seed=0):
  rng = np.random.default_rng(seed)
  x = rng.random((n, d)).astype(np.float32)
  y = rng.integers(0, 2 if outputs == 1 else outputs, n)
  w = rng.normal(0, 0.5, (d, outputs))
  return x, y, w


def _reference_hessian(w, b, x, y, l2):
  """The full Hessian by (W, b), rows of W then b, from the reference's
  Hessian products on unit vectors (the bias rides as a column of ones)."""
  del y  # the Hessian of cross-entropy does not depend on the labels
  X = x.astype(np.float64)
  W = w
  if b is not None:
    X = np.hstack([X, np.ones((len(X), 1))])
    W = np.vstack([w, b[None, :]])
  size = W.size
  H = np.zeros((size, size))
  for i in range(size):
    e = np.zeros(size)
    e[i] = 1
    if W.shape[1] == 1:
      col = ref.sigmoid_hessian_vector(W[:, 0], X, l2, e)
    else:
      col = ref.softmax_hessian_vector(W, X, l2, e.reshape(W.shape)).ravel()
    H[:, i] = col
  if b is not None:  # the reference penalises the bias row; we do not
    k = W.shape[1]
    H[-k:, -k:] -= l2 * np.eye(k)
  return H


def _autodiff_hessian(w, b, x, y, l2, head):
  params = tf.Variable(np.vstack([w, b[None, :]]) if b is not None else w)
  X = tf.constant(x, tf.float64)
  with tf.GradientTape() as outer:
    with tf.GradientTape() as inner:
      kernel = params[:w.shape[0]]
      logits = tf.matmul(X, kernel)
      if b is not None:
        logits += params[-1]
      f = (tf.reduce_mean(head.loss(logits, tf.constant(y)))
           + 0.5 * l2 * tf.reduce_sum(kernel ** 2))
    grad = inner.gradient(f, params)
  size = int(tf.size(params))
  return tf.reshape(outer.jacobian(grad, params), [size, size]).numpy()


@pytest.mark.parametrize("outputs,use_bias,l2", CASES)
def test_reduced_hessian_and_gradient_equal_reference_and_autodiff(
    outputs, use_bias, l2):
  x, y, w = _problem(outputs)
  head = head_for(outputs)
  objective = Objective(head, x, tf.constant(y), l2, use_bias)
  point = objective.point(tf.constant(w), tf.zeros([outputs if use_bias
                                                    else 0], tf.float64))
  b = point.bias.numpy() if use_bias else None
  full = _reference_hessian(w, b, x, y, l2)
  np.testing.assert_allclose(_autodiff_hessian(w, b, x, y, l2, head), full,
                             rtol=1e-9, atol=1e-12)
  # The reference gradient at (W, b*(W)): its W part is g's gradient, its
  # bias part zero.
  X = x.astype(np.float64)
  if use_bias:
    X, W = np.hstack([X, np.ones((len(X), 1))]), np.vstack([w, b[None]])
  else:
    W = w
  if outputs == 1:
    _, dW = ref.sigmoid_loss_vectorized(W[:, 0], X, y, l2)
    dW = dW[:, None]
  else:
    _, dW = ref.softmax_loss_vectorized(W, X, y, l2)
  np.testing.assert_allclose(point.grad.numpy(), dW[:w.shape[0]],
                             rtol=1e-10, atol=1e-13)
  if use_bias:
    np.testing.assert_allclose(dW[-1] - l2 * b, 0, atol=1e-11)
  # The reduced Hessian is the Schur complement of the bias block (its
  # products run in float32: see objective.py).
  m = w.size
  reduced = full[:m, :m]
  if use_bias:
    reduced = reduced - full[:m, m:] @ np.linalg.pinv(full[m:, m:]) @ full[
        m:, :m]
  v = np.random.default_rng(1).normal(size=w.shape)
  np.testing.assert_allclose(
      objective.hessian_times(objective.curvature_at(point.logits),
                              tf.constant(v)).numpy().ravel(),
      reduced @ v.ravel(), rtol=2e-5, atol=2e-5 * np.abs(reduced @ v.ravel()).max())


@pytest.mark.parametrize("outputs", [3, 1])
def test_the_certificate_bounds_the_true_gap(outputs):
  x, y, _ = _problem(outputs, n=80)
  l2 = 0.05
  objective = Objective(head_for(outputs), x, tf.constant(y), l2, True)
  solver = NewtonCG(tf.zeros([x.shape[1], outputs]), True, l2, tol=1e-15)
  solver.solve(objective)
  f_star = float(solver.value)
  assert solver.bound() < 1e-13
  rng = np.random.default_rng(2)
  for scale in (1.0, 0.1, 1e-3):  # far from the optimum, then near it
    w = solver.w.numpy() + scale * rng.normal(size=solver.w.shape)
    b = solver.b.numpy() + scale * rng.normal(size=outputs)
    cert = objective.certificate(w, b)
    gap = cert.objective - f_star
    assert 0 < gap <= cert.suboptimality_bound
    assert cert.suboptimality_bound < 1e3 * gap  # not vacuous


@pytest.mark.parametrize("solver_class", [NewtonCG, LBFGS])
@pytest.mark.parametrize("use_bias", [True, False])
def test_a_solve_and_its_certificate_trace_the_point_function_once(
    solver_class, use_bias):
  # The solver's state is variables, its trial steps and the certificate's
  # points tensors (or no bias at all); one trace serves all (each trace of
  # it took 0.3 s and its first call 0.3 s more on MNIST).
  x, y, _ = _problem(3, n=80)
  objective = Objective(head_for(3), x, tf.constant(y), 0.05, use_bias)
  solver = solver_class(tf.zeros([x.shape[1], 3]), use_bias, 0.05,
                        tol=1e-12)
  solver.solve(objective, max_iter=3)
  cert = objective.certificate(solver.w, solver.b)
  assert int(solver.iterations) == 3
  assert cert.objective == pytest.approx(float(solver.value), rel=1e-12)
  assert objective._traced_point.experimental_get_tracing_count() == 1


def test_newton_cg_makes_its_pixel_basis_beside_its_first_point():
  # X^T X and its eigenvectors (TensorFlow's kernels) are made on a thread
  # while the first point's function is traced (Python), once.
  x, y, _ = _problem(3, n=80)
  objective = Objective(head_for(3), x, tf.constant(y), 0.05, True)
  threads = []
  make = objective.pixel_basis

  def recorded():
    if objective._basis is None:
      threads.append(threading.current_thread().name)
    return make()
  objective.pixel_basis = recorded
  solver = NewtonCG(tf.zeros([x.shape[1], 3]), True, 0.05, tol=1e-12)
  solver.solve(objective, max_iter=2)
  assert len(threads) == 1 and threads[0].startswith("pixel-basis"), threads


@pytest.fixture(scope="module")
def idx(tmp_path_factory):
  return shared_idx_dir(tmp_path_factory, 100, 30)


def _solve(idx, model_dir, solver, *flags):
  result = train(f"--idx_dir={idx}", f"--model_dir={model_dir}",
                 f"--solver={solver}", "--l2=0.01", "--tol=1e-10",
                 "--display_step=5", "--checkpoint_every=3", *flags)
  assert result.returncode == 0, result.stderr[-2000:]
  with open(os.path.join(model_dir, "run.json")) as f:
    return result, json.load(f)


def test_both_solvers_reach_the_same_certified_optimum(idx, tmp_path):
  records = {}
  for solver in ("lbfgs", "newton_cg"):
    result, record = _solve(idx, tmp_path / solver, solver)
    opt = record["optimization"]
    assert opt["solver"] == solver and opt["converged"] is True
    assert opt["suboptimality_bound"] <= 1e-10
    assert opt["gradient_norm"] ** 2 / 0.02 == pytest.approx(
        opt["suboptimality_bound"])
    last = [l for l in result.stderr.splitlines() if "objective " in l][-1]
    assert re.search(rf"epoch +{opt['iterations']}/1000 ", last)
    for key in ("gradient_norm", "suboptimality_bound", "test_accuracy"):
      assert f" {key} " in last
    assert {"train/objective", "train/gradient_norm",
            "train/suboptimality_bound"} <= read_tags(str(tmp_path / solver))
    records[solver] = opt
  assert records["newton_cg"]["iterations"] < records["lbfgs"]["iterations"]
  assert abs(records["lbfgs"]["objective"]
             - records["newton_cg"]["objective"]) <= 1e-10


class _StopAfter:
  """A stop request that arrives after `epochs` epochs (the loop reads
  `signum` once per epoch), as a SIGTERM would."""

  def __init__(self, epochs):
    self.left = epochs

  @property
  def signum(self):
    self.left -= 1
    return signal.SIGTERM if self.left < 0 else None


@pytest.mark.parametrize("solver", ["lbfgs", "newton_cg"])
def test_an_interrupted_solver_resumes_bitwise(idx, tmp_path, solver):
  from logreg_tf import loop
  _, one_go = _solve(idx, tmp_path / "one_go", solver)
  config, storage = parse_train(
      f"--idx_dir={idx}", f"--model_dir={tmp_path / 'stopped'}",
      f"--solver={solver}", "--l2=0.01", "--tol=1e-10", "--display_step=5",
      "--checkpoint_every=3")
  stop_at = 7 if solver == "lbfgs" else 2
  with pytest.raises(Interrupted):
    loop.train_and_evaluate(config, storage, stop=_StopAfter(stop_at))
  assert tf.train.latest_checkpoint(str(tmp_path / "stopped" / "checkpoints")
                                    ).endswith(f"ckpt-{stop_at + 1}")
  loop.train_and_evaluate(config, storage)
  readers = [tf.train.load_checkpoint(str(tmp_path / d / "checkpoints"))
             for d in ("one_go", "stopped")]
  keys = [k for k in readers[0].get_variable_to_shape_map()
          if k.split("/")[0] in ("model", "optimizer", "solver", "epoch")]
  assert any(k.startswith("solver/") for k in keys)
  if solver == "lbfgs":
    assert any(k.startswith("solver/s/") for k in keys)
  for key in keys:
    np.testing.assert_array_equal(readers[0].get_tensor(key),
                                  readers[1].get_tensor(key), err_msg=key)
  with open(tmp_path / "stopped" / "run.json") as f:
    assert json.load(f)["optimization"] == one_go["optimization"]
  weights, _ = final_state(str(tmp_path / "stopped"))
  assert any(k.startswith("model/kernel") for k in weights)


def test_no_finite_optimum_ends_in_one_line(idx, tmp_path):
  # 100 random images in 784 dimensions are linearly separable.
  result = train(f"--idx_dir={idx}", f"--model_dir={tmp_path}",
                 "--solver=lbfgs", "--l2=0")
  assert result.returncode == 6, result.stderr[-2000:]
  (line,) = error_lines(result.stderr)
  assert "no finite optimum" in line and "all 100 training examples" in line
  assert "--l2=1e-4" in line
  with open(tmp_path / "run.json") as f:
    assert json.load(f)["status"] == "no finite optimum"


def test_without_a_penalty_a_solver_stops_on_the_gradient(tmp_path):
  # Not separable: every image is in the training set with both labels (and
  # half of them once more as a 1), so a finite optimum exists.
  from conftest import write_idx
  rng = np.random.default_rng(3)
  base = rng.integers(0, 256, (30, 28, 28))
  images = np.concatenate([base, base, base[:15]])
  labels = np.array([0] * 30 + [1] * 45)
  for name, array in (("train-images-idx3-ubyte", images),
                      ("train-labels-idx1-ubyte", labels),
                      ("t10k-images-idx3-ubyte", base[:10]),
                      ("t10k-labels-idx1-ubyte", np.arange(10) % 2)):
    write_idx(tmp_path / name, array)
  result = train(f"--idx_dir={tmp_path}", f"--model_dir={tmp_path / 'run'}",
                 "--solver=newton_cg", "--l2=0", "--tol=1e-8",
                 "--classes=0,1")
  assert result.returncode == 0, result.stderr[-2000:]
  with open(tmp_path / "run" / "run.json") as f:
    opt = json.load(f)["optimization"]
  assert opt["converged"] is True and opt["suboptimality_bound"] is None
  assert opt["gradient_norm"] <= 1e-8 * np.sqrt(28 * 28 + 1)
  assert opt["iterations"] < 50


def _mnist_subset(decoded, classes, n):
  from logreg_tf import data
  from logreg_tf.config import DataSpec
  dataset = data.load_selected(DataSpec(classes=classes), decoded)
  x = data.to_features(dataset.train_images[:n]).numpy()
  return x, dataset.train_labels[:n].astype(np.int64)


@pytest.mark.real_data
@pytest.mark.parametrize("classes,outputs", [(None, 10), (("3", "8"), 1)])
def test_both_solvers_reach_the_optimum_scikit_learn_finds(decoded, classes,
                                                           outputs):
  # The oracle: scikit-learn's lbfgs on the same objective, C = 1 / (l2 N),
  # at a tolerance far past its default, on 1,000 MNIST training images.
  from sklearn.linear_model import LogisticRegression
  x, y = _mnist_subset(decoded, classes, 1000)
  l2 = 1e-3
  oracle = LogisticRegression(C=1 / (l2 * len(y)), tol=1e-12, max_iter=20000)
  oracle.fit(x.astype(np.float64), y)
  objective = Objective(head_for(outputs), x, tf.constant(y), l2, True)
  theirs = objective.certificate(oracle.coef_.T, oracle.intercept_)
  for kind in (LBFGS, NewtonCG):
    solver = kind(tf.zeros([784, outputs]), True, l2, tol=1e-12)
    solver.solve(objective)
    assert bool(solver.converged) and solver.bound() <= 1e-12
    ours = float(solver.value)
    # Certified within 1e-12 of f*; the oracle is no lower and within 1e-9.
    assert ours <= theirs.objective + 1e-12
    assert theirs.objective - ours <= 1e-9
    np.testing.assert_allclose(solver.w.numpy(), oracle.coef_.T, atol=2e-4)
    bias = solver.b.numpy()
    if outputs > 1:  # softmax biases are defined up to a common constant
      bias = bias - bias.mean() + oracle.intercept_.mean()
    np.testing.assert_allclose(bias, oracle.intercept_, atol=2e-4)


def test_a_solver_stopped_by_max_iter_says_so(idx, tmp_path):
  result, record = _solve(idx, tmp_path, "lbfgs", "--max_iter=2")
  assert record["optimization"]["converged"] is False
  assert record["optimization"]["iterations"] == 2
  assert "lbfgs stopped after 2 iterations without meeting --tol=1e-10" in (
      result.stderr)
