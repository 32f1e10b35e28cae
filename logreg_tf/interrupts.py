"""SIGINT and SIGTERM become a request to stop after the current step."""

import contextlib
import signal
from typing import Optional

from absl import logging


class StopRequest:
  """Records the first stop signal; the loop polls `signum` between steps."""

  def __init__(self):
    self.signum: Optional[int] = None
    self._signals = ()

  def _handle(self, signum, frame):
    del frame
    if self.signum is None:
      logging.warning("%s received: finishing the current step, then "
                      "saving a checkpoint", signal.Signals(signum).name)
    self.signum = signum

  def take_back(self) -> None:
    """Installs the handlers again: MultiWorkerMirroredStrategy's
    preemption notifier takes SIGTERM for itself when it starts."""
    for s in self._signals:
      signal.signal(s, self._handle)

  @contextlib.contextmanager
  def installed(self, signals=(signal.SIGINT, signal.SIGTERM)):
    self._signals = tuple(signals)
    previous = {s: signal.signal(s, self._handle) for s in signals}
    try:
      yield self
    finally:
      for s, handler in previous.items():
        signal.signal(s, handler)
