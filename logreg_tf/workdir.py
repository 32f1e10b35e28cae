"""The one owner of --model_dir's layout: nobody else spells its file names.

    MODEL_DIR/
      checkpoints/                 tf.train.CheckpointManager's directory
      events.out.tfevents.*        TensorBoard scalars and hparams
      run.json                     what ran and how it ended (runinfo.py)

Which process may write there is decided here too (`writes`), so that a run
of several workers can give the directory to one of them.
"""

import os
import shutil
import tempfile

from logreg_tf.errors import UserError

_CHECKPOINTS = "checkpoints"
_RUN_JSON = "run.json"
_EVENTS_PREFIX = "events.out.tfevents."


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

  def __init__(self, root: str, writes: bool = True):
    self.root = root
    self.writes = writes  # False for a worker that must leave it alone

  @property
  def checkpoints(self) -> str:
    return os.path.join(self.root, _CHECKPOINTS)

  @property
  def run_json(self) -> str:
    return os.path.join(self.root, _RUN_JSON)

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
    """--fresh: removes what earlier runs left here, and only that."""
    shutil.rmtree(self.checkpoints, ignore_errors=True)
    for path in self.event_files():
      os.remove(path)
    if os.path.exists(self.run_json):
      os.remove(self.run_json)

  def prepare(self, fresh: bool) -> None:
    """Creates the directory (after clearing it with `fresh`)."""
    try:
      if fresh:
        self.clear()
      os.makedirs(self.root, exist_ok=True)
    except OSError as e:
      raise UserError(f"--model_dir={self.root!r}: {e.strerror}") from e
