"""The data: TFDS or IDX in, classes selected, tensors out.

    dataset.py  DatasetInfo (the one description of the data) and Dataset
    tfds.py     any prepared TFDS image dataset, read from disk only
    idx.py      the four IDX files of MNIST's format, checked by content
    cache.py    decoded splits kept between runs, as mapped row files
    streamed.py a split read block by block (--input=stream)
    images.py   image files to a model's input (predict)

What was read is described by `dataset.DatasetInfo`; the model, summaries,
checkpoints and run.json take every fact about the data from it. The
readers and TensorFlow are imported when first used, so that a command's
--help and flag errors answer before TensorFlow loads.
"""

import concurrent.futures
import dataclasses
import os
from typing import Dict, Optional, Sequence, Tuple

from absl import logging
import numpy as np

from logreg_tf.config import DataSpec
from logreg_tf.data.dataset import Dataset, DatasetInfo, Rows
from logreg_tf.errors import DataError, UserError


def load(spec: DataSpec, storage) -> Dataset:
  """The dataset and splits of `spec` from IDX files or the TFDS directory."""
  if storage.idx_dir:
    from logreg_tf.data import idx
    return idx.load_dataset(storage.idx_dir, spec.dataset, spec.train_split,
                            spec.test_split)
  from logreg_tf.data import tfds
  return tfds.load(spec.dataset, spec.train_split, spec.test_split,
                   storage.data_dir, storage.cache_dir,
                   need_file=storage.input == "stream")


def split_sizes(spec: DataSpec, storage) -> Dict[str, int]:
  """Examples per split of the source (IDX: train and test)."""
  if storage.idx_dir:
    from logreg_tf.data import idx
    return idx.split_sizes(storage.idx_dir)
  from logreg_tf.data import tfds
  return tfds.split_sizes(spec.dataset, storage.data_dir)


def check_held_out(spec: DataSpec, validation_split: str, storage) -> None:
  """UserError when the validation split shares rows with the train split
  (by TFDS split syntax over the source's splits)."""
  from logreg_tf.data import splits
  sizes = split_sizes(spec, storage)
  shared = splits.overlap(
      splits.rows(spec.train_split, sizes, "train_split"),
      splits.rows(validation_split, sizes, "validation_split"))
  if shared:
    raise UserError(
        f"--validation_split={validation_split!r} shares {shared} rows with "
        f"--train_split={spec.train_split!r}: a validation split must be held "
        "out, e.g. --train_split=train[:50000] "
        "--validation_split=train[50000:]")


def load_validation(spec: DataSpec, validation_split: str, storage,
                    input_mode: str = "memory", multiple: int = 1):
  """(features, labels) of the validation split, its classes those of
  `spec`: a tensor, or a streamed split with `input_mode` "stream". Read as
  the training split of a second load beside the same test split, so the
  readers, the split syntax and the cache stay those of the two-split
  load."""
  held_out = load_selected(dataclasses.replace(
      spec, train_split=validation_split), storage)
  if input_mode == "stream":
    from logreg_tf.data.streamed import StreamedSplit
    return (StreamedSplit(held_out.train_images, multiple=multiple),
            to_labels(held_out.train_labels))
  return (to_features(held_out.train_images),
          to_labels(held_out.train_labels))


def choose_input(requested: str, data: Dataset) -> str:
  """'memory' or 'stream' for --input=`requested` (data/streamed.py): the
  in-memory path when its float32 matrices fit the budget."""
  from logreg_tf.data import streamed
  need = 4 * data.info.num_features * (len(data.train_labels)
                                       + len(data.test_labels))
  budget = streamed.memory_budget()
  mode = streamed.choose(requested, need, budget)
  logging.info("input: %s (--input=%s; the splits are %.2f GB as float32, "
               "the budget %s)", mode, requested, need / 1e9,
               "unknown" if budget is None else f"{budget / 1e9:.2f} GB")
  return mode


def to_streamed(data: Dataset, multiple: int = 1):
  """(x_train, y_train, x_test, y_test) with streamed splits for x: read
  block by block where they are used (blocks a multiple of `multiple`
  rows)."""
  from logreg_tf.data.streamed import StreamedSplit
  return (StreamedSplit(data.train_images, multiple=multiple),
          to_labels(data.train_labels),
          StreamedSplit(data.test_images, multiple=multiple),
          to_labels(data.test_labels))


def load_selected(spec: DataSpec, storage) -> Dataset:
  """The dataset with `spec`'s classes selected, described in the log."""
  loaded = load(spec, storage)
  info = loaded.info
  logging.info("data: %s %s from %s: %s images, %d classes (%s), splits "
               "%s / %s", info.name, info.version or "", info.source,
               "x".join(map(str, info.image_shape)), info.num_classes,
               ", ".join(info.class_names), info.train_split, info.test_split)
  selected = select_classes(loaded, resolve_classes(info, spec.classes))
  logging.info("data: %d train and %d test examples of classes %s",
               len(selected.train_labels), len(selected.test_labels),
               ", ".join(selected.info.class_names))
  return selected


