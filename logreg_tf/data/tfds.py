"""Any prepared TFDS image classification dataset, read from disk only.

`tfds.load` would try to download and, offline, retry for minutes; this only
reads what is on disk and never asks the network. A dataset prepared by a
builder that this TFDS installation does not know is read from its files
alone (TFDS's read-only builder). With a cache directory, the decoded arrays
are kept there and later runs skip TFDS altogether.
"""

import os
import tempfile
from typing import Dict, Optional, Tuple

import numpy as np
import tensorflow as tf

from logreg_tf.data import cache
from logreg_tf.data.dataset import Dataset, DatasetInfo
from logreg_tf.errors import DataError

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


def _read_split(builder, info, split, image_key, label_key):
  """Decodes one split into flat uint8 images and int64 labels."""
  flag = "--train_split" if split == info.train_split else "--test_split"
  try:
    ds = builder.as_dataset(split=split)
    images, labels = [], []
    for batch in ds.batch(10_000).prefetch(1):
      images.append(batch[image_key].numpy())
      labels.append(batch[label_key].numpy())
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
  if not images:
    raise DataError(f"{flag}={split!r} of {info.name} holds no examples")
  images = np.concatenate(images)
  labels = np.concatenate(labels).astype(np.int64)
  info.check_labels(labels, f"{info.name} {split}")
  return images.reshape(len(images), -1), labels


def load(name: str, train_split: str, test_split: str,
         data_dir: Optional[str], cache_dir: Optional[str]) -> Dataset:
  """Reads the two splits of a prepared dataset; fails at once when absent."""
  version_dir = cache.tfds_version_dir(data_dir, name)
  splits = (train_split, test_split)
  if cache_dir and version_dir:
    hit = cache.load(cache_dir, version_dir, splits)
    if hit is not None:
      return hit
  builder = _builder(name, data_dir)
  info, image_key, label_key = _describe(builder, name, train_split,
                                         test_split)
  train = _read_split(builder, info, train_split, image_key, label_key)
  test = _read_split(builder, info, test_split, image_key, label_key)
  data = Dataset(info, *train, *test)
  if cache_dir and version_dir and (
      os.path.abspath(builder.data_dir) == os.path.abspath(version_dir)):
    cache.store(cache_dir, version_dir, splits, data)
  return data


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
