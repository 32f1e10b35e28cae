"""Logistic regression on MNIST with TensorFlow: a reference baseline."""

__version__ = "0.1.0"
