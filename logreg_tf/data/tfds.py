"""Any prepared TFDS image classification dataset, read from disk only.

`tfds.load` would try to download and, offline, retry for minutes; this only
reads what is on disk and never asks the network. A dataset prepared by a
builder that this TFDS installation does not know is read from its files
alone (TFDS's read-only builder). With a cache directory, each split is
decoded once, batch by batch, into a row file there (cache.py) and mapped;
later runs skip TFDS altogether.
"""

import dataclasses
import os
import tempfile
from typing import Dict, Optional, Tuple

from absl import logging
import numpy as np
import tensorflow as tf

from logreg_tf.data import cache
from logreg_tf.data.dataset import Dataset, DatasetInfo
from logreg_tf.errors import DataError, StorageError

_NEEDS = ("this trainer needs an image feature (uint8, height x width x "
          "channels) and a ClassLabel")


def _missing_message(name: str, where: str) -> str:
  return (
      f"dataset {name!r} not found: no prepared TFDS {name!r} in {where}, and "
      "this command never downloads. Provide it with --data_dir=DIR or "
      f"TFDS_DATA_DIR=DIR (a directory holding {name}/<version>/ as prepared "
      "by tensorflow-datasets), or --idx_dir=DIR (its four IDX files, plain "
      "or .gz)")


def _builder(name: str, data_dir: Optional[str]):
  import tensorflow_datasets as tfds  # costs start-up; a cache hit skips it
  try:
    return tfds.builder(name, data_dir=data_dir)
  except tfds.core.registered.DatasetNotFoundError as e:
    raise DataError(_missing_message(name, cache.tfds_root(data_dir))) from e


def _feature_keys(info, name: str) -> Tuple[str, str]:
  """The keys of the image and the label among the dataset's features."""
  import tensorflow_datasets as tfds
  features = info.features
  keys = list(features.keys()) if hasattr(features, "keys") else []
  images = [k for k in keys if isinstance(features[k], tfds.features.Image)]
  labels = [k for k in keys
            if isinstance(features[k], tfds.features.ClassLabel)]
  supervised = tuple(info.supervised_keys or ())
  if len(supervised) == 2 and supervised[0] in images and (
      supervised[1] in labels):
    return supervised
  if not images or not labels:
    missing = "no image feature" if not images else "no ClassLabel feature"
    raise DataError(f"dataset {name!r} has {missing} (its features: "
                    f"{', '.join(keys) or 'none'}); {_NEEDS}")
  return images[0], labels[0]


def _describe(builder, name, train_split, test_split) -> Tuple[DatasetInfo,
                                                               str, str]:
  image_key, label_key = _feature_keys(builder.info, name)
  image = builder.info.features[image_key]
  shape = tuple(image.shape)
  if len(shape) != 3 or None in shape or image.tf_dtype != tf.uint8:
    raise DataError(f"dataset {name!r}: its image feature {image_key!r} is "
                    f"{image.tf_dtype.name} of shape {shape}; {_NEEDS} of a "
                    "fixed size")
  info = DatasetInfo(
      name=name, version=str(builder.version),
      source=f"tfds:{builder.data_dir}", image_shape=shape,
      class_names=tuple(builder.info.features[label_key].names),
      train_split=train_split, test_split=test_split)
  return info, image_key, label_key


def _read_config():
  """TFDS reads as usual, but without its automatic cache: for a split under
  250 MB of files it keeps every decoded example in memory (the row file is
  the cache here), which took 300 MB for 16,000 128x128 images."""
  import tensorflow_datasets as tfds
  return tfds.ReadConfig(try_autocache=False)


