"""The one atomic write: files (and export directories) that survive a power
loss, and a failed write as StorageError in one line.

`replacing(path)` hands out a temporary name beside `path`; whatever the
caller writes there (bytes, an .npz, TFRecords, a SavedModel directory) is
flushed to disk, renamed over `path` and the directory entry flushed too.
On failure the temporary is removed and `path` is as it was.
"""

import contextlib
import os
import shutil
from typing import Iterable

from logreg_tf.errors import StorageError, reason


def _fsync(path: str, directory: bool = False) -> None:
  fd = os.open(path, os.O_RDONLY | (os.O_DIRECTORY if directory else 0))
  try:
    os.fsync(fd)
  finally:
    os.close(fd)


def sync_files(paths: Iterable[str]) -> None:
  """fsyncs each file, then each directory that holds one (its entries)."""
  directories = set()
  for path in paths:
    _fsync(path)
    directories.add(os.path.dirname(os.path.abspath(path)))
  for directory in sorted(directories):
    _fsync(directory, directory=True)


def _sync_tree(root: str) -> None:
  for folder, _, names in os.walk(root):
    for name in names:
      _fsync(os.path.join(folder, name))
    _fsync(folder, directory=True)


def _remove(path: str) -> None:
  if os.path.isdir(path):
    shutil.rmtree(path, ignore_errors=True)
  elif os.path.lexists(path):
    os.remove(path)


@contextlib.contextmanager
def replacing(path: str):
  """Yields a temporary path; on success its content replaces `path`.

  The caller writes a file or makes a directory at the temporary path. An
  existing directory at `path` is removed just before the rename (a
  directory cannot be renamed over a full one). OSError from the caller or
  the disk becomes StorageError naming `path`.
  """
  parent = os.path.dirname(os.path.abspath(path))
  tmp = os.path.join(parent, f".{os.path.basename(path)}.{os.getpid()}.tmp")
  try:
    os.makedirs(parent, exist_ok=True)
    yield tmp
    if os.path.isdir(tmp):
      _sync_tree(tmp)
      if os.path.isdir(path):
        shutil.rmtree(path)
    else:
      _fsync(tmp)
    os.replace(tmp, path)
    _fsync(parent, directory=True)
  except OSError as e:
    raise StorageError(f"cannot write {path}: {reason(e)}") from e
  finally:
    _remove(tmp)


def write_bytes(path: str, data: bytes) -> None:
  """Replaces `path` atomically and durably; StorageError on failure."""
  with replacing(path) as tmp:
    with open(tmp, "wb") as f:
      f.write(data)


def write_text(path: str, text: str) -> None:
  write_bytes(path, text.encode())
