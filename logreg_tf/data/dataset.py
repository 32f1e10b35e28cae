"""One description of the data (`DatasetInfo`) and the data (`Dataset`).

`DatasetInfo` says what was read: name, version, source, image shape, class
names, splits. `Dataset` holds both splits as flat uint8 pixels and int64
labels, decoded once: arrays in memory, or the cache's row files mapped
(`Rows`: a class selection of one, by position).
"""

import dataclasses
import hashlib
from typing import Optional, Tuple

import numpy as np

from logreg_tf.errors import DataError


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
  """What the data is; `class_names` are those trained, in label order."""

  name: str
  version: Optional[str]
  source: str  # where it came from: "tfds:DIR" or "idx:DIR"
  image_shape: Tuple[int, int, int]  # height, width, channels
  class_names: Tuple[str, ...]
  train_split: str = "train"
  test_split: str = "test"
  # Indices of the trained classes among the dataset's; None: all of them.
  class_indices: Optional[Tuple[int, ...]] = None

  @property
  def num_features(self) -> int:
    return int(np.prod(self.image_shape))

  @property
  def num_classes(self) -> int:
    return len(self.class_names)

  def check_labels(self, labels: np.ndarray, where: str) -> None:
    """Raises DataError when a label is not one of the classes."""
    if len(labels) and (labels.min() < 0 or labels.max() >= self.num_classes):
      bad = labels.max() if labels.max() >= self.num_classes else labels.min()
      raise DataError(f"{where}: label {int(bad)} is not a class of "
                      f"{self.name} (0 to {self.num_classes - 1})")

  def to_json(self) -> dict:
    out = dataclasses.asdict(self)
    out["image_shape"] = list(self.image_shape)
    out["class_names"] = list(self.class_names)
    if self.class_indices is not None:
      out["class_indices"] = list(self.class_indices)
    return out


class Rows:
  """Some rows of a uint8 matrix by position, not copied: a class selection
  of a mapped row file (cache.py), read only where it is used. NumPy sees
  the selected rows (`np.asarray` copies them)."""

  def __init__(self, images, index: np.ndarray):
    self.images, self.index = images, index
    self.dtype = images.dtype
    self.shape = (len(index),) + tuple(images.shape[1:])

  def __len__(self) -> int:
    return len(self.index)

  def __getitem__(self, rows) -> np.ndarray:
    """The selected rows at `rows` (a slice or positions), as an array."""
    return self.images[self.index[rows]]

  def __array__(self, dtype=None, copy=None):
    del copy  # always a copy
    rows = self.images[self.index]
    return rows if dtype is None else rows.astype(dtype)


@dataclasses.dataclass(frozen=True)
class Dataset:
  """Both splits as flat uint8 pixels [N, H*W*C] and int64 labels [N]."""

  info: DatasetInfo
  train_images: np.ndarray
  train_labels: np.ndarray
  test_images: np.ndarray
  test_labels: np.ndarray

  def fingerprint(self) -> str:
    """sha256 over the examples in order; equal data gives equal prints."""
    h = hashlib.sha256()
    for a in (self.train_images, self.train_labels, self.test_images,
              self.test_labels):
      h.update(str(a.shape).encode())
      h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()
