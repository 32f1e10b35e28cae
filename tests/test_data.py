"""Loading through TFDS (mocked), the fast failure without data, subsets."""

import time

import numpy as np
import pytest

from logreg_tf import data
from logreg_tf.errors import DataError


def test_tfds_route_gives_flat_uint8(mock_tfds):
  mnist = data.load(data_dir="/ignored/by/the/mock")
  assert mnist.train_images.shape == (50, 784)
  assert mnist.test_images.shape == (50, 784)
  assert mnist.train_images.dtype == np.uint8
  assert mnist.train_labels.dtype == np.int64
  assert mnist.version == "3.0.1"
  assert set(np.unique(mnist.train_labels)) <= set(range(10))


def test_features_are_scaled_float32():
  x = data.to_features(np.array([[0, 51, 255]], np.uint8)).numpy()
  assert x.dtype == np.float32
  np.testing.assert_array_equal(x, np.float32([[0.0, 0.2, 1.0]]))


def test_missing_data_fails_fast_and_says_where(tmp_path):
  start = time.monotonic()
  with pytest.raises(DataError) as e:
    data.load(data_dir=str(tmp_path))
  assert time.monotonic() - start < 30
  message = str(e.value)
  assert str(tmp_path) in message
  for way in ("--data_dir", "TFDS_DATA_DIR", "--idx_dir"):
    assert way in message
  assert "\n" not in message


def test_select_classes_relabels_in_given_order():
  images = np.arange(6, dtype=np.uint8)[:, None].repeat(784, 1)
  labels = np.array([3, 8, 1, 8, 3, 5])
  mnist = data.Mnist(images, labels, images[:3], labels[:3], source="test")
  pair = data.select_classes(mnist, (8, 3))
  np.testing.assert_array_equal(pair.train_labels, [1, 0, 0, 1])
  np.testing.assert_array_equal(pair.train_images[:, 0], [0, 1, 3, 4])
  np.testing.assert_array_equal(pair.test_labels, [1, 0])
  assert data.select_classes(mnist, None) is mnist


def test_fingerprint_follows_content():
  rng = np.random.default_rng(0)
  images = rng.integers(0, 256, (4, 784)).astype(np.uint8)
  labels = np.arange(4)
  a = data.Mnist(images, labels, images, labels, source="a")
  b = data.Mnist(images.copy(), labels.copy(), images, labels, source="b")
  images2 = images.copy()
  images2[0, 0] ^= 1
  c = data.Mnist(images2, labels, images, labels, source="c")
  assert a.fingerprint() == b.fingerprint() != c.fingerprint()


def test_a_class_without_examples_is_a_data_error():
  images = np.zeros((4, 784), np.uint8)
  mnist = data.Mnist(images, np.array([3, 8, 3, 8]), images[:2],
                     np.array([3, 3]), source="test")
  with pytest.raises(DataError, match="test split of test has no examples "
                     "of digit\\(s\\) 8"):
    data.select_classes(mnist, (3, 8))
