"""Errors that reach the command line as one line of text, never a traceback."""


class UserError(Exception):
  """Bad input from the person running the command (flags, paths, data).

  The message is complete on its own: it quotes the bad value and says what is
  accepted, so the command line can print it as a single line.
  """

  exit_code = 1


class DataError(UserError):
  """The data set is missing, unreadable or malformed."""


class DivergenceError(Exception):
  """Training produced a non-finite loss or weight."""

  exit_code = 3


class StorageError(Exception):
  """Writing the model directory failed: a full disk, a quota, an I/O error,
  a file system that turned read-only. Earlier checkpoints stay intact."""

  exit_code = 4


class WorkerError(Exception):
  """A cluster of workers failed: it did not form, or lost a worker. The
  chief's checkpoints stay; starting every worker again resumes."""

  exit_code = 5
