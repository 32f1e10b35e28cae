"""The IDX reader on good files and on each way a file can be broken."""

import gzip
import os

import numpy as np
import pytest

from logreg_tf.data import idx
from logreg_tf.errors import DataError

from conftest import make_idx_dir, write_idx


@pytest.mark.parametrize("compress", [True, False])
def test_reads_what_was_written(tmp_path, compress):
  root, arrays = make_idx_dir(tmp_path, compress=compress)
  images, labels, _ = idx.load_split(root, "train")
  np.testing.assert_array_equal(images, arrays["train-images-idx3-ubyte"])
  np.testing.assert_array_equal(labels, arrays["train-labels-idx1-ubyte"])
  mnist = idx.load_dataset(root, "mnist")
  assert mnist.info.image_shape == (28, 28, 1)
  assert mnist.info.class_names == tuple("0123456789")
  assert mnist.train_images.shape == (120, 784)
  assert mnist.test_images.shape == (40, 784)
  assert mnist.train_images.dtype == np.uint8
  assert mnist.test_labels.dtype == np.int64


def _break(root, name, mutate):
  """Rewrites one gz file of root with mutate(raw bytes)."""
  path = os.path.join(root, name + ".gz")
  with gzip.open(path, "rb") as f:
    raw = f.read()
  with gzip.open(path, "wb") as f:
    f.write(mutate(raw))
  return path


@pytest.mark.parametrize("name,mutate,expected", [
    ("train-images-idx3-ubyte", lambda r: r[:-100], "truncated"),
    ("train-images-idx3-ubyte", lambda r: r + b"xx", "trailing bytes"),
    ("train-labels-idx1-ubyte", lambda r: b"\x00\x00\x08\x03" + r[4:],
     "magic number 00000803"),
    ("t10k-labels-idx1-ubyte", lambda r: r[:6], "shorter than its 8-byte"),
])
def test_broken_file_is_named(tmp_path, name, mutate, expected):
  root, _ = make_idx_dir(tmp_path)
  path = _break(root, name, mutate)
  with pytest.raises(DataError) as e:
    idx.load_dataset(root, "mnist")
  assert path in str(e.value) and expected in str(e.value)
  assert "\n" not in str(e.value)


def test_images_and_labels_must_agree(tmp_path):
  root, _ = make_idx_dir(tmp_path)
  write_idx(os.path.join(root, "t10k-labels-idx1-ubyte.gz"),
            np.zeros(39, np.uint8), compress=True)
  with pytest.raises(DataError, match="40 images but .* 39 labels"):
    idx.load_dataset(root, "mnist")


def test_label_out_of_range(tmp_path):
  root, _ = make_idx_dir(tmp_path)
  write_idx(os.path.join(root, "t10k-labels-idx1-ubyte.gz"),
            np.full(40, 12, np.uint8), compress=True)
  with pytest.raises(DataError, match="label 12 is not a class of mnist "
                     "\\(0 to 9\\)"):
    idx.load_dataset(root, "mnist")


def test_splits_of_other_image_sizes_disagree(tmp_path):
  root, _ = make_idx_dir(tmp_path)
  write_idx(os.path.join(root, "train-images-idx3-ubyte.gz"),
            np.zeros((120, 27, 28), np.uint8), compress=True)
  with pytest.raises(DataError, match="train images are 27x28 but test "
                     "images 28x28"):
    idx.load_dataset(root, "mnist")


def test_any_image_size_and_an_unknown_dataset(tmp_path):
  # A dataset TFDS does not know: its classes are named by index, as many as
  # the labels use, and the image shape comes from the files.
  root = str(tmp_path)
  rng = np.random.default_rng(0)
  for images, labels, n in (("train-images-idx3-ubyte",
                             "train-labels-idx1-ubyte", 30),
                            ("t10k-images-idx3-ubyte",
                             "t10k-labels-idx1-ubyte", 12)):
    write_idx(os.path.join(root, images), rng.integers(0, 256, (n, 16, 12)))
    write_idx(os.path.join(root, labels), np.arange(n) % 13)
  data = idx.load_dataset(root, "my_glyphs")
  assert data.info.name == "my_glyphs" and data.info.version is None
  assert data.info.image_shape == (16, 12, 1)
  assert data.info.class_names == tuple(str(i) for i in range(13))
  assert data.train_images.shape == (30, 192)


def test_corrupt_gzip(tmp_path):
  root, _ = make_idx_dir(tmp_path)
  path = os.path.join(root, "train-labels-idx1-ubyte.gz")
  with open(path, "r+b") as f:
    f.truncate(30)
  with pytest.raises(DataError, match="cannot be read"):
    idx.load_dataset(root, "mnist")


def test_missing_file_lists_what_is_needed(tmp_path):
  root, _ = make_idx_dir(tmp_path)
  os.remove(os.path.join(root, "t10k-images-idx3-ubyte.gz"))
  with pytest.raises(DataError, match=r"t10k-images-idx3-ubyte\[.gz\] not found"):
    idx.load_dataset(root, "mnist")


def test_missing_dir(tmp_path):
  with pytest.raises(DataError, match="is not a directory"):
    idx.load_dataset(str(tmp_path / "nope"), "mnist")
