"""The one owner of --model_dir's layout: nobody else spells its file names.

    MODEL_DIR/
      .lock                        held (flock) by the run using the directory
      checkpoints/                 tf.train.CheckpointManager's directory
      events.out.tfevents.*        TensorBoard scalars, images and hparams
      figures/NAME.png             the pictures (figures.py), newest only
      run.json                     what ran and how it ended (runinfo.py)

One run at a time:
`locked()` holds an exclusive lock for the run's whole life. The kernel drops
it when the process ends, however it ends, so a killed run leaves no stale
lock behind.
"""

import contextlib
import datetime
import fcntl
import glob
import os
import shutil
import socket
import tempfile

from absl import logging

from logreg_tf.errors import UserError

_CHECKPOINTS = "checkpoints"
_RUN_JSON = "run.json"
_EVENTS_PREFIX = "events.out.tfevents."
_FIGURES = "figures"
_LOCK = ".lock"
# What TensorFlow leaves of a checkpoint whose save did not finish.
_PARTIAL_SAVES = ("*_temp*", "*.tempstate*")


def check_writable(path: str) -> None:
  """Raises UserError unless `path` is a writable directory or can be made.

  Errors give only the reason: the flag machinery prefixes flag and value.
  """
  if not path.strip():
    raise UserError("give a directory path, or leave the flag unset")
  probe = os.path.abspath(path)
  if os.path.exists(probe) and not os.path.isdir(probe):
    raise UserError("it is a file, not a directory")
  while not os.path.exists(probe):  # the deepest part that exists
    probe = os.path.dirname(probe)
  if not os.path.isdir(probe):
    raise UserError(f"{probe!r} is a file, not a directory")
  try:
    with tempfile.TemporaryFile(dir=probe):
      pass
  except OSError as e:
    raise UserError(f"cannot write in {probe!r} ({e.strerror})") from e


class ModelDir:
  """Paths inside one model directory, and starting it over."""

  def __init__(self, root: str):
    self.root = root

  @property
  def checkpoints(self) -> str:
    return os.path.join(self.root, _CHECKPOINTS)

  @property
  def run_json(self) -> str:
    return os.path.join(self.root, _RUN_JSON)

  @property
  def figures(self) -> str:
    return os.path.join(self.root, _FIGURES)

  def figure(self, name: str) -> str:
    return os.path.join(self.figures, f"{name}.png")

  @property
  def events(self) -> str:
    """The directory TensorBoard's event files go to (the root itself)."""
    return self.root

  def event_files(self):
    if not os.path.isdir(self.root):
      return []
    return sorted(os.path.join(self.root, n) for n in os.listdir(self.root)
                  if n.startswith(_EVENTS_PREFIX))

  def clear(self) -> None:
    """--fresh: removes what earlier runs left here, and only that (the lock
    file stays: it belongs to the run that clears)."""
    shutil.rmtree(self.checkpoints, ignore_errors=True)
    shutil.rmtree(self.figures, ignore_errors=True)
    for path in self.event_files():
      os.remove(path)
    if os.path.exists(self.run_json):
      os.remove(self.run_json)

  def remove_partial_saves(self) -> None:
    """Deletes what an unfinished checkpoint save left (never a checkpoint
    that the state file could name: those have no temporary names)."""
    for pattern in _PARTIAL_SAVES:
      for path in glob.glob(os.path.join(self.checkpoints, pattern)):
        logging.info("removing %s, left by a checkpoint save that did not "
                     "finish", path)
        if os.path.isdir(path):
          shutil.rmtree(path, ignore_errors=True)
        else:
          os.remove(path)

  @contextlib.contextmanager
  def locked(self, fresh: bool = False):
    """Creates the directory, holds its lock, clears it with `fresh`.

    A second run in the same directory is refused at once, naming the
    process that holds it.
    """
    try:
      os.makedirs(self.root, exist_ok=True)
      fd = os.open(os.path.join(self.root, _LOCK), os.O_RDWR | os.O_CREAT,
                   0o644)
    except OSError as e:
      raise UserError(f"--model_dir={self.root!r}: {e.strerror}") from e
    try:
      try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
      except BlockingIOError:
        holder = os.pread(fd, 200, 0).decode(errors="replace").strip()
        raise UserError(
            f"--model_dir={self.root!r} is in use by another run "
            f"({holder or 'a process that has not written its name yet'}); "
            "wait for it to end, or use another --model_dir") from None
      os.ftruncate(fd, 0)
      started = datetime.datetime.now().isoformat(timespec="seconds")
      os.pwrite(fd, f"process {os.getpid()} on {socket.gethostname()}, "
                f"started {started}\n".encode(), 0)
      if fresh:
        self.clear()
      self.remove_partial_saves()
      yield self
    finally:
      os.close(fd)  # releases the lock
