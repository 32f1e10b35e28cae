"""Finds a worker whose process no longer answers, and ends the wait for it.

A process that is frozen (SIGSTOP, a VM paused by its host, a machine
swapping itself to a standstill) keeps its sockets open: the kernel still
accepts its connections, so its peers' collectives wait for it without end.
The coordination service's heartbeat timeout notices the silent task, but
in TensorFlow 2.21 that reaches the collectives in flight only sometimes,
and MultiWorkerMirroredStrategy turns its own health check off whenever a
coordination service is configured ("Check health not enabled.").

So each worker runs this thread: every `timeout / 2` seconds it asks every
peer's TensorFlow server whether it is alive (an RPC its threads answer
whatever its training thread is doing), with `timeout` to answer. A peer
that leaves two questions in a row unanswered is frozen (found within
2.5 x `timeout` of its last answer): the thread aborts
this process's collectives, the collective the run waits in fails, and
placement.lost_worker names the frozen peer. A peer that is slow but alive
(decoding a dataset, tracing, writing a checkpoint to a slow disk) answers,
and is never taken for frozen; a peer that is gone (refused connections) is
the lost-worker case, which the collectives find by themselves.
"""

import threading
import time
from typing import NamedTuple, Optional

from absl import logging


class Frozen(NamedTuple):
  name: str  # e.g. "worker 1"
  address: str
  silent_s: float  # since its last answer


class Watchdog:
  """Start once the strategy exists; `frozen` says what it found."""

  def __init__(self, cluster, timeout: float):
    self.cluster, self.timeout = cluster, timeout
    self._peers = [(name, address, _device(name))
                   for name, address in cluster.peers]
    self._stop = threading.Event()
    self.frozen: Optional[Frozen] = None
    now = time.monotonic()
    self._answered = {name: now for name, _, _ in self._peers}  # last answer
    self._state = {name: "ok" for name, _, _ in self._peers}  # ok/silent/gone
    self._thread = threading.Thread(target=self._watch, name="watchdog",
                                    daemon=True)

  def start(self) -> None:
    self._thread.start()

  def stop(self) -> None:
    self._stop.set()

  def _answers(self, device: str) -> Optional[bool]:
    """Whether the peer answers within the timeout; None when it is gone or
    restarted (refused connections: the lost-worker case)."""
    import tensorflow as tf
    from tensorflow.python.eager import context
    try:
      context.context().check_collective_ops_peer_health(
          device, timeout_in_ms=int(self.timeout * 1000))
      return True
    except tf.errors.DeadlineExceededError:
      return False
    except tf.errors.OpError:
      return None

  def find(self) -> Optional[Frozen]:
    """The frozen peer, once a collective failed: a collective can fail
    before this thread's verdict (the coordination service's heartbeat
    timeout aborts it too, when it notices), so this waits for the
    questions in flight, at most one timeout."""
    asked = time.monotonic()
    while self._thread.is_alive() and self.frozen is None:
      silent = [p for p in self._peers if self._state[p[0]] == "silent"]
      if silent:
        name, address, _ = silent[0]
        return Frozen(name, address, time.monotonic() - self._answered[name])
      if (all(self._state[n] == "gone" or self._answered[n] > asked
              for n, _, _ in self._peers)
          or time.monotonic() > asked + self.timeout + 1):
        return None
      time.sleep(0.05)
    return self.frozen

  def _watch(self) -> None:
    import tensorflow as tf
    from tensorflow.python.eager import context
    while not self._stop.wait(self.timeout / 2):
      for name, address, device in self._peers:
        for attempt in (1, 2):  # the second at once: found within 2.5 x
          answer = self._answers(device)
          if answer:
            self._answered[name], self._state[name] = time.monotonic(), "ok"
            break
          if answer is None:
            self._state[name] = "gone"
            break
          self._state[name] = "silent"
          if attempt == 2 and not self._stop.is_set():
            self.frozen = Frozen(name, address,
                                 time.monotonic() - self._answered[name])
            logging.warning("%s at %s has not answered for %.0f s: "
                            "aborting the collectives", name, address,
                            self.frozen.silent_s)
            context.context().abort_collective_ops(
                tf.errors.UNAVAILABLE,
                f"no progress from {name} at {address}")
            return


def _device(name: str) -> str:
  job, index = name.split()
  return f"/job:{job}/replica:0/task:{index}"
