"""Writes that survive a power loss, and errors of the disk in one line.

A file renamed into place is on disk only once its data and the directory
entry are: `sync_files` flushes both. Every failure to write the model
directory becomes a `StorageError` that names the path and the operating
system's reason.
"""

import errno
import os
import re
from typing import Iterable

from logreg_tf.errors import StorageError


def reason(error: BaseException) -> str:
  """The operating system's words for an error, on one line."""
  if isinstance(error, OSError) and error.strerror:
    code = errno.errorcode.get(error.errno, "")
    return f"{error.strerror}" + (f" ({code})" if code else "")
  text = getattr(error, "message", None) or str(error) or type(error).__name__
  # TensorFlow wraps the OS's words in the name of the op that failed.
  text = re.sub(r"\{\{function_node [^}]*\}\}\s*|\s*\[Op:\w+\].*", "", text)
  return text.strip().splitlines()[0]


def sync_files(paths: Iterable[str]) -> None:
  """fsyncs each file, then each directory that holds one (its entries)."""
  directories = set()
  for path in paths:
    fd = os.open(path, os.O_RDONLY)
    try:
      os.fsync(fd)
    finally:
      os.close(fd)
    directories.add(os.path.dirname(os.path.abspath(path)))
  for directory in sorted(directories):
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
      os.fsync(fd)
    finally:
      os.close(fd)


def write_text(path: str, text: str) -> None:
  """Replaces `path` atomically and durably; StorageError on failure."""
  write_bytes(path, text.encode())


def write_bytes(path: str, data: bytes) -> None:
  """Replaces `path` atomically and durably; StorageError on failure."""
  tmp = f"{path}.{os.getpid()}.tmp"
  try:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(tmp, "wb") as f:
      f.write(data)
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, path)
    sync_files([path])
  except OSError as e:
    try:
      os.remove(tmp)
    except OSError:
      pass
    raise StorageError(f"cannot write {path}: {reason(e)}") from e
