"""Checkpoints that resume a run exactly, and refuse one of another run.

A checkpoint holds the weights, the optimizer's iteration count, the epoch
reached, the seed (with the epoch it decides every later shuffle) and the run's
spec: what the model is (classes, outputs, bias) and how it was trained. The
spec travels inside the checkpoint, so it can never disagree with the weights.

TensorFlow writes each checkpoint under temporary names and then updates the
`checkpoint` state file atomically: a crash while saving leaves the previous
checkpoint the latest. If the latest is unreadable anyway, the previous ones
are tried in turn.
"""

import json
import os
import shutil
from typing import Optional

from absl import logging
import numpy as np
import tensorflow as tf

from logreg_tf.errors import UserError

SUBDIR = "checkpoints"
_SPEC_KEY = "spec/.ATTRIBUTES/VARIABLE_VALUE"
# Must match for a resume at all: what the weights mean.
MODEL_FIELDS = ("classes", "num_outputs", "use_bias")
# May differ, but then the run no longer equals one done in one go.
TRAINING_FIELDS = ("learning_rate", "lr_schedule", "num_epochs", "batch_size",
                   "seed", "l2", "init")


def run_spec(config) -> dict:
  spec = {k: getattr(config, k) for k in MODEL_FIELDS + TRAINING_FIELDS}
  spec["classes"] = list(spec["classes"]) if spec["classes"] else None
  return spec


def _describe(spec: dict) -> str:
  classes = ",".join(map(str, spec["classes"])) if spec["classes"] else "all"
  bias = "bias" if spec["use_bias"] else "no bias"
  return f"classes {classes}, {spec['num_outputs']} outputs, {bias}"


class Checkpointer:
  """Saves and restores one run's state under MODEL_DIR/checkpoints."""

  def __init__(self, model_dir: str, model, optimizer, config):
    self.directory = os.path.join(model_dir, SUBDIR)
    self.spec = run_spec(config)
    self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
    self.seed = tf.Variable(config.seed, dtype=tf.int64, trainable=False,
                            name="seed")
    self._model = model
    self._checkpoint = tf.train.Checkpoint(
        model=model, optimizer=optimizer, epoch=self.epoch, seed=self.seed,
        spec=tf.Variable(json.dumps(self.spec, sort_keys=True)))
    self._manager = tf.train.CheckpointManager(
        self._checkpoint, self.directory, max_to_keep=config.keep_checkpoints)

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
                   int(self.epoch), int(self._checkpoint.optimizer.iterations))
      return int(self.epoch)
    return 0

  def _check_compatible(self, saved: dict, path: str) -> None:
    if any(saved.get(k) != self.spec[k] for k in MODEL_FIELDS):
      raise UserError(
          f"--model_dir holds a checkpoint of another run ({path}: "
          f"{_describe(saved)}) but this run has {_describe(self.spec)}; use "
          "another --model_dir, or --fresh to start over there")
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
    for v in self._model.weights:
      if not np.all(np.isfinite(v.numpy())):
        raise ValueError(f"refusing to checkpoint non-finite {v.name}")
    self.epoch.assign(epoch)
    path = self._manager.save(checkpoint_number=epoch)
    logging.info("saved checkpoint %s", path)
    return path


def clear(model_dir: str) -> None:
  """--fresh: removes what earlier runs left in model_dir (only our files)."""
  shutil.rmtree(os.path.join(model_dir, SUBDIR), ignore_errors=True)
  for name in os.listdir(model_dir) if os.path.isdir(model_dir) else []:
    if name.startswith("events.out.tfevents.") or name == "run.json":
      os.remove(os.path.join(model_dir, name))
