"""Loading through TFDS (mocked), the fast failure without data, subsets."""

import time

import numpy as np
import pytest

from logreg_tf import data
from logreg_tf.config import DataSpec, Storage
from logreg_tf.data.dataset import Dataset
from logreg_tf.errors import DataError, UserError

from conftest import mnist_info


def test_tfds_route_gives_flat_uint8(mock_tfds):
  mnist = data.load(DataSpec(), Storage(data_dir="/ignored/by/the/mock"))
  assert mnist.info.name == "mnist" and mnist.info.image_shape == (28, 28, 1)
  assert mnist.info.class_names == tuple("0123456789")
  assert mnist.train_images.shape == (50, 784)
  assert mnist.test_images.shape == (50, 784)
  assert mnist.train_images.dtype == np.uint8
  assert mnist.train_labels.dtype == np.int64
  assert mnist.info.version == "3.0.1"
  assert set(np.unique(mnist.train_labels)) <= set(range(10))


def test_features_are_scaled_float32():
  x = data.to_features(np.array([[0, 51, 255]], np.uint8)).numpy()
  assert x.dtype == np.float32
  np.testing.assert_array_equal(x, np.float32([[0.0, 0.2, 1.0]]))


def test_missing_data_fails_fast_and_says_where(tmp_path):
  start = time.monotonic()
  with pytest.raises(DataError) as e:
    data.load(DataSpec(), Storage(data_dir=str(tmp_path)))
  assert time.monotonic() - start < 30
  message = str(e.value)
  assert str(tmp_path) in message
  for way in ("--data_dir", "TFDS_DATA_DIR", "--idx_dir"):
    assert way in message
  assert "\n" not in message


def test_select_classes_relabels_in_given_order():
  images = np.arange(6, dtype=np.uint8)[:, None].repeat(784, 1)
  labels = np.array([3, 8, 1, 8, 3, 5])
  mnist = Dataset(mnist_info(), images, labels, images[:3], labels[:3])
  pair = data.select_classes(mnist, (8, 3))
  assert pair.info.class_names == ("8", "3")
  assert pair.info.class_indices == (8, 3)
  np.testing.assert_array_equal(pair.train_labels, [1, 0, 0, 1])
  np.testing.assert_array_equal(pair.train_images[:, 0], [0, 1, 3, 4])
  np.testing.assert_array_equal(pair.test_labels, [1, 0])
  assert data.select_classes(mnist, None) is mnist


def test_fingerprint_follows_content():
  rng = np.random.default_rng(0)
  images = rng.integers(0, 256, (4, 784)).astype(np.uint8)
  labels = np.arange(4)
  a = Dataset(mnist_info(source="a"), images, labels, images, labels)
  b = Dataset(mnist_info(source="b"), images.copy(), labels.copy(), images,
              labels)
  images2 = images.copy()
  images2[0, 0] ^= 1
  c = Dataset(mnist_info(source="c"), images2, labels, images, labels)
  assert a.fingerprint() == b.fingerprint() != c.fingerprint()


def test_a_class_without_examples_is_a_data_error():
  images = np.zeros((4, 784), np.uint8)
  mnist = Dataset(mnist_info(), images, np.array([3, 8, 3, 8]), images[:2],
                  np.array([3, 3]))
  with pytest.raises(DataError, match="test split of test has no examples "
                     "of class\\(es\\) 8"):
    data.select_classes(mnist, (3, 8))


FASHION = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal",
           "Shirt", "Sneaker", "Bag", "Ankle boot")


@pytest.mark.parametrize("given,expected", [
    (("Sandal", "Sneaker"), (5, 7)),
    (("sandal", "ANKLE BOOT"), (5, 9)),
    (("7", "Bag", "0"), (7, 8, 0)),
])
def test_classes_by_name_or_index(given, expected):
  info = mnist_info(name="fashion_mnist", class_names=FASHION)
  assert data.resolve_classes(info, given) == expected
  assert data.resolve_classes(info, None) is None


@pytest.mark.parametrize("given,message", [
    (("Sandal", "Boot"), "'Boot' is not a class of fashion_mnist; its "
     "classes are 0 'T-shirt/top', 1 'Trouser'"),
    (("1", "10"), "'10' is not a class"),
    (("Sneaker", "7"), "a class is named twice"),
])
def test_a_class_the_dataset_lacks_is_refused(given, message):
  info = mnist_info(name="fashion_mnist", class_names=FASHION)
  with pytest.raises(UserError) as e:
    data.resolve_classes(info, given)
  assert message in str(e.value)
  assert "9 'Ankle boot'" in str(e.value) or "twice" in message
