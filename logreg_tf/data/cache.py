"""Decoded datasets kept on disk, so that a run does not decode them again.

The key is the prepared TFDS directory itself (its path and the name, size
and modification time of every file in it) and the splits read: rebuilding or
replacing the data changes the key. A cache file holds the arrays and the
dataset's description; one that is damaged, or whose arrays do not fit its
description, is ignored and written again. Files are written atomically
(durable.replacing), so readers never see half a file.
"""

import glob
import hashlib
import json
import os
import zipfile
from typing import Optional, Sequence

from absl import logging
import numpy as np

from logreg_tf.data.dataset import Dataset, DatasetInfo
from logreg_tf.errors import StorageError
from logreg_tf.rundir import durable

ARRAYS = ("train_images", "train_labels", "test_images", "test_labels")


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


def _key(version_dir: str, splits: Sequence[str]) -> str:
  h = hashlib.sha256(os.path.abspath(version_dir).encode())
  h.update(repr(tuple(splits)).encode())
  for entry in sorted(os.scandir(version_dir), key=lambda e: e.name):
    if entry.is_file():
      st = entry.stat()
      h.update(f"{entry.name}:{st.st_size}:{st.st_mtime_ns};".encode())
  return h.hexdigest()[:24]


def _path(cache_dir: str, version_dir: str, splits: Sequence[str]) -> str:
  # emnist/balanced/3.0.0 -> emnist-balanced-3.0.0-KEY.npz
  root = os.path.dirname(os.path.dirname(os.path.abspath(version_dir)))
  name = os.path.relpath(version_dir, root).replace(os.sep, "-")
  return os.path.join(cache_dir, f"{name}-{_key(version_dir, splits)}.npz")


def _fits(info: DatasetInfo, arrays) -> bool:
  """Arrays of the shapes and dtypes that the description promises."""
  for split in ("train", "test"):
    images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
    if (images.dtype != np.uint8 or images.ndim != 2
        or images.shape[1] != info.num_features or labels.dtype != np.int64
        or labels.shape != (len(images),)
        or (len(labels) and not 0 <= labels.min() <= labels.max()
            < info.num_classes)):
      return False
  return True


def load(cache_dir: str, version_dir: str,
         splits: Sequence[str]) -> Optional[Dataset]:
  path = _path(cache_dir, version_dir, splits)
  if not os.path.exists(path):
    return None
  try:
    with np.load(path) as f:
      arrays = {k: f[k] for k in ARRAYS}
      fields = json.loads(str(f["info"]))
    fields["image_shape"] = tuple(fields["image_shape"])
    fields["class_names"] = tuple(fields["class_names"])
    info = DatasetInfo(**fields)
  except (OSError, EOFError, ValueError, KeyError, TypeError,
          zipfile.BadZipFile) as e:
    logging.warning("ignoring the damaged cache file %s (%s)", path, e)
    return None
  if not _fits(info, arrays):
    logging.warning("ignoring the cache file %s: its arrays do not fit the "
                    "dataset's description", path)
    return None
  logging.info("data: decoded arrays from the cache %s", path)
  return Dataset(info, **arrays)


def store(cache_dir: str, version_dir: str, splits: Sequence[str],
          data: Dataset) -> None:
  """Best effort: a cache that cannot be written only costs time."""
  path = _path(cache_dir, version_dir, splits)
  try:
    with durable.replacing(path) as tmp, open(tmp, "wb") as f:
      np.savez(f, info=np.array(json.dumps(data.info.to_json())),
               **{k: getattr(data, k) for k in ARRAYS})
  except StorageError as e:
    logging.warning("could not write the data cache (%s)", e)
