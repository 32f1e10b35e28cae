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

A worker whose process answers but whose step never returns (stuck in a
read from a dead file system, a deadlock) is found by the collectives'
bounds instead (placement.STEP_BOUND): its peers' all-reduce fails with
DeadlineExceeded, and `stuck` names the peers that did not time out in it
too (each worker that did says so in the coordination service's key-value
store). The stuck worker's own thread ends its process once its peers have
gone while its collective phase has lasted longer than the step bound and a
timeout more.
"""

import os
import sys
import threading
import time
from typing import NamedTuple, Optional

from absl import logging

from logreg_tf.errors import WorkerError


class Frozen(NamedTuple):
  name: str  # e.g. "worker 1"
  address: str
  silent_s: float  # since its last answer


class Watchdog:
  """Start once the strategy exists; `frozen` says what it found."""

  def __init__(self, cluster, timeout: float, step_bound: float):
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
    # Set by cluster.Together while this worker is in a collective phase:
    # (when it began, its epoch, what to say if the others leave it there).
    self.phase: Optional[tuple] = None
    self.step_bound = step_bound

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
    questions in flight, at most one timeout. An answer of the last half
    timeout counts (it came after the collective began to wait, which was
    at least the step bound ago)."""
    asked = time.monotonic() - self.timeout / 2
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

  def stuck(self, tag: str, waited: float) -> Optional[Frozen]:
    """After this worker's collective `tag` timed out: the first peer that
    did not time out in it too (within a quarter of a timeout), as
    Frozen."""
    import tensorflow as tf
    from tensorflow.python.eager import context
    ctx = context.context()
    key = f"logreg_tf/timed_out/{tag}/"
    timed_out = set()

    def ask():
      try:
        ctx.set_config_key_value(key + self.cluster.name, "1")
      except tf.errors.OpError:
        pass  # said already
      for name, _, _ in self._peers:
        try:
          ctx.get_config_key_value(key + name,
                                   timeout_in_ms=int(self.timeout * 250))
          timed_out.add(name)
        except tf.errors.OpError:  # not there in time, or no service
          pass

    # In a thread: the service (in worker 0) may be the one that is stuck.
    asking = threading.Thread(target=ask, daemon=True)
    asking.start()
    asking.join(self.timeout / 4 * len(self._peers) + 1)
    for name, address, _ in self._peers:
      if name not in timed_out:
        return Frozen(name, address, waited)
    return None

  def _end_if_left_behind(self) -> None:
    """Ends this process (exit 5, its own line) when every peer has gone
    while this worker has been in one collective phase for longer than the
    step bound and a timeout more (time for a collective of its own to
    fail first, as it does when a peer is lost): the others gave up
    waiting for it."""
    phase = self.phase
    if (phase is None or
        time.monotonic() - phase[0] <= self.step_bound + self.timeout or
        any(self._state[n] != "gone" for n, _, _ in self._peers)):
      return
    from logreg_tf import cli
    from logreg_tf.train import PROG
    began, epoch, last_checkpoint = phase
    name = self.cluster.name
    error = WorkerError.during(
        name, f"no progress from {name} (this worker) for "
        f"{time.monotonic() - began:.0f} s", epoch, last_checkpoint(),
        why=": the others stopped waiting for it")
    status = cli.report(PROG, error)
    sys.stderr.flush()
    os._exit(status)  # the training thread does not return to say it

  def _watch(self) -> None:
    import tensorflow as tf
    from tensorflow.python.eager import context
    while not self._stop.wait(self.timeout / 2):
      self._end_if_left_behind()
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
