"""Decoded splits kept on disk as row-major uint8 files, read by mapping.

Each split of a prepared TFDS dataset is decoded once into its own entry,
a directory `CACHE/<name>-<version>-<key>/<split>/` that holds

    images       the pixels, row after row: [rows, height*width*channels]
    labels       int64 labels, one per row
    split.json   the dataset's description, the rows, the format

The key is the prepared TFDS directory itself (its path and the name, size
and modification time of every file in it): rebuilding or replacing the data
changes the key. An entry is written as TFDS is read, one batch at a time
(`SplitWriter`: memory bounded by a batch, whatever the split's size), into
a temporary directory that is renamed into place when complete
(durable.replacing), so readers never see half an entry. A reader maps the
images (`np.memmap`): the operating system's page cache holds what fits, and
nothing of the split's size is made in the process. An entry that is
damaged, truncated, or from another version of the dataset is ignored with
one warning and written again.
"""

import contextlib
import dataclasses
import errno
import glob
import hashlib
import json
import os
import shutil
from typing import Optional, Sequence, Tuple
import urllib.parse

from absl import logging
import numpy as np

from logreg_tf.data.dataset import Dataset, DatasetInfo
from logreg_tf.errors import DataError, StorageError, reason
from logreg_tf.rundir import durable

ARRAYS = ("train_images", "train_labels", "test_images", "test_labels")
FORMAT = 2  # 1 was one .npz per pair of splits
# DatasetInfo's fields that describe the dataset, not the splits chosen.
_DATASET_FIELDS = ("name", "version", "source", "image_shape", "class_names")


def default_dir() -> str:
  base = os.environ.get("XDG_CACHE_HOME") or os.path.join(
      os.path.expanduser("~"), ".cache")
  return os.path.join(base, "logreg_tf")


def tfds_root(data_dir: Optional[str]) -> str:
  """Where TFDS looks for prepared datasets."""
  return (data_dir or os.environ.get("TFDS_DATA_DIR")
          or os.path.join(os.path.expanduser("~"), "tensorflow_datasets"))


def tfds_version_dir(data_dir: Optional[str], name: str) -> Optional[str]:
  """The newest prepared version of `name` where TFDS would look, if any."""
  found = glob.glob(os.path.join(tfds_root(data_dir), name, "*",
                                 "dataset_info.json"))

  def version(path):
    text = os.path.basename(os.path.dirname(path))
    parts = text.split(".")
    return tuple(int(p) for p in parts) if all(p.isdigit() for p in parts) \
        else ()

  found = [p for p in found if version(p)]
  return os.path.dirname(max(found, key=version)) if found else None


def _key(version_dir: str) -> str:
  h = hashlib.sha256(os.path.abspath(version_dir).encode())
  for entry in sorted(os.scandir(version_dir), key=lambda e: e.name):
    if entry.is_file():
      st = entry.stat()
      h.update(f"{entry.name}:{st.st_size}:{st.st_mtime_ns};".encode())
  return h.hexdigest()[:24]


def split_dir(cache_dir: str, version_dir: str, split: str) -> str:
  """The entry of one split: emnist/balanced/3.0.0, train[:90%] ->
  CACHE/emnist-balanced-3.0.0-KEY/train%5B%3A90%25%5D."""
  root = os.path.dirname(os.path.dirname(os.path.abspath(version_dir)))
  name = os.path.relpath(version_dir, root).replace(os.sep, "-")
  return os.path.join(cache_dir, f"{name}-{_key(version_dir)}",
                      urllib.parse.quote(split, safe=""))


def _describe(info: DatasetInfo, rows: int) -> dict:
  fields = info.to_json()
  return {"format": FORMAT, "rows": rows, "features": info.num_features,
          "info": {k: fields[k] for k in _DATASET_FIELDS}}


def load_split(cache_dir: str, version_dir: str, split: str
               ) -> Optional[Tuple[DatasetInfo, np.ndarray, np.ndarray]]:
  """(description, images mapped read-only, labels) of a split's entry, or
  None when there is none or it cannot be trusted (one warning)."""
  where = split_dir(cache_dir, version_dir, split)
  if not os.path.exists(where):
    return None
  try:
    with open(os.path.join(where, "split.json")) as f:
      meta = json.load(f)
    fields = dict(meta["info"])
    fields["image_shape"] = tuple(fields["image_shape"])
    fields["class_names"] = tuple(fields["class_names"])
    info = DatasetInfo(**fields)
    rows, features = int(meta["rows"]), int(meta["features"])
    problem = _problem(meta, info, version_dir, where, rows, features)
    if problem is None:
      images, labels = _open(where, rows, features)
      if len(labels) and not 0 <= labels.min() <= labels.max() < (
          info.num_classes):
        problem = "a label is not one of its classes"
  except (OSError, ValueError, KeyError, TypeError) as e:
    problem = f"unreadable: {e}"
  if problem:
    logging.warning("ignoring the decoded data in %s (%s); decoding again",
                    where, problem)
    return None
  logging.info("data: decoded %s split from the cache %s", split, where)
  return info, images, labels


def _problem(meta, info, version_dir, where, rows, features):
  """Why an entry cannot be used, or None."""
  if meta.get("format") != FORMAT:
    return f"format {meta.get('format')}, not {FORMAT}"
  if info.version != os.path.basename(os.path.abspath(version_dir)):
    return (f"decoded from version {info.version}, not "
            f"{os.path.basename(version_dir)}")
  if features != info.num_features:
    return f"{features} values per row for images of {info.image_shape}"
  for name, size in (("images", rows * features), ("labels", rows * 8)):
    actual = os.path.getsize(os.path.join(where, name))
    if actual != size:
      return (f"its {name} file has {actual} bytes, not {size}: truncated "
              "or overwritten")
  return None


