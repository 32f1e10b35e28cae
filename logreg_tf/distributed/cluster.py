"""What the workers of a cluster do together around the training loop.

Every worker runs the same epochs and so the same collectives; the chief
alone reads and writes --model_dir. So that they stay in step:
- `check_same_run`: at the start, every worker has the same config and data;
- `sync`: the chief's state (the checkpoint it resumed, or its fresh start)
  is broadcast to every worker;
- `stop_asked`: after each epoch, a stop signal at any worker stops all of
  them after that same epoch;
- `failures`: a collective that fails (a worker lost) becomes one line
  naming the worker and the last good checkpoint.
In a single process every one of these is a pass-through.
"""

import contextlib
import dataclasses
import json
from typing import Optional
import zlib

from absl import logging
import tensorflow as tf

from logreg_tf.errors import StorageError, UserError
from logreg_tf.rundir.workdir import ModelDir


class Together:
  """The collective side of one run; `placement` None means one process."""

  def __init__(self, placement, steps, model_dir: Optional[str],
               checkpointer):
    self._cluster = (placement if placement and placement.num_workers > 1
                     else None)
    self.is_chief = placement is None or placement.is_chief
    self._steps = steps
    self._model_dir = model_dir
    self._checkpointer = checkpointer  # () -> the chief's Checkpointer

  @property
  def saved_elsewhere(self) -> Optional[str]:
    """What a worker without checkpoints says it saved when stopped."""
    return None if self._cluster is None else "nothing here (the chief saves)"

  def check_same_run(self, config, info, num_train: int,
                     num_test: int) -> None:
    if self._cluster is None:
      return
    what = json.dumps([dataclasses.asdict(config), info.name,
                       list(info.image_shape), list(info.class_names),
                       num_train, num_test], sort_keys=True)
    with self.failures(0):
      same = self._steps.same_everywhere(zlib.crc32(what.encode()))
    if not same:
      raise UserError("the workers were started with different flags or "
                      "data (dataset, classes, splits, hyperparameters); "
                      "give every worker the same")

  def sync(self, start: int, *more_state: tf.Variable) -> int:
    """Every worker takes the chief's weights, step count, `more_state`
    and start epoch; returns that epoch."""
    if self._cluster is None:
      return start
    epoch = tf.Variable(start, dtype=tf.int64, trainable=False)
    steps = self._steps
    with self.failures(start):
      steps.broadcast(steps.model.trainable_variables + [
          steps.optimizer.iterations, *more_state, epoch])
    return int(epoch.numpy())

  def stop_asked(self, here: bool) -> bool:
    """A stop signal here, or (in a cluster) at any worker."""
    return self._steps.agree(here) if self._cluster else here

  @contextlib.contextmanager
  def failures(self, epoch: int):
    """In a cluster, a failed collective becomes WorkerError."""
    try:
      yield
    except tf.errors.OpError as e:
      if self._cluster is None:
        raise
      raise self._cluster.lost_worker(e, epoch,
                                      self._last_checkpoint()) from e

  def _last_checkpoint(self) -> Optional[str]:
    """The chief's newest checkpoint: its own record, or (on another
    worker) what --model_dir shows when this worker can read it."""
    ckpt = self._checkpointer()
    if ckpt:
      try:
        ckpt.wait()
      except StorageError as e:
        logging.warning("%s", e)
      return ckpt.latest
    if self._model_dir:
      try:
        return tf.train.latest_checkpoint(ModelDir(self._model_dir).checkpoints)
      except (tf.errors.OpError, OSError):
        pass
    return None