def _describe_classes(info: DatasetInfo) -> str:
  shown = [f"{i} {n!r}" if n != str(i) else n
           for i, n in enumerate(info.class_names)]
  if len(shown) > 20:
    shown = shown[:20] + [f"... ({len(shown)} in all)"]
  return ", ".join(shown)


def resolve_classes(info: DatasetInfo,
                    given: Optional[Sequence[str]]) -> Optional[Tuple[int, ...]]:
  """Class names or indices as given on the command line -> class indices."""
  if given is None:
    return None
  names = {n: i for i, n in enumerate(info.class_names)}
  folded = {n.casefold(): i for i, n in enumerate(info.class_names)}
  out = []
  for token in given:
    if token in names:
      out.append(names[token])
    elif token.casefold() in folded:
      out.append(folded[token.casefold()])
    elif token.isdigit() and int(token) < info.num_classes:
      out.append(int(token))
    else:
      raise UserError(
          f"--classes={','.join(given)}: {token!r} is not a class of "
          f"{info.name}; its classes are {_describe_classes(info)}")
  if len(set(out)) != len(out):
    raise UserError(f"--classes={','.join(given)}: a class is named twice")
  return tuple(out)


def select_classes(data: Dataset, classes: Optional[Sequence[int]]) -> Dataset:
  """Keeps the examples of `classes`, relabelled 0..len-1 in the given order.

  For two classes the second is the positive class (label 1).
  """
  if classes is None:
    return data
  info = data.info
  lookup = np.full(info.num_classes, -1, np.int64)
  lookup[list(classes)] = np.arange(len(classes))

  def pick(images, labels):
    keep = lookup[labels] >= 0
    if isinstance(images, np.memmap):  # a mapped row file: select, not copy
      return Rows(images, np.flatnonzero(keep)), lookup[labels[keep]]
    return images[keep], lookup[labels[keep]]

  train = pick(data.train_images, data.train_labels)
  test = pick(data.test_images, data.test_labels)
  names = tuple(info.class_names[c] for c in classes)
  for split, (_, labels) in (("train", train), ("test", test)):
    missing = sorted(set(range(len(classes))) - set(np.unique(labels)))
    if missing:
      raise DataError(
          f"--classes={','.join(names)}: the {split} split of {info.source} "
          f"has no examples of class(es) "
          f"{','.join(names[m] for m in missing)}")
  info = dataclasses.replace(info, class_names=names,
                             class_indices=tuple(classes))
  return Dataset(info, train[0], train[1], test[0], test[1])


def to_labels(labels: np.ndarray):
  """int64 labels, placed like the features (on the GPU when there is one)."""
  import tensorflow as tf
  return tf.identity(tf.constant(labels, tf.int64))


def aligned(shape, dtype=np.uint8) -> np.ndarray:
  """An uninitialised array at a 64-byte aligned address, which TensorFlow
  adopts through DLPack without a copy."""
  dtype = np.dtype(dtype)
  size = int(np.prod(shape)) * dtype.itemsize
  raw = np.empty(size + 64, np.uint8)
  offset = -raw.ctypes.data % 64
  return raw[offset:offset + size].view(dtype).reshape(shape)


def pixels_to_float32(pixels: np.ndarray, out=None) -> np.ndarray:
  """uint8 pixels -> float32 k / 255 (into `out` when given): exact, every
  uint8 is a float32, then the division correctly rounded, as in TF."""
  if out is None:
    out = np.empty(pixels.shape, np.float32)
  out[...] = pixels
  out /= np.float32(255)
  return out


def to_features(images: np.ndarray):
  """uint8 pixels -> float32 in [0, 1], made once, without a second copy.

  The conversion runs in NumPy straight into a 64-byte aligned buffer that
  TensorFlow then adopts through DLPack, so the float32 matrix exists once
  (a plain tf.cast followed by a division would hold three copies at the
  peak). tf.identity then places it where TensorFlow runs ops: a no-op on
  the CPU, a single copy into GPU memory when there is one.
  """
  import tensorflow as tf
  images = np.ascontiguousarray(images)
  features = aligned(images.shape, np.float32)

  def convert(rows):
    pixels_to_float32(images[rows], features[rows])

  # Writing 188 MB of fresh memory is mostly page faults: spread them, and
  # the conversion, over the cores (NumPy releases the GIL for both).
  workers = max(1, min(os.cpu_count() or 1, 4))
  chunk = -(-len(images) // workers) if len(images) else 1
  with concurrent.futures.ThreadPoolExecutor(workers) as pool:
    list(pool.map(convert, [slice(i, i + chunk)
                            for i in range(0, len(images), chunk)]))
  return tf.identity(tf.experimental.dlpack.from_dlpack(features.__dlpack__()))


def to_tensors(data: Dataset):
  """(x_train, y_train, x_test, y_test), placed where TensorFlow runs ops."""
  return (to_features(data.train_images), to_labels(data.train_labels),
          to_features(data.test_images), to_labels(data.test_labels))