class SplitWriter:
  """Writes one split's entry batch by batch; complete entries only.

      with SplitWriter(cache_dir, version_dir, split, info, rows) as w:
        for images, labels in batches:
          w.append(images, labels)
      images, labels = w.result

  The entry is made in a temporary directory beside its place, flushed to
  disk, and renamed into place. When another process put a sound entry
  there first (test processes decoding the same split at once), that one is
  kept and this one dropped; a damaged one is replaced. `rows`, when known,
  is checked against the free space first: a disk too small for the entry
  fails before anything is written. Any failure (StorageError: a full disk,
  an I/O error; or the caller's) leaves nothing behind.
  """

  def __init__(self, cache_dir: str, version_dir: str, split: str,
               info: DatasetInfo, rows: Optional[int] = None):
    self.path = split_dir(cache_dir, version_dir, split)
    self._cache_dir, self._version_dir = cache_dir, version_dir
    self._split = split
    self.info, self.expected = info, rows
    self.rows = 0
    self.result = None
    self._tmp = f"{self.path}.{os.getpid()}.tmp"
    self._files = []

  def __enter__(self):
    with self._storage_errors():
      os.makedirs(self._tmp)
      if self.expected is not None:
        need = self.expected * (self.info.num_features + 8)
        free = shutil.disk_usage(self._tmp).free
        if need > free:
          raise StorageError(
              f"no room for the decoded {self.info.name} in "
              f"{os.path.dirname(self.path)}: it needs {_size(need)}, "
              f"{_size(free)} are free; free some space or choose another "
              "--cache_dir")
      self._files = [open(os.path.join(self._tmp, name), "wb")
                     for name in ("images", "labels")]
    return self

  @contextlib.contextmanager
  def _storage_errors(self):
    """OSError as StorageError; on any error the temporary goes."""
    try:
      yield
    except BaseException as e:
      for f in self._files:
        f.close()
      shutil.rmtree(self._tmp, ignore_errors=True)
      if isinstance(e, OSError):
        raise StorageError(f"cannot write the decoded {self.info.name} in "
                           f"{self.path}: {reason(e)}") from e
      raise

  def append(self, images: np.ndarray, labels: np.ndarray) -> None:
    with self._storage_errors():
      images = np.ascontiguousarray(images, np.uint8).reshape(len(images),
                                                              -1)
      if images.shape[1] != self.info.num_features or len(labels) != len(
          images):
        raise DataError(
            f"{self.info.name}: a batch of {images.shape} pixels and "
            f"{len(labels)} labels for images of {self.info.image_shape}")
      self._files[0].write(memoryview(images).cast("B"))
      self._files[1].write(np.ascontiguousarray(labels, np.int64).tobytes())
      self.rows += len(images)

  def __exit__(self, kind, error, trace):
    if kind is not None:
      with contextlib.suppress(BaseException), self._storage_errors():
        raise error
      return False
    with self._storage_errors():
      for f in self._files:
        f.close()
      with open(os.path.join(self._tmp, "split.json"), "w") as f:
        json.dump(_describe(self.info, self.rows), f)
      durable.sync_files(os.path.join(self._tmp, name)
                         for name in ("images", "labels", "split.json"))
      self._place()
    self.result = _open(self.path, self.rows, self.info.num_features)
    return False

  def _place(self) -> None:
    try:
      os.rename(self._tmp, self.path)
    except OSError as e:
      if e.errno not in (errno.EEXIST, errno.ENOTEMPTY):
        raise
      if load_split(self._cache_dir, self._version_dir,
                    self._split) is not None:
        shutil.rmtree(self._tmp)  # another process's, as good as this one
        return
      shutil.rmtree(self.path, ignore_errors=True)
      os.rename(self._tmp, self.path)
    durable.sync_files([os.path.join(self.path, "split.json")])


def _open(where: str, rows: int, features: int):
  images = (np.memmap(os.path.join(where, "images"), np.uint8, "r",
                      shape=(rows, features)) if rows
            else np.zeros((0, features), np.uint8))
  return images, np.fromfile(os.path.join(where, "labels"), np.int64)


def _size(n: int) -> str:
  return f"{n / 1e9:.2f} GB" if n >= 1e8 else f"{n / 1e6:.1f} MB"


def load(cache_dir: str, version_dir: str,
         splits: Sequence[str]) -> Optional[Dataset]:
  """Both splits (train, test) from their entries, or None unless both are
  there and sound."""
  found = [load_split(cache_dir, version_dir, s) for s in splits]
  if any(f is None for f in found):
    return None
  (info, *train), (_, *test) = found
  return Dataset(_with_splits(info, splits), *train, *test)


def store(cache_dir: str, version_dir: str, splits: Sequence[str],
          data: Dataset) -> None:
  """Both splits of `data` into their entries. Best effort: a cache that
  cannot be written only costs time."""
  parts = ((data.train_images, data.train_labels),
           (data.test_images, data.test_labels))
  try:
    for split, (images, labels) in zip(splits, parts):
      with SplitWriter(cache_dir, version_dir, split, data.info,
                       len(labels)) as writer:
        writer.append(images, labels)
  except (StorageError, DataError) as e:
    logging.warning("could not write the data cache (%s)", e)


def _with_splits(info: DatasetInfo, splits: Sequence[str]) -> DatasetInfo:
  return dataclasses.replace(info, train_split=splits[0],
                             test_split=splits[1])
