"""The decoded-data cache: keys, round trips, damage, and a real hit."""

import os
import time

import numpy as np
import pytest

from logreg_tf import data

from logreg_tf.data import cache
from logreg_tf.config import DataSpec, Storage
from logreg_tf.data.dataset import Dataset

from conftest import mnist_info

SPLITS = ("train", "test")


def _dataset(seed=0, **info):
  rng = np.random.default_rng(seed)
  return Dataset(mnist_info(**info),
                 rng.integers(0, 256, (6, 784)).astype(np.uint8),
                 np.arange(6, dtype=np.int64),
                 rng.integers(0, 256, (3, 784)).astype(np.uint8),
                 np.arange(3, dtype=np.int64))


def _prepared(root, version="3.0.1", name="mnist"):
  version_dir = root / name / version
  version_dir.mkdir(parents=True)
  (version_dir / "dataset_info.json").write_text("{}")
  (version_dir / "x-train.tfrecord-00000-of-00001").write_bytes(b"x" * 10)
  return version_dir


def test_finds_the_newest_prepared_version(tmp_path, monkeypatch):
  _prepared(tmp_path, "3.0.1")
  newest = _prepared(tmp_path, "3.10.0")
  (tmp_path / "mnist" / "incomplete").mkdir()
  assert cache.tfds_version_dir(str(tmp_path), "mnist") == str(newest)
  monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path))
  assert cache.tfds_version_dir(None, "mnist") == str(newest)
  assert cache.tfds_version_dir(str(tmp_path / "empty"), "mnist") is None
  config = _prepared(tmp_path, "3.0.0", name="emnist/balanced")
  assert cache.tfds_version_dir(str(tmp_path), "emnist/balanced") == str(
      config)


def test_round_trip_and_invalidation(tmp_path):
  version_dir = str(_prepared(tmp_path / "tfds"))
  cache_dir = str(tmp_path / "cache")
  assert cache.load(cache_dir, version_dir, SPLITS) is None
  cache.store(cache_dir, version_dir, SPLITS, _dataset())
  hit = cache.load(cache_dir, version_dir, SPLITS)
  assert hit.info == _dataset().info
  for k in cache.ARRAYS:
    np.testing.assert_array_equal(getattr(hit, k), getattr(_dataset(), k))
    assert getattr(hit, k).dtype == getattr(_dataset(), k).dtype
  # Other splits are another entry.
  assert cache.load(cache_dir, version_dir, ("train[:50%]", "test")) is None
  # Rewriting a data file (new size and time) changes the key: a miss.
  time.sleep(0.01)
  (tmp_path / "tfds" / "mnist" / "3.0.1" /
   "x-train.tfrecord-00000-of-00001").write_bytes(b"y" * 11)
  assert cache.load(cache_dir, version_dir, SPLITS) is None


def test_each_dataset_has_its_own_entry(tmp_path):
  cache_dir = str(tmp_path / "cache")
  mnist = str(_prepared(tmp_path / "tfds"))
  fashion = str(_prepared(tmp_path / "tfds", name="fashion_mnist"))
  cache.store(cache_dir, mnist, SPLITS, _dataset(0))
  cache.store(cache_dir, fashion, SPLITS,
              _dataset(1, name="fashion_mnist"))
  assert sorted(n.split("-")[0] for n in os.listdir(cache_dir)) == [
      "fashion_mnist", "mnist"]
  assert cache.load(cache_dir, fashion, SPLITS).info.name == "fashion_mnist"
  assert cache.load(cache_dir, mnist, SPLITS).info.name == "mnist"


def test_damaged_cache_file_is_ignored(tmp_path):
  version_dir = str(_prepared(tmp_path / "tfds"))
  cache_dir = tmp_path / "cache"
  cache.store(str(cache_dir), version_dir, SPLITS, _dataset())
  (path,) = cache_dir.iterdir()
  path.write_bytes(path.read_bytes()[:100])
  assert cache.load(str(cache_dir), version_dir, SPLITS) is None


@pytest.mark.parametrize("field,value", [
    ("train_images", np.zeros((6, 783), np.uint8)),  # not the image size
    ("test_images", np.zeros((3, 784), np.float32)),  # not uint8
    ("train_labels", np.arange(5, dtype=np.int64)),  # not one per image
    ("test_labels", np.array([0, 1, 10], np.int64)),  # not a class
])
def test_arrays_that_do_not_fit_the_description_are_ignored(tmp_path, field,
                                                            value):
  version_dir = str(_prepared(tmp_path / "tfds"))
  cache_dir = str(tmp_path / "cache")
  good = _dataset()
  arrays = {k: getattr(good, k) for k in cache.ARRAYS}
  arrays[field] = value
  # Written as a cache file would be, but with one array wrong.
  bad = Dataset.__new__(Dataset)
  object.__setattr__(bad, "info", good.info)
  for k, v in arrays.items():
    object.__setattr__(bad, k, v)
  cache.store(cache_dir, version_dir, SPLITS, bad)
  assert cache.load(cache_dir, version_dir, SPLITS) is None


def test_unwritable_cache_costs_only_time(tmp_path):
  version_dir = str(_prepared(tmp_path / "tfds"))
  blocker = tmp_path / "file"
  blocker.write_text("not a directory")
  cache.store(str(blocker / "cache"), version_dir, SPLITS, _dataset())
  assert not os.path.exists(blocker / "cache")


@pytest.mark.real_data
def test_cache_hit_equals_decoding(shared_tfds_dir, tmp_path, monkeypatch):
  storage = Storage(data_dir=shared_tfds_dir, cache_dir=str(tmp_path / "c"))
  decoded = data.load(DataSpec(), storage)
  assert len(os.listdir(storage.cache_dir)) == 1
  # The second load must come from the cache, never from TFDS.
  def no_tfds(*args, **kwargs):
    raise AssertionError("TFDS was asked although the cache holds the data")
  from logreg_tf.data import tfds as tfds_reader
  monkeypatch.setattr(tfds_reader, "_read_split", no_tfds)
  cached = data.load(DataSpec(), storage)
  assert cached.fingerprint() == decoded.fingerprint()
  assert cached.info == decoded.info
  assert cached.info.version == "3.0.1"
