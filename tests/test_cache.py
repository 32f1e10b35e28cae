"""The decoded-data cache: keys, round trips, damage, and a real hit."""

import collections
import errno
import json
import os
import time

import numpy as np
import pytest

from logreg_tf import data

from logreg_tf.data import cache
from logreg_tf.config import DataSpec, Storage
from logreg_tf.data.dataset import Dataset
from logreg_tf.errors import StorageError

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


def _entry(cache_dir, split="train"):
  (dataset_dir,) = cache_dir.iterdir()
  return dataset_dir / split


@pytest.mark.parametrize("damage", ["truncated", "json", "version", "format",
                                    "label"])
def test_damaged_entries_are_ignored_with_one_warning(tmp_path, damage,
                                                      caplog):
  version_dir = str(_prepared(tmp_path / "tfds"))
  cache_dir = tmp_path / "cache"
  cache.store(str(cache_dir), version_dir, SPLITS, _dataset())
  entry = _entry(cache_dir)
  meta = json.loads((entry / "split.json").read_text())
  if damage == "truncated":
    (entry / "images").write_bytes((entry / "images").read_bytes()[:100])
  elif damage == "json":
    (entry / "split.json").write_text("{")
  elif damage == "version":  # decoded from another version of the data
    meta["info"]["version"] = "3.0.0"
  elif damage == "format":
    meta["format"] = 1
  elif damage == "label":
    (entry / "labels").write_bytes(
        np.array([0, 1, 2, 3, 4, 10], np.int64).tobytes())
  if damage in ("version", "format"):
    (entry / "split.json").write_text(json.dumps(meta))
  assert cache.load(str(cache_dir), version_dir, SPLITS) is None
  warnings = [r for r in caplog.records if r.levelname == "WARNING"]
  assert len(warnings) == 1 and str(entry) in warnings[0].getMessage()
  # The test split's entry is untouched and still read.
  assert cache.load_split(str(cache_dir), version_dir, "test") is not None


@pytest.mark.parametrize("field,value", [
    ("train_images", np.zeros((6, 783), np.uint8)),  # not the image size
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


def test_entries_are_mapped_and_written_batch_by_batch(tmp_path):
  version_dir = str(_prepared(tmp_path / "tfds"))
  cache_dir = str(tmp_path / "cache")
  data = _dataset()
  with cache.SplitWriter(cache_dir, version_dir, "train[:6]", data.info,
                         6) as writer:
    for start in range(0, 6, 4):
      writer.append(data.train_images[start:start + 4],
                    data.train_labels[start:start + 4])
  images, labels = writer.result
  assert isinstance(images, np.memmap) and images.mode == "r"
  np.testing.assert_array_equal(images, data.train_images)
  np.testing.assert_array_equal(labels, data.train_labels)
  info, again, _ = cache.load_split(cache_dir, version_dir, "train[:6]")
  assert info.name == "mnist" and isinstance(again, np.memmap)


def test_a_failed_write_leaves_nothing(tmp_path):
  version_dir = str(_prepared(tmp_path / "tfds"))
  cache_dir = tmp_path / "cache"
  data = _dataset()
  with pytest.raises(RuntimeError):
    with cache.SplitWriter(str(cache_dir), version_dir, "train", data.info,
                           6) as writer:
      writer.append(data.train_images[:3], data.train_labels[:3])
      raise RuntimeError("the reader failed half-way")
  assert not any(p.is_file() for p in cache_dir.rglob("*"))
  assert cache.load_split(str(cache_dir), version_dir, "train") is None


def test_a_disk_that_fills_up_while_writing_leaves_nothing(tmp_path):
  version_dir = str(_prepared(tmp_path / "tfds"))
  cache_dir = tmp_path / "cache"
  data = _dataset()
  with pytest.raises(StorageError, match=r"cannot write the decoded mnist "
                     r"in .*: No space left on device"):
    with cache.SplitWriter(str(cache_dir), version_dir, "train", data.info,
                           6) as writer:
      writer.append(data.train_images[:3], data.train_labels[:3])

      class Full:
        def write(self, data):
          raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        def close(self):
          pass
      writer._files[0].close()
      writer._files[0] = Full()
      writer.append(data.train_images[3:], data.train_labels[3:])
  assert not any(p.is_file() for p in cache_dir.rglob("*"))


def test_a_disk_too_small_fails_before_writing(tmp_path, monkeypatch):
  version_dir = str(_prepared(tmp_path / "tfds"))
  cache_dir = tmp_path / "cache"
  data = _dataset()
  free = collections.namedtuple("usage", "total used free")(10**6, 0, 1000)
  monkeypatch.setattr(cache.shutil, "disk_usage", lambda path: free)
  with pytest.raises(StorageError, match=r"no room for the decoded mnist in "
                     r".*it needs .* MB, 0.0 MB are free.*--cache_dir"):
    with cache.SplitWriter(str(cache_dir), version_dir, "train", data.info,
                           10_000) as writer:
      writer.append(data.train_images, data.train_labels)
  assert not any(p.is_file() for p in cache_dir.rglob("*"))


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
  (entry,) = os.listdir(storage.cache_dir)
  assert sorted(os.listdir(os.path.join(storage.cache_dir, entry))) == [
      "test", "train"]
  # The second load must come from the cache, never from TFDS.
  def no_tfds(*args, **kwargs):
    raise AssertionError("TFDS was asked although the cache holds the data")
  from logreg_tf.data import tfds as tfds_reader
  monkeypatch.setattr(tfds_reader, "_batches", no_tfds)
  cached = data.load(DataSpec(), storage)
  assert cached.fingerprint() == decoded.fingerprint()
  assert cached.info == decoded.info
  assert cached.info.version == "3.0.1"


@pytest.mark.real_data
def test_a_cache_that_cannot_be_written_decodes_into_memory(
    shared_tfds_dir, tmp_path, caplog):
  blocker = tmp_path / "file"
  blocker.write_text("not a directory")
  spec = DataSpec(train_split="train[:200]", test_split="test[:100]")
  loaded = data.load(spec, Storage(data_dir=shared_tfds_dir,
                                   cache_dir=str(blocker / "cache")))
  assert loaded.train_images.shape == (200, 784)
  assert not isinstance(loaded.train_images, np.memmap)
  assert "could not write the data cache" in caplog.text
  assert "decoding into memory" in caplog.text
