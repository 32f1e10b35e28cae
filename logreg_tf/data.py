"""MNIST in, tensors out: TFDS or IDX files, decoded once, kept in memory."""

import concurrent.futures
import dataclasses
import hashlib
import os
from typing import Optional, Sequence

import numpy as np
import tensorflow as tf

from logreg_tf import cache, idx
from logreg_tf.errors import DataError

NUM_FEATURES = 28 * 28
DATASET = "mnist"


@dataclasses.dataclass(frozen=True)
class Mnist:
  """Both splits as flat uint8 pixels [N, 784] and int64 labels [N]."""

  train_images: np.ndarray
  train_labels: np.ndarray
  test_images: np.ndarray
  test_labels: np.ndarray
  source: str  # where it came from, for logs and run.json
  version: str = ""

  def fingerprint(self) -> str:
    """sha256 over the examples in order; equal data gives equal prints."""
    h = hashlib.sha256()
    for a in (self.train_images, self.train_labels, self.test_images,
              self.test_labels):
      h.update(str(a.shape).encode())
      h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


def _flat(images: np.ndarray, labels: np.ndarray):
  return (images.reshape(len(images), NUM_FEATURES).astype(np.uint8,
                                                          copy=False),
          labels.reshape(-1).astype(np.int64, copy=False))


def load_idx(idx_dir: str) -> Mnist:
  if not os.path.isdir(idx_dir):
    raise DataError(f"--idx_dir={idx_dir!r} is not a directory")
  train = _flat(*idx.load_split(idx_dir, "train"))
  test = _flat(*idx.load_split(idx_dir, "test"))
  return Mnist(*train, *test, source=f"idx:{os.path.abspath(idx_dir)}")


def _missing_message(where: str) -> str:
  return (
      f"MNIST not found: no prepared TFDS '{DATASET}' in {where}, and this "
      "command never downloads. Provide it with --data_dir=DIR or "
      "TFDS_DATA_DIR=DIR (a directory holding mnist/<version>/ as prepared by "
      "tensorflow-datasets), or --idx_dir=DIR (the four MNIST IDX files, plain "
      "or .gz)")


def _to_arrays(ds: tf.data.Dataset):
  """Decodes a whole split into flat uint8 images and int64 labels."""
  images, labels = [], []
  for batch in ds.batch(10_000).prefetch(1):
    images.append(batch["image"].numpy())
    labels.append(batch["label"].numpy())
  return _flat(np.concatenate(images), np.concatenate(labels))


def load_tfds(data_dir: Optional[str],
              cache_dir: Optional[str] = None) -> Mnist:
  """Reads a prepared TFDS 'mnist'; fails at once when it is not on disk.

  tfds.load would try to download and, offline, retry for minutes; we only
  read what is on disk and never ask the network. With `cache_dir`, the
  decoded arrays are kept there and later runs skip TFDS altogether.
  """
  version_dir = cache.tfds_version_dir(data_dir, DATASET)
  if cache_dir and version_dir:
    hit = cache.load(cache_dir, version_dir)
    if hit is not None:
      return Mnist(**hit, source=f"tfds:{version_dir}",
                   version=os.path.basename(version_dir))
  # Imported here: TFDS costs start-up time that a cache hit never needs.
  import tensorflow_datasets as tfds

  builder = tfds.builder(DATASET, data_dir=data_dir)
  splits = {}
  try:
    for split in ("train", "test"):
      splits[split] = _to_arrays(builder.as_dataset(split=split))
  except AssertionError as e:
    # TFDS's way of saying "not prepared": it asserts the data is on disk.
    raise DataError(_missing_message(builder.data_dir)) from e
  except (tf.errors.OpError, OSError) as e:
    first = (str(e).strip().splitlines() or [type(e).__name__])[0]
    raise DataError(
        f"TFDS '{DATASET}' in {builder.data_dir} cannot be read: {first}"
    ) from e
  mnist = Mnist(*splits["train"], *splits["test"],
                source=f"tfds:{builder.data_dir}",
                version=str(builder.version))
  if cache_dir and version_dir and (
      os.path.abspath(builder.data_dir) == os.path.abspath(version_dir)):
    cache.store(cache_dir, version_dir,
                {k: getattr(mnist, k) for k in cache.ARRAYS})
  return mnist


def load(data_dir: Optional[str] = None, idx_dir: Optional[str] = None,
         cache_dir: Optional[str] = None) -> Mnist:
  """IDX files when idx_dir is given, else the TFDS data directory."""
  if idx_dir:
    return load_idx(idx_dir)
  return load_tfds(data_dir, cache_dir)


def select_classes(mnist: Mnist, classes: Optional[Sequence[int]]) -> Mnist:
  """Keeps the examples of `classes`, relabelled 0..len-1 in the given order.

  For two classes the second is the positive class (label 1).
  """
  if classes is None:
    return mnist
  lookup = np.full(10, -1, np.int64)
  lookup[list(classes)] = np.arange(len(classes))

  def pick(images, labels):
    keep = lookup[labels] >= 0
    return images[keep], lookup[labels[keep]]

  train = pick(mnist.train_images, mnist.train_labels)
  test = pick(mnist.test_images, mnist.test_labels)
  for split, (_, labels) in (("train", train), ("test", test)):
    missing = sorted(set(classes) - set(np.asarray(classes)[np.unique(labels)]
                                        .tolist()))
    if missing:
      raise DataError(
          f"--classes={','.join(map(str, classes))}: the {split} split of "
          f"{mnist.source} has no examples of digit(s) "
          f"{','.join(map(str, missing))}")
  return dataclasses.replace(mnist, train_images=train[0],
                             train_labels=train[1], test_images=test[0],
                             test_labels=test[1])


def to_labels(labels: np.ndarray) -> tf.Tensor:
  """int64 labels, placed like the features (on the GPU when there is one)."""
  return tf.identity(tf.constant(labels, tf.int64))


def to_features(images: np.ndarray) -> tf.Tensor:
  """uint8 pixels -> float32 in [0, 1], made once, without a second copy.

  The conversion runs in NumPy straight into a 64-byte aligned buffer that
  TensorFlow then adopts through DLPack, so the float32 matrix exists once
  (a plain tf.cast followed by a division would hold three copies at the
  peak). tf.identity then places it where TensorFlow runs ops: a no-op on
  the CPU, a single copy into GPU memory when there is one.
  """
  images = np.ascontiguousarray(images)
  raw = np.empty(images.size * 4 + 64, np.uint8)
  offset = -raw.ctypes.data % 64
  features = raw[offset:offset + images.size * 4].view(np.float32).reshape(
      images.shape)

  def convert(rows):
    features[rows] = images[rows]  # exact: every uint8 is a float32
    features[rows] /= np.float32(255)  # correctly rounded, as in TF

  # Writing 188 MB of fresh memory is mostly page faults: spread them, and
  # the conversion, over the cores (NumPy releases the GIL for both).
  workers = max(1, min(os.cpu_count() or 1, 4))
  chunk = -(-len(images) // workers) if len(images) else 1
  with concurrent.futures.ThreadPoolExecutor(workers) as pool:
    list(pool.map(convert, [slice(i, i + chunk)
                            for i in range(0, len(images), chunk)]))
  return tf.identity(tf.experimental.dlpack.from_dlpack(features.__dlpack__()))