def _batches(builder, info, split, image_key, label_key):
  """The split as (flat uint8 images, int64 labels) batches, decoded by
  TFDS; TFDS's failures as one line."""
  flag = "--train_split" if split == info.train_split else "--test_split"
  try:
    ds = builder.as_dataset(split=split, read_config=_read_config())
    any_rows = False
    # Batches of at most 10,000 images and 16 MB: memory bounded by two.
    rows = max(1, min(10_000, (16 << 20) // info.num_features))
    for batch in ds.batch(rows).prefetch(1):
      images = batch[image_key].numpy()
      labels = batch[label_key].numpy().astype(np.int64)
      info.check_labels(labels, f"{info.name} {split}")
      any_rows = True
      yield images.reshape(len(images), -1), labels
  except AssertionError as e:
    # TFDS's way of saying "not prepared": it asserts the data is on disk.
    raise DataError(_missing_message(info.name, builder.data_dir)) from e
  except (ValueError, KeyError) as e:
    raise DataError(
        f"{flag}={split!r} is not a split of {info.name} (its splits: "
        f"{', '.join(builder.info.splits.keys())}; TFDS split syntax such as "
        f"train[:90%] is accepted): {str(e).splitlines()[0]}") from e
  except (tf.errors.OpError, OSError) as e:
    first = (str(e).strip().splitlines() or [type(e).__name__])[0]
    raise DataError(f"TFDS {info.name!r} in {builder.data_dir} cannot be "
                    f"read: {first}") from e
  if not any_rows:
    raise DataError(f"{flag}={split!r} of {info.name} holds no examples")


def _rows(builder, split) -> Optional[int]:
  """The split's examples by TFDS's description, if it says."""
  try:
    return int(builder.info.splits[split].num_examples)
  except Exception:  # pylint: disable=broad-except
    return None  # an unknown split: decoding says so in one line


def _decode(builder, info, split, keys, cache_dir, version_dir,
            need_file: bool):
  """Decodes one split into the cache's row file (memory bounded by a
  batch) and maps it; into memory when the cache cannot take it, unless
  `need_file` (streamed input), where that is a one-line StorageError."""
  if cache_dir and version_dir and (
      os.path.abspath(builder.data_dir) == os.path.abspath(version_dir)):
    try:
      with cache.SplitWriter(cache_dir, version_dir, split, info,
                             _rows(builder, split)) as writer:
        for images, labels in _batches(builder, info, split, *keys):
          writer.append(images, labels)
      return writer.result
    except StorageError as e:
      if need_file:
        raise
      logging.warning("could not write the data cache (%s); decoding into "
                      "memory", e)
  elif need_file:
    raise StorageError(
        f"streamed input reads {info.name} from its decoded files, and "
        f"there is no cache to hold them (--cache_dir={cache_dir or ''!s}); "
        "give a --cache_dir, or --input=memory")
  parts = list(_batches(builder, info, split, *keys))
  return (np.concatenate([p[0] for p in parts]),
          np.concatenate([p[1] for p in parts]))


def load(name: str, train_split: str, test_split: str,
         data_dir: Optional[str], cache_dir: Optional[str],
         need_file: bool = False) -> Dataset:
  """Reads the two splits of a prepared dataset; fails at once when absent.

  Each split comes from its decoded file in the cache when there is one,
  else TFDS decodes it (into the cache, when there is one). `need_file`:
  the splits must be decoded files (streamed input), not arrays in memory.
  """
  version_dir = cache.tfds_version_dir(data_dir, name)
  found, builder, info, keys = {}, None, None, None
  for split in dict.fromkeys((train_split, test_split)):
    hit = (cache.load_split(cache_dir, version_dir, split)
           if cache_dir and version_dir else None)
    if hit is not None:
      info = info or hit[0]
      found[split] = hit[1:]
      continue
    if builder is None:
      builder = _builder(name, data_dir)
      info, *keys = _describe(builder, name, train_split, test_split)
    found[split] = _decode(builder, info, split, keys, cache_dir,
                           version_dir, need_file)
  info = dataclasses.replace(info, train_split=train_split,
                             test_split=test_split)
  return Dataset(info, *found[train_split], *found[test_split])


def known_class_names(name: str) -> Optional[Tuple[str, ...]]:
  """The class names TFDS's own builder of `name` declares, if it has one."""
  import tensorflow_datasets as tfds
  with tempfile.TemporaryDirectory() as empty:  # describe, never read
    try:
      builder = tfds.builder(name, data_dir=empty)
      _, label_key = _feature_keys(builder.info, name)
    except (tfds.core.registered.DatasetNotFoundError, DataError):
      return None
    return tuple(builder.info.features[label_key].names)


def split_sizes(name: str, data_dir: Optional[str]) -> Dict[str, int]:
  """Examples per split of a prepared dataset, from its description."""
  return {split: info.num_examples
          for split, info in _builder(name, data_dir).info.splits.items()}
