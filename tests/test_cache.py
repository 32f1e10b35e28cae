"""The decoded-MNIST cache: keys, round trips, damage, and a real hit."""

import os
import time

import numpy as np
import pytest

from logreg_tf import cache, data


def _arrays(seed=0):
  rng = np.random.default_rng(seed)
  return {"train_images": rng.integers(0, 256, (6, 784)).astype(np.uint8),
          "train_labels": np.arange(6, dtype=np.int64),
          "test_images": rng.integers(0, 256, (3, 784)).astype(np.uint8),
          "test_labels": np.arange(3, dtype=np.int64)}


def _prepared(root, version="3.0.1"):
  version_dir = root / "mnist" / version
  version_dir.mkdir(parents=True)
  (version_dir / "dataset_info.json").write_text("{}")
  (version_dir / "mnist-train.tfrecord-00000-of-00001").write_bytes(b"x" * 10)
  return version_dir


def test_finds_the_newest_prepared_version(tmp_path, monkeypatch):
  _prepared(tmp_path, "3.0.1")
  newest = _prepared(tmp_path, "3.10.0")
  (tmp_path / "mnist" / "incomplete").mkdir()
  assert cache.tfds_version_dir(str(tmp_path), "mnist") == str(newest)
  monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path))
  assert cache.tfds_version_dir(None, "mnist") == str(newest)
  assert cache.tfds_version_dir(str(tmp_path / "empty"), "mnist") is None


def test_round_trip_and_invalidation(tmp_path):
  version_dir = _prepared(tmp_path / "tfds")
  cache_dir = str(tmp_path / "cache")
  assert cache.load(cache_dir, str(version_dir)) is None
  cache.store(cache_dir, str(version_dir), _arrays())
  hit = cache.load(cache_dir, str(version_dir))
  for k, v in _arrays().items():
    np.testing.assert_array_equal(hit[k], v)
    assert hit[k].dtype == v.dtype
  # Rewriting a data file (new size and time) changes the key: a miss.
  time.sleep(0.01)
  (version_dir / "mnist-train.tfrecord-00000-of-00001").write_bytes(b"y" * 11)
  assert cache.load(cache_dir, str(version_dir)) is None


def test_damaged_cache_file_is_ignored(tmp_path):
  version_dir = _prepared(tmp_path / "tfds")
  cache_dir = tmp_path / "cache"
  cache.store(str(cache_dir), str(version_dir), _arrays())
  (path,) = cache_dir.iterdir()
  path.write_bytes(path.read_bytes()[:100])
  assert cache.load(str(cache_dir), str(version_dir)) is None


def test_unwritable_cache_costs_only_time(tmp_path):
  version_dir = _prepared(tmp_path / "tfds")
  blocker = tmp_path / "file"
  blocker.write_text("not a directory")
  cache.store(str(blocker / "cache"), str(version_dir), _arrays())  # no raise
  assert not os.path.exists(blocker / "cache")


@pytest.mark.real_data
def test_cache_hit_equals_decoding(shared_tfds_dir, tmp_path, monkeypatch):
  cache_dir = str(tmp_path / "cache")
  decoded = data.load(data_dir=shared_tfds_dir, cache_dir=cache_dir)
  assert len(os.listdir(cache_dir)) == 1
  # The second load must come from the cache, never from TFDS.
  def no_tfds(*args, **kwargs):
    raise AssertionError("TFDS was asked although the cache holds the data")
  monkeypatch.setattr(data, "_to_arrays", no_tfds)
  cached = data.load(data_dir=shared_tfds_dir, cache_dir=cache_dir)
  assert cached.fingerprint() == decoded.fingerprint()
  assert cached.version == decoded.version == "3.0.1"
  assert cached.source == decoded.source
