"""The tutorial's NumPy math: the oracle the TensorFlow code is tested against.

Softmax (multinomial) and sigmoid (binomial) logistic regression, each as a
naive version with explicit loops and a vectorized one. All four take
`(W, X, y, reg)` and return `(loss, dW)` in the dtype of W, where

  loss = mean cross-entropy + 0.5 * reg * sum(W * W)
  dW   = X^T (P - Y) / N + reg * W

with P the predicted probabilities and Y the one-hot labels (for the sigmoid,
p and y are vectors and W is a vector w of length D). Unlike the tutorial's
code, none of them exponentiates a raw score: the softmax subtracts each row's
maximum (log-sum-exp) and the sigmoid uses the softplus form, so scores of
1e4 give finite, correct values in float32 as in float64.
"""

import numpy as np


def _inputs(W, X, y):
  W = np.asarray(W)
  return W, np.asarray(X, dtype=W.dtype), np.asarray(y, dtype=np.int64)


def _penalty(W, reg):
  return 0.5 * reg * np.sum(W * W)


def _mean_plus_penalty(loss_sum, grad_sum, n, W, reg):
  """The naive versions' last step: per-example sums to the objective."""
  loss = loss_sum / n + _penalty(W, reg)
  grad = grad_sum / n + reg * W
  return W.dtype.type(loss), grad.astype(W.dtype)


def softmax_loss_naive(W, X, y, reg):
  """Loops over examples and classes. W [D, C], X [N, D], y [N] in 0..C-1."""
  W, X, y = _inputs(W, X, y)
  n, classes = X.shape[0], W.shape[1]
  loss = W.dtype.type(0)
  dW = np.zeros_like(W)
  for i in range(n):
    scores = np.zeros(classes, W.dtype)
    for j in range(classes):
      scores[j] = X[i].dot(W[:, j])
    top = scores.max()
    log_norm = top + np.log(np.sum(np.exp(scores - top)))
    loss += log_norm - scores[y[i]]
    for j in range(classes):
      p = np.exp(scores[j] - log_norm)
      dW[:, j] += (p - (j == y[i])) * X[i]
  return _mean_plus_penalty(loss, dW, n, W, reg)


def softmax_loss_vectorized(W, X, y, reg):
  """The same without Python loops."""
  W, X, y = _inputs(W, X, y)
  n = X.shape[0]
  scores = X @ W
  scores -= scores.max(axis=1, keepdims=True)
  log_p = scores - np.log(np.sum(np.exp(scores), axis=1, keepdims=True))
  rows = np.arange(n)
  loss = -np.mean(log_p[rows, y]) + _penalty(W, reg)
  delta = np.exp(log_p)
  delta[rows, y] -= 1
  dW = X.T @ delta / n + reg * W
  return W.dtype.type(loss), dW.astype(W.dtype)


def _softplus(z):
  """log(1 + exp(z)) without overflow."""
  return np.maximum(z, 0) + np.log1p(np.exp(-np.abs(z)))


def _sigmoid(z):
  """1 / (1 + exp(-z)) without overflow: exp only of non-positive numbers."""
  e = np.exp(-np.abs(z))
  return np.where(z >= 0, 1 / (1 + e), e / (1 + e))


def sigmoid_loss_naive(w, X, y, reg):
  """Loops over examples. w [D], X [N, D], y [N] in {0, 1}."""
  w, X, y = _inputs(w, X, y)
  n = X.shape[0]
  loss = w.dtype.type(0)
  dw = np.zeros_like(w)
  for i in range(n):
    z = X[i].dot(w)
    # -(y log p + (1 - y) log(1 - p)) = softplus(z) - y z
    loss += _softplus(z) - y[i] * z
    dw += (_sigmoid(z) - y[i]) * X[i]
  return _mean_plus_penalty(loss, dw, n, w, reg)


def sigmoid_loss_vectorized(w, X, y, reg):
  """The same without Python loops."""
  w, X, y = _inputs(w, X, y)
  n = X.shape[0]
  z = X @ w
  yf = y.astype(w.dtype)
  loss = np.mean(_softplus(z) - yf * z) + _penalty(w, reg)
  dw = X.T @ (_sigmoid(z) - yf) / n + reg * w
  return w.dtype.type(loss), dw.astype(w.dtype)


def softmax_hessian_vector(W, X, reg, V):
  """The Hessian of softmax_loss at W times V [D, C], vectorized:
  X^T (P * (X V) - P * rowsum(P * (X V))) / N + reg * V. The Hessian of
  each example's loss by its scores s is diag(p) - p p^T."""
  W = np.asarray(W)
  X = np.asarray(X, dtype=W.dtype)
  scores = X @ W
  scores -= scores.max(axis=1, keepdims=True)
  P = np.exp(scores)
  P /= P.sum(axis=1, keepdims=True)
  PU = P * (X @ V)
  return X.T @ (PU - P * PU.sum(axis=1, keepdims=True)) / len(X) + reg * V


def sigmoid_hessian_vector(w, X, reg, v):
  """The Hessian of sigmoid_loss at w times v [D]: X^T (p (1 - p) X v) / N
  + reg * v."""
  w = np.asarray(w)
  X = np.asarray(X, dtype=w.dtype)
  p = _sigmoid(X @ w)
  return X.T @ (p * (1 - p) * (X @ v)) / len(X) + reg * v
