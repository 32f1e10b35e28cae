"""The NumPy oracle: naive == vectorized, finite differences, stability."""

import math

import numpy as np
import pytest

from logreg_tf import reference as ref
SOFTMAX = (ref.softmax_loss_naive, ref.softmax_loss_vectorized)
SIGMOID = (ref.sigmoid_loss_naive, ref.sigmoid_loss_vectorized)


def _softmax_case(n, d, c, seed, dtype=np.float64):
  rng = np.random.default_rng(seed)
  return (rng.normal(0, 0.5, (d, c)).astype(dtype),
          rng.normal(0, 1, (n, d)).astype(dtype), rng.integers(0, c, n))


def _sigmoid_case(n, d, seed, dtype=np.float64):
  rng = np.random.default_rng(seed)
  return (rng.normal(0, 0.5, d).astype(dtype),
          rng.normal(0, 1, (n, d)).astype(dtype), rng.integers(0, 2, n))


def _rel(a, b):
  return np.max(np.abs(a - b) / np.maximum(np.abs(a) + np.abs(b), 1e-300))


@pytest.mark.parametrize("n,d,c", [(1, 1, 2), (5, 3, 4), (40, 20, 10),
                                   (7, 784, 10)])
@pytest.mark.parametrize("reg", [0.0, 0.3])
def test_softmax_naive_equals_vectorized(n, d, c, reg):
  W, X, y = _softmax_case(n, d, c, seed=n + d)
  (l1, g1), (l2, g2) = (f(W, X, y, reg) for f in SOFTMAX)
  assert abs(l1 - l2) <= 1e-12 * abs(l1)
  # Entries near zero come from sums that cancel: the summation orders of
  # the two versions differ there by a few ulps of the largest entry.
  np.testing.assert_allclose(g1, g2, rtol=1e-12,
                             atol=1e-12 * np.max(np.abs(g2)))


@pytest.mark.parametrize("n,d", [(1, 1), (5, 3), (40, 20), (7, 784)])
@pytest.mark.parametrize("reg", [0.0, 0.3])
def test_sigmoid_naive_equals_vectorized(n, d, reg):
  w, X, y = _sigmoid_case(n, d, seed=n + d)
  (l1, g1), (l2, g2) = (f(w, X, y, reg) for f in SIGMOID)
  assert abs(l1 - l2) <= 1e-12 * abs(l1)
  # Entries near zero come from sums that cancel: the summation orders of
  # the two versions differ there by a few ulps of the largest entry.
  np.testing.assert_allclose(g1, g2, rtol=1e-12,
                             atol=1e-12 * np.max(np.abs(g2)))


def numeric_gradient(f, W, h=1e-5):
  grad = np.zeros_like(W)
  for index in np.ndindex(W.shape):
    old = W[index]
    W[index] = old + h
    up = f(W)
    W[index] = old - h
    down = f(W)
    W[index] = old
    grad[index] = (up - down) / (2 * h)
  return grad


@pytest.mark.parametrize("loss_fn", SOFTMAX + SIGMOID,
                         ids=lambda f: f.__name__)
@pytest.mark.parametrize("reg", [0.0, 0.1])
def test_finite_differences_agree(loss_fn, reg):
  if loss_fn in SOFTMAX:
    W, X, y = _softmax_case(30, 8, 5, seed=1)
  else:
    W, X, y = _sigmoid_case(30, 8, seed=1)
  _, analytic = loss_fn(W, X, y, reg)
  numeric = numeric_gradient(lambda w: loss_fn(w, X, y, reg)[0], W.copy())
  error = _rel(analytic, numeric)
  assert error < 1e-7, error


def test_tutorials_worked_example():
  # Probabilities [0.3, 0.3, 0.4] for an example of class 2 (one-hot [0,0,1]).
  p = np.array([0.3, 0.3, 0.4])
  x = np.array([[1.0, 2.0, -0.5]])  # one example, D = 3
  W = np.zeros((3, 3))
  W[0] = np.log(p)  # scores = x W = log p, so softmax(scores) = p
  for f in SOFTMAX:
    loss, dW = f(W, x, [2], 0.0)
    assert loss == pytest.approx(-math.log(0.4), rel=1e-12)
    # Wrong classes: x * p_j; the true class: x * (p_y - 1), column by column.
    for j in range(3):
      expected = x[0] * (p[j] - (j == 2))
      np.testing.assert_allclose(dW[:, j], expected, rtol=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("f", SOFTMAX, ids=lambda f: f.__name__)
def test_softmax_is_stable_for_huge_scores(dtype, f):
  X = np.array([[1.0], [1.0]], dtype)
  W = np.array([[1e4, 0.0, -1e4]], dtype)  # scores 1e4, 0, -1e4
  loss, dW = f(W, X, [0, 1], 0.0)
  assert loss.dtype == dtype and dW.dtype == dtype
  assert np.isfinite(loss) and np.all(np.isfinite(dW))
  # Example 0 is certain and right (loss 0); example 1 pays 1e4.
  assert loss == pytest.approx(1e4 / 2, rel=1e-6)
  np.testing.assert_allclose(dW, [[0.5, -0.5, 0.0]], atol=1e-6)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("f", SIGMOID, ids=lambda f: f.__name__)
def test_sigmoid_is_stable_for_huge_scores(dtype, f):
  X = np.array([[1.0], [-1.0], [1.0]], dtype)
  w = np.array([1e4], dtype)  # z = 1e4, -1e4, 1e4
  loss, dw = f(w, X, [1, 0, 0], 0.0)
  assert loss.dtype == dtype and dw.dtype == dtype
  assert np.isfinite(loss) and np.all(np.isfinite(dw))
  # Two confident right answers cost 0, the confident wrong one 1e4.
  assert loss == pytest.approx(1e4 / 3, rel=1e-6)
  np.testing.assert_allclose(dw, [1 / 3], rtol=1e-6)


@pytest.mark.parametrize("f", SOFTMAX + SIGMOID, ids=lambda f: f.__name__)
def test_returns_the_dtype_it_was_given(f):
  for dtype in (np.float32, np.float64):
    if f in SOFTMAX:
      W, X, y = _softmax_case(6, 4, 3, seed=0, dtype=dtype)
    else:
      W, X, y = _sigmoid_case(6, 4, seed=0, dtype=dtype)
    loss, dW = f(W, X, y, 0.5)
    assert loss.dtype == dtype and dW.dtype == dtype
