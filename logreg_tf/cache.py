"""Decoded MNIST kept on disk, so that a run does not decode 70,000 PNGs.

The key is the prepared TFDS directory itself: its path and the name, size
and modification time of every file in it. Rebuilding or replacing the data
changes the key; a damaged cache file is ignored and written again. Writes go
to a temporary file renamed into place, so readers never see half a file.
"""

import glob
import hashlib
import os
import zipfile
from typing import Dict, Optional

from absl import logging
import numpy as np

ARRAYS = ("train_images", "train_labels", "test_images", "test_labels")


def default_dir() -> str:
  base = os.environ.get("XDG_CACHE_HOME") or os.path.join(
      os.path.expanduser("~"), ".cache")
  return os.path.join(base, "logreg_tf")


def tfds_version_dir(data_dir: Optional[str], name: str) -> Optional[str]:
  """The newest prepared version of `name` where TFDS would look, if any."""
  root = (data_dir or os.environ.get("TFDS_DATA_DIR")
          or os.path.join(os.path.expanduser("~"), "tensorflow_datasets"))
  found = glob.glob(os.path.join(root, name, "*", "dataset_info.json"))

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


def _path(cache_dir: str, version_dir: str) -> str:
  return os.path.join(cache_dir, f"mnist-{_key(version_dir)}.npz")


def load(cache_dir: str, version_dir: str) -> Optional[Dict[str, np.ndarray]]:
  path = _path(cache_dir, version_dir)
  if not os.path.exists(path):
    return None
  try:
    with np.load(path) as f:
      arrays = {k: f[k] for k in ARRAYS}
  except (OSError, EOFError, ValueError, KeyError, zipfile.BadZipFile) as e:
    logging.warning("ignoring the damaged cache file %s (%s)", path, e)
    return None
  logging.info("data: decoded arrays from the cache %s", path)
  return arrays


def store(cache_dir: str, version_dir: str, arrays: Dict[str, np.ndarray]):
  """Best effort: a cache that cannot be written only costs time."""
  path = _path(cache_dir, version_dir)
  tmp = f"{path}.{os.getpid()}.tmp"
  try:
    os.makedirs(cache_dir, exist_ok=True)
    with open(tmp, "wb") as f:
      np.savez(f, **{k: arrays[k] for k in ARRAYS})
    os.replace(tmp, path)
  except OSError as e:
    logging.warning("could not write the data cache %s (%s)", path, e)
    if os.path.exists(tmp):
      os.remove(tmp)
