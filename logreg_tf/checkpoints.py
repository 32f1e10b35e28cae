"""Checkpoints that resume a run exactly, and refuse one of another run.

A checkpoint holds the weights, the optimizer's step count, the epoch reached,
the last train loss and the run's spec: what the model is (dataset, input
shape, classes, outputs, bias) and how it was trained. The spec travels inside
the checkpoint, so it can never disagree with the weights. The shuffle order
of every later epoch follows from the spec's seed and the epoch.

TensorFlow writes each checkpoint under temporary names and then updates the
`checkpoint` state file atomically: a crash while saving leaves the previous
checkpoint the latest. If the latest is unreadable anyway, the previous ones
are tried in turn.
"""

import json
from typing import Optional

from absl import logging
import numpy as np
import tensorflow as tf

from logreg_tf.errors import UserError

_SPEC_KEY = "spec/.ATTRIBUTES/VARIABLE_VALUE"
# Must match for a resume at all: what the weights mean.
DATA_FIELDS = ("dataset", "image_shape")
MODEL_FIELDS = ("classes", "num_outputs", "use_bias")
# May differ, but then the run no longer equals one done in one go.
TRAINING_FIELDS = ("dataset_version", "learning_rate", "lr_schedule",
                   "num_epochs", "batch_size", "seed", "l2", "init")


def run_spec(config, info, outputs: int) -> dict:
  """What the checkpoint says of the run: from its config and its data."""
  return {
      "dataset": info.name, "dataset_version": info.version,
      "image_shape": list(info.image_shape),
      "classes": list(info.class_names), "num_outputs": outputs,
      **{k: getattr(config, k) for k in TRAINING_FIELDS + MODEL_FIELDS
         if hasattr(config, k) and k != "classes"},
  }


def _describe_data(spec: dict) -> str:
  shape = "x".join(map(str, spec.get("image_shape") or ()))
  return f"{spec.get('dataset')} ({shape} images)"


def _describe_model(spec: dict) -> str:
  classes = ",".join(map(str, spec["classes"] or ()))
  bias = "bias" if spec["use_bias"] else "no bias"
  return f"classes {classes}, {spec['num_outputs']} outputs, {bias}"


class Checkpointer:
  """Saves and restores one run's state in the model directory."""

  def __init__(self, directory: str, model, optimizer, spec: dict,
               keep: int):
    self.spec = spec
    self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
    self._model = model
    self._optimizer = optimizer
    # Of the optimizer only its step count: a rate given on the command line
    # is never overwritten by a saved one.
    self._checkpoint = tf.train.Checkpoint(
        model=model, optimizer=tf.train.Checkpoint(
            iterations=optimizer.iterations),
        epoch=self.epoch, spec=tf.Variable(json.dumps(spec, sort_keys=True)))
    self._manager = tf.train.CheckpointManager(
        self._checkpoint, directory, max_to_keep=keep)

  def track(self, **trackables) -> None:
    """Adds more state (e.g. the last epoch's train loss) to the checkpoint."""
    for name, value in trackables.items():
      setattr(self._checkpoint, name, value)

  @property
  def latest(self) -> Optional[str]:
    return self._manager.latest_checkpoint

  def _candidates(self):
    """Checkpoint prefixes, newest first."""
    return list(reversed(self._manager.checkpoints))

  def restore(self) -> int:
    """Restores the newest readable checkpoint; returns its epoch (0: none)."""
    for path in self._candidates():
      try:
        saved = json.loads(tf.train.load_checkpoint(path).get_tensor(_SPEC_KEY))
      except (tf.errors.OpError, ValueError) as e:
        logging.warning("checkpoint %s is unreadable (%s); trying an older one",
                        path, str(e).splitlines()[0] if str(e) else e)
        continue
      self._check_compatible(saved, path)
      self._checkpoint.restore(path).assert_existing_objects_matched()
      logging.info("resuming from %s at epoch %d (global step %d)", path,
                   int(self.epoch), int(self._optimizer.iterations))
      return int(self.epoch)
    return 0

  def _check_compatible(self, saved: dict, path: str) -> None:
    for fields, what, verb, describe in (
        (DATA_FIELDS, "dataset", "trains on", _describe_data),
        (MODEL_FIELDS, "run", "has", _describe_model)):
      if any(saved.get(k) != self.spec[k] for k in fields):
        raise UserError(
            f"--model_dir holds a checkpoint of another {what} ({path}: "
            f"{describe(saved)}) but this run {verb} {describe(self.spec)}; "
            "use another --model_dir, or --fresh to start over there")
    fields = TRAINING_FIELDS
    if saved.get("lr_schedule") == self.spec["lr_schedule"] == "constant":
      fields = tuple(k for k in fields if k != "num_epochs")  # no schedule
    changed = [f"{k} {saved.get(k)} -> {self.spec[k]}" for k in fields
               if saved.get(k) != self.spec[k]]
    if changed:
      logging.warning("resuming with other settings than the checkpoint "
                      "(%s): the result will not equal a run done in one go",
                      ", ".join(changed))

  def save(self, epoch: int) -> str:
    """Saves at `epoch`; refuses to write non-finite weights."""
    for v in self._model.trainable_variables:
      if not np.all(np.isfinite(v.numpy())):
        raise ValueError(f"refusing to checkpoint non-finite {v.name}")
    self.epoch.assign(epoch)
    path = self._manager.save(checkpoint_number=epoch)
    logging.info("saved checkpoint %s", path)
    return path
