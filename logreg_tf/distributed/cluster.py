"""What the workers of a cluster do together around the training loop.

Every worker runs the same epochs and so the same collectives; the chief
alone reads and writes --model_dir. So that they stay in step:
- `check_same_run`: at the start, every worker has the same run and data;
- `sync`: the chief's state (the checkpoint it resumed, or its fresh start)
  is broadcast to every worker;
- `stop_asked`: after each epoch, a stop signal at any worker stops all of
  them after that same epoch;
- `failures`: a collective that fails (a worker lost, frozen or stuck)
  becomes one line naming the worker and the last good checkpoint.
The collectives are all-reduces over the strategy's replicas. With one
worker (mirrored devices) each of these passes through, as loop.OneProcess.
How long each waits for the others (placement.STEP_BOUND, PHASE_BOUND): the
first ones, while workers may still be loading their data, without bound;
`stop_asked`, after each epoch's own work, PHASE_BOUND; the steps' own
all-reduces, the strategy's STEP_BOUND.
"""

import contextlib
import json
import time
from typing import Optional
import zlib

from absl import logging
import tensorflow as tf

from logreg_tf.distributed.placement import PHASE_BOUND
from logreg_tf.distributed.replicated import SUM, first_result
from logreg_tf.errors import StorageError, UserError
from logreg_tf.rundir.workdir import ModelDir


class Collectives:
  """All-reduces by which the replicas of a strategy agree."""

  def __init__(self, strategy):
    self.strategy = strategy
    self.replicas = strategy.num_replicas_in_sync
    self._sum = tf.function(self._sum_over_replicas, autograph=False)
    self._broadcast = tf.function(self._broadcast_from_first,
                                  autograph=False)

  def _sum_over_replicas(self, value, timeout):
    # tf.identity puts the input on the replica's device, which the
    # all-reduce takes for its destination.
    options = _waiting(timeout)
    return first_result(self.strategy, self.strategy.run(
        lambda v: tf.distribute.get_replica_context().all_reduce(
            SUM, tf.identity(v), options=options), args=(value,)))

  def agree(self, flag: bool, timeout: float = 0) -> bool:
    """True on every worker when any worker passes True. Each collective
    here waits for the others `timeout` seconds (0: without bound)."""
    return float(self._sum(tf.constant(float(flag), tf.float64),
                           float(timeout))) > 0

  def same_everywhere(self, number: int) -> bool:
    """Whether every replica passed the same integer (< 2**40)."""
    number %= 2 ** 40
    total = float(self._sum(tf.constant(float(number), tf.float64), 0.0))
    return total == float(number) * self.replicas

  def _broadcast_from_first(self, values):
    def replica_fn(values):
      ctx = tf.distribute.get_replica_context()
      first = tf.equal(ctx.replica_id_in_sync_group, 0)
      # x + 0 + ... + 0 is x to the bit: the sum is a broadcast.
      return ctx.all_reduce(SUM, [tf.where(first, v, tf.zeros_like(v))
                                  for v in values], options=_waiting(0))
    return first_result(self.strategy,
                        self.strategy.run(replica_fn, args=(values,)))

  def broadcast(self, variables) -> None:
    """Sets every worker's `variables` to replica 0's (the chief's) values:
    a resumed checkpoint, which only the chief reads."""
    values = [tf.convert_to_tensor(v) for v in variables]
    # One dtype for one all-reduce; float64 holds every int64 step count
    # below 2**53 and every float32 exactly.
    wide = [tf.cast(v, tf.float64) for v in values]
    for variable, value, out in zip(variables, values,
                                    self._broadcast(wide)):
      variable.assign(tf.cast(out, value.dtype))


def _waiting(timeout: float):
  """Options for an all-reduce that waits `timeout` s for the others (0:
  without bound) instead of the strategy's step bound."""
  return tf.distribute.experimental.CommunicationOptions(
      timeout_seconds=timeout)


class Together:
  """The collective side of one run under a placement (placement.py)."""

  def __init__(self, placement, steps, model_dir: Optional[str]):
    self._placement = placement if placement.num_workers > 1 else None
    self.is_chief = placement.is_chief
    self._steps = steps
    self._model_dir = model_dir
    self._collectives = Collectives(placement.strategy)
    self._watchdog = placement.watchdog if self._placement else None
    self._phase_bound = (PHASE_BOUND * self._watchdog.timeout
                         if self._watchdog else 0)

  @property
  def saved_elsewhere(self) -> Optional[str]:
    """What a worker without checkpoints says it saved when stopped."""
    return None if self._placement is None else (
        "nothing here (the chief saves)")

  def check_same_run(self, description: dict, num_train: int,
                     num_test: int) -> None:
    """`description` is config.describe(config, info)."""
    if self._placement is None:
      return
    what = json.dumps([description, num_train, num_test], sort_keys=True)
    with self.failures(0):
      same = self._collectives.same_everywhere(zlib.crc32(what.encode()))
    if not same:
      raise UserError("the workers were started with different flags or "
                      "data (dataset, classes, splits, hyperparameters); "
                      "give every worker the same")

  def sync(self, start: int, *more_state: tf.Variable) -> int:
    """Every worker takes the chief's weights, step count, `more_state`
    and start epoch; returns that epoch."""
    if self._placement is None:
      return start
    epoch = tf.Variable(start, dtype=tf.int64, trainable=False)
    steps = self._steps
    with self.failures(start):
      self._collectives.broadcast(steps.model.trainable_variables + [
          steps.optimizer.iterations, *more_state, epoch])
    return int(epoch.numpy())

  def stop_asked(self, here: bool) -> bool:
    """A stop signal here, or (in a cluster) at any worker."""
    return (self._collectives.agree(here, self._phase_bound)
            if self._placement else here)

  @contextlib.contextmanager
  def failures(self, epoch: int, outputs=None):
    """In a cluster, a failed collective becomes WorkerError naming the
    last checkpoint of `outputs` (the chief's), or of --model_dir."""
    began = time.monotonic()
    if self._watchdog:  # what it says if the others leave this worker here
      self._watchdog.phase = (began, epoch, lambda: (
          outputs.latest if outputs is not None and outputs.saves
          else self._last_checkpoint(None)))  # never waits for a save
    try:
      yield
    except tf.errors.OpError as e:
      if self._placement is None:
        raise
      raise self._placement.lost_worker(
          e, epoch, self._last_checkpoint(outputs),
          time.monotonic() - began) from e
    finally:
      if self._watchdog:
        self._watchdog.phase = None

  def _last_checkpoint(self, outputs) -> Optional[str]:
    """The chief's newest checkpoint: its own record, or (on another
    worker) what --model_dir shows when this worker can read it."""
    if outputs is not None and outputs.saves:
      try:
        outputs.wait()
      except StorageError as e:
        logging.warning("%s", e)
      return outputs.latest
    if self._model_dir:
      try:
        return tf.train.latest_checkpoint(ModelDir(self._model_dir).checkpoints)
      except (tf.errors.OpError, OSError):
        pass
    return None
