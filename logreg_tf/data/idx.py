"""Reads a dataset's four IDX files (MNIST's format and file names), plain or
gzip-compressed, checking content.

MNIST, Fashion-MNIST and KMNIST ship in this format. A recompressed copy has
another gzip checksum than the one TFDS registers, so instead of checksums we
check what matters: magic numbers, dimensions, that the payload has exactly
the announced size, and that images and labels agree.
"""

import gzip
import os
import zlib

import numpy as np

from logreg_tf.data import splits
from logreg_tf.data import tfds as tfds_source
from logreg_tf.data.dataset import Dataset, DatasetInfo
from logreg_tf.errors import DataError

FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
_UBYTE = 0x08


def find_file(idx_dir: str, name: str) -> str:
  """Returns the path of `name` or `name.gz` in idx_dir."""
  for candidate in (name, name + ".gz"):
    path = os.path.join(idx_dir, candidate)
    if os.path.isfile(path):
      return path
  raise DataError(
      f"IDX file {name}[.gz] not found in --idx_dir={idx_dir!r}; it needs "
      f"{', '.join(n for pair in FILES.values() for n in pair)} (plain or .gz)")


def _read_bytes(path: str) -> bytes:
  try:
    if path.endswith(".gz"):
      with gzip.open(path, "rb") as f:
        return f.read()
    with open(path, "rb") as f:
      return f.read()
  except (OSError, EOFError, zlib.error) as e:
    raise DataError(f"IDX file {path}: cannot be read ({e})") from e


def read_idx(path: str, ndim: int) -> np.ndarray:
  """Parses one IDX file of unsigned bytes with `ndim` dimensions."""
  raw = _read_bytes(path)
  header = 4 + 4 * ndim
  if len(raw) < header:
    raise DataError(
        f"IDX file {path}: {len(raw)} bytes is shorter than its "
        f"{header}-byte header")
  if raw[0] != 0 or raw[1] != 0 or raw[2] != _UBYTE or raw[3] != ndim:
    raise DataError(
        f"IDX file {path}: magic number {raw[:4].hex()} is not "
        f"0000{_UBYTE:02x}{ndim:02x} (unsigned bytes, {ndim} dimensions)")
  dims = tuple(int(d) for d in np.frombuffer(raw, ">u4", ndim, offset=4))
  expected = int(np.prod(dims, dtype=np.int64))
  actual = len(raw) - header
  if actual != expected:
    kind = "truncated" if actual < expected else "has trailing bytes"
    raise DataError(
        f"IDX file {path}: {kind}: header dims {dims} need {expected} bytes "
        f"of data, found {actual}")
  return np.frombuffer(raw, np.uint8, offset=header).reshape(dims)


def load_split(idx_dir: str, split: str):
  """Returns (images uint8 [N, H, W], labels int64 [N], labels' path)."""
  images_name, labels_name = FILES[split]
  images_path = find_file(idx_dir, images_name)
  labels_path = find_file(idx_dir, labels_name)
  images = read_idx(images_path, 3)
  labels = read_idx(labels_path, 1).astype(np.int64)
  if len(images) != len(labels):
    raise DataError(
        f"IDX files disagree: {images_path} holds {len(images)} images but "
        f"{labels_path} holds {len(labels)} labels")
  return images, labels, labels_path


def split_sizes(idx_dir: str):
  """Examples per file split (train, test), from the label files alone."""
  return {split: len(read_idx(find_file(idx_dir, labels), 1))
          for split, (_, labels) in FILES.items()}


def _select(files, split: str, flag: str):
  """The rows of `split` (TFDS split syntax over the files' splits train and
  test, e.g. train[:50000]) as (images, labels, labels' path)."""
  ranges = splits.rows(split, {k: len(v[1]) for k, v in files.items()}, flag)
  if split in files and ranges == [(split, 0, len(files[split][1]))]:
    return files[split]  # a whole file: no copy
  parts = [(files[name][0][start:stop], files[name][1][start:stop])
           for name, start, stop in ranges]
  images = np.concatenate([p[0] for p in parts])
  labels = np.concatenate([p[1] for p in parts])
  if not len(labels):
    raise DataError(f"--{flag}={split!r} of the IDX files holds no examples")
  return images, labels, files[ranges[0][0]][2]


def load_dataset(idx_dir: str, name: str, train_split: str = "train",
                 test_split: str = "test") -> Dataset:
  """The two splits of dataset `name` from its IDX files, by TFDS's split
  syntax over the files' own splits (train, test).

  Class names come from TFDS's description of `name` when TFDS knows it;
  otherwise the classes are named by their index, as many as the labels use.
  """
  if not os.path.isdir(idx_dir):
    raise DataError(f"--idx_dir={idx_dir!r} is not a directory")
  files = {split: load_split(idx_dir, split) for split in FILES}
  train = _select(files, train_split, "train_split")
  test = _select(files, test_split, "test_split")
  if train[0].shape[1:] != test[0].shape[1:]:
    raise DataError(
        f"IDX files disagree: train images are {train[0].shape[1]}x"
        f"{train[0].shape[2]} but test images {test[0].shape[1]}x"
        f"{test[0].shape[2]} in {idx_dir}")
  names = tfds_source.known_class_names(name)
  if names is None:
    top = max([int(l.max()) for l, in ((train[1],), (test[1],)) if len(l)],
              default=0)
    names = tuple(str(i) for i in range(top + 1))
  info = DatasetInfo(name=name, version=None,
                     source=f"idx:{os.path.abspath(idx_dir)}",
                     image_shape=(*train[0].shape[1:], 1), class_names=names,
                     train_split=train_split, test_split=test_split)
  for images, labels, path in (train, test):
    info.check_labels(labels, f"IDX file {path}")
  return Dataset(info, train[0].reshape(len(train[0]), -1), train[1],
                 test[0].reshape(len(test[0]), -1), test[1])
