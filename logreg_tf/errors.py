"""Errors that reach the command line as one line of text, never a traceback.

Every error a command can end with is a `CommandError`: its message is
complete on its own (it quotes the bad value or names the path and says what
to do), and its `exit_code` is the command's exit status. `cli.run_command`
is the one place that turns one into a line on stderr and that status.
"""

import errno
import re
import signal
from typing import Optional


class CommandError(Exception):
  """An error that ends a command with `exit_code` and one line."""

  exit_code = 1
  warning = False  # logged as a warning (a requested stop), not an error


class UserError(CommandError):
  """Bad input from the person running the command (flags, paths, data)."""


class DataError(UserError):
  """The data set is missing, unreadable or malformed."""


class DivergenceError(CommandError):
  """Training produced a non-finite loss or weight."""

  exit_code = 3


class NoOptimumError(CommandError):
  """An exact solver found no finite optimum: with --l2=0 the training
  classes are linearly separable, so the weights would grow without end."""

  exit_code = 6


class StorageError(CommandError):
  """Writing failed: a full disk, a quota, an I/O error, a file system that
  turned read-only. Earlier checkpoints stay intact."""

  exit_code = 4


class WorkerError(CommandError):
  """A cluster of workers failed: it did not form, or lost a worker. The
  chief's checkpoints stay; starting every worker again resumes."""

  exit_code = 5

  @classmethod
  def during(cls, worker: str, what: str, epoch: int,
             checkpoint: Optional[str], why: str = "") -> "WorkerError":
    """The line of a cluster that failed during `epoch`: `worker` says
    `what` happened, and where the run resumes."""
    return cls(f"{worker}: {what} during epoch {epoch}{why}; last good "
               f"checkpoint: {checkpoint or 'none'}; start every worker "
               "again to resume")


class Interrupted(CommandError):
  """A stop signal ended the run after it saved its state."""

  warning = True

  def __init__(self, signum: int, checkpoint: Optional[str]):
    super().__init__(
        f"stopped by {signal.Signals(signum).name} after saving "
        f"{checkpoint or 'nothing (no --model_dir)'}")
    self.exit_code = 128 + signum


def reason(error: BaseException) -> str:
  """The operating system's words for an error, on one line."""
  if isinstance(error, OSError) and error.strerror:
    code = errno.errorcode.get(error.errno, "")
    return f"{error.strerror}" + (f" ({code})" if code else "")
  text = getattr(error, "message", None) or str(error) or type(error).__name__
  # TensorFlow wraps the OS's words in the name of the op that failed.
  text = re.sub(r"\{\{function_node [^}]*\}\}\s*|\s*\[Op:\w+\].*", "", text)
  return text.strip().splitlines()[0]
