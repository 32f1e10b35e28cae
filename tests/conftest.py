"""Shared fixtures: small IDX files, mocked TFDS, the offline MNIST."""

import gzip
import os
import pathlib
import struct

import numpy as np
import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


def write_idx(path, array: np.ndarray, compress: bool = False) -> str:
  """Writes an unsigned-byte IDX file (the MNIST format)."""
  header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim)
  header += struct.pack(f">{array.ndim}I", *array.shape)
  payload = header + np.ascontiguousarray(array, np.uint8).tobytes()
  opener = gzip.open if compress else open
  with opener(path, "wb") as f:
    f.write(payload)
  return str(path)


def make_idx_dir(root, n_train=120, n_test=40, compress=True, seed=0):
  """Four IDX files of random MNIST-shaped data; returns (dir, arrays)."""
  rng = np.random.default_rng(seed)
  arrays = {
      "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28)),
      "train-labels-idx1-ubyte": np.arange(n_train) % 10,
      "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28)),
      "t10k-labels-idx1-ubyte": np.arange(n_test) % 10,
  }
  os.makedirs(root, exist_ok=True)
  for name, a in arrays.items():
    write_idx(os.path.join(root, name + (".gz" if compress else "")),
              a.astype(np.uint8), compress)
  return str(root), arrays


@pytest.fixture
def idx_dir(tmp_path):
  return make_idx_dir(tmp_path / "idx")[0]


@pytest.fixture
def mock_tfds():
  import tensorflow_datasets as tfds
  with tfds.testing.mock_data(num_examples=50):
    yield


def _shared_or_skip(sub: str) -> pathlib.Path:
  path = SHARED / sub
  if path.is_dir():
    return path
  reason = f"offline MNIST not found at {path}"
  if os.environ.get("CI") == "true":
    pytest.fail(f"{reason}: CI must provide ../shared")
  pytest.skip(reason)


@pytest.fixture
def shared_tfds_dir() -> str:
  return str(_shared_or_skip("tensorflow_datasets"))


@pytest.fixture
def shared_idx_dir() -> str:
  return str(_shared_or_skip("mnist-idx"))


def mnist_info(**overrides):
  """The description of MNIST, for tests that build a model without data."""
  from logreg_tf.data.dataset import DatasetInfo
  fields = dict(name="mnist", version="3.0.1", source="test",
                image_shape=(28, 28, 1),
                class_names=tuple(str(i) for i in range(10)))
  return DatasetInfo(**{**fields, **overrides})
