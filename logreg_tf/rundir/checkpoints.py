"""Checkpoints that resume a run exactly, and refuse one of another run.

A checkpoint holds the weights, the optimizer's step count, the epoch reached,
the last train loss and the run's spec (config.describe): what the model is
(dataset, input shape, classes, outputs, bias) and how it was trained; the
splits it names are where evaluate and export find the data. The spec travels inside
the checkpoint, so it can never disagree with the weights. The shuffle order
of every later epoch follows from the spec's seed and the epoch.

A save copies the variables and a background thread writes them, so
training does not wait for the disk. TensorFlow writes each checkpoint under
temporary names and then updates the
`checkpoint` state file atomically; a save is reported only once its files,
the state file and the directory are flushed to disk. A checkpoint torn
anyway (by a power loss before that flush, or a damaged disk) is found by
its checksums and skipped for the newest intact one (ckpt_files.py).
"""

import concurrent.futures
import json
import os
from typing import Optional

from absl import logging
import numpy as np
import tensorflow as tf

from logreg_tf.rundir import files as ckpt_files, durable
from logreg_tf.errors import StorageError, UserError, reason
from logreg_tf.rundir.snapshot import Snapshot

# Must match for a resume at all: what the weights mean.
DATA_FIELDS = ("dataset", "image_shape")
MODEL_FIELDS = ("classes", "num_outputs", "use_bias", "solver")
# May differ, but then the run no longer equals one done in one go.
TRAINING_FIELDS = ("dataset_version", "learning_rate", "lr_schedule",
                   "num_epochs", "batch_size", "seed", "l2", "init")
SOLVER_FIELDS = ("dataset_version", "seed", "l2", "init", "tol", "max_iter")
# Checkpoints written before a field existed hold its default then.
OLD_DEFAULTS = {"solver": "sgd"}


def _field(spec: dict, key: str):
  return spec.get(key, OLD_DEFAULTS.get(key))


def _describe_data(spec: dict) -> str:
  shape = "x".join(map(str, spec.get("image_shape") or ()))
  return f"{spec.get('dataset')} ({shape} images)"


def _describe_model(spec: dict) -> str:
  classes = ",".join(map(str, spec["classes"] or ()))
  bias = "bias" if spec["use_bias"] else "no bias"
  return (f"classes {classes}, {spec['num_outputs']} outputs, {bias}, "
          f"solver {_field(spec, 'solver')}")


def model_variables(model) -> dict:
  """The checkpoint's names for a model's variables (its layout)."""
  out = {"model/kernel": model.kernel}
  if model.bias is not None:
    out["model/bias"] = model.bias
  return out


class Checkpointer:
  """Saves and restores one run's state in MODEL_DIR/checkpoints."""

  def __init__(self, model_dir, model, optimizer, spec: dict, keep: int,
               extra: Optional[dict] = None):
    """`spec` is the run's description (config.describe); `extra` more
    variables to keep (the last epoch's train loss)."""
    self.spec = spec
    self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
    self._model_dir = model_dir
    self._directory = model_dir.checkpoints
    self._model = model
    self._optimizer = optimizer
    self._keep = keep
    self._manager = None  # made by restore(), once the state file is sound
    self._last_good: Optional[str] = None
    # Of the optimizer only its step count: a rate given on the command line
    # is never overwritten by a saved one.
    self._live = {**model_variables(model),
                  "optimizer/iterations": optimizer.iterations,
                  "epoch": self.epoch,
                  "spec": tf.Variable(json.dumps(spec, sort_keys=True)),
                  **(extra or {})}
    self._snapshot = None  # made at the first restore or save
    self._writer = concurrent.futures.ThreadPoolExecutor(
        1, thread_name_prefix="checkpoint")
    self._pending = None  # the save being written, a Future

  def _checkpoint(self) -> tf.train.Checkpoint:
    if self._snapshot is None:
      self._snapshot = Snapshot(self._live)
    return self._snapshot.checkpoint

  @property
  def latest(self) -> Optional[str]:
    """The newest checkpoint known to be intact: restored or saved here."""
    return self._last_good

  def restore(self) -> int:
    """Restores the newest intact checkpoint; returns its epoch (0: none).

    A damaged one is named in the log with its reason and skipped for an
    older one. When checkpoints exist but none is intact, raises UserError
    and deletes nothing.
    """
    self._prepare_directory()
    damaged = []
    candidates = ckpt_files.candidates(self._directory)
    for i, path in enumerate(candidates):
      saved, problem = ckpt_files.verify(path)
      if problem is None:
        self._check_compatible(saved, path)
        try:
          self._checkpoint().restore(path).assert_existing_objects_matched()
          self._snapshot.apply()
        except (tf.errors.OpError, ValueError, AssertionError) as e:
          problem = str(e).strip().splitlines()[0]
      if problem is not None:
        logging.warning("checkpoint %s is damaged (%s); falling back to an "
                        "older one", path, problem)
        damaged.append(f"{os.path.basename(path)} ({problem})")
        continue
      if damaged or not os.path.exists(ckpt_files.state_path(
          self._directory)):
        ckpt_files.point_state_at(self._directory, path,
                                  list(reversed(candidates[i + 1:])))
      self._start_manager()
      self._last_good = path
      logging.info("resuming from %s at epoch %d (global step %d)", path,
                   int(self.epoch),
                   int(self._optimizer.iterations.numpy()))
      return int(self.epoch)
    if damaged:
      raise UserError(
          f"no intact checkpoint in {self._directory}: {'; '.join(damaged)}."
          " Nothing was deleted; start over there with --fresh (it deletes "
          "them), or use another --model_dir")
    self._start_manager()
    return 0

  def _prepare_directory(self) -> None:
    os.makedirs(self._directory, exist_ok=True)
    ckpt_files.check_state_file(self._directory)

  def _start_manager(self) -> None:
    self._manager = tf.train.CheckpointManager(
        self._checkpoint(), self._directory, max_to_keep=self._keep,
        checkpoint_name=ckpt_files.PREFIX)

  def _check_compatible(self, saved: dict, path: str) -> None:
    for fields, what, verb, describe in (
        (DATA_FIELDS, "dataset", "trains on", _describe_data),
        (MODEL_FIELDS, "run", "has", _describe_model)):
      if any(_field(saved, k) != self.spec[k] for k in fields):
        raise UserError(
            f"--model_dir holds a checkpoint of another {what} ({path}: "
            f"{describe(saved)}) but this run {verb} {describe(self.spec)}; "
            "use another --model_dir, or --fresh to start over there")
    fields = TRAINING_FIELDS if self.spec["solver"] == "sgd" else SOLVER_FIELDS
    if saved.get("lr_schedule") == self.spec["lr_schedule"] == "constant":
      fields = tuple(k for k in fields if k != "num_epochs")  # no schedule
    changed = [f"{k} {saved.get(k)} -> {self.spec[k]}" for k in fields
               if saved.get(k) != self.spec[k]]
    if changed:
      logging.warning("resuming with other settings than the checkpoint "
                      "(%s): the result will not equal a run done in one go",
                      ", ".join(changed))

  def save(self, epoch: int) -> str:
    """Starts saving at `epoch`; returns the checkpoint's prefix.

    The variables are copied at once and written by a background thread
    while training goes on; the log says "saved" only once the files, the
    state file and the directory are flushed to disk. Refuses non-finite
    weights. `wait()` ends a pending save, raising its StorageError.
    """
    self.wait()
    for v in self._model.trainable_variables:
      if not np.all(np.isfinite(v.numpy())):
        raise ValueError(f"refusing to checkpoint non-finite {v.name}")
    self.epoch.assign(epoch)
    if self._manager is None:  # saving without a restore: a new directory
      self._prepare_directory()
      self._start_manager()
    self._snapshot.capture()
    prefix = os.path.join(self._directory, f"{ckpt_files.PREFIX}-{epoch}")
    self._pending = self._writer.submit(self._write, epoch, prefix)
    return prefix

  def wait(self) -> None:
    """Waits for the pending save; StorageError if it failed."""
    pending, self._pending = self._pending, None
    if pending is not None:
      pending.result()

  def _write(self, epoch: int, prefix: str) -> None:
    """In the background: a save that fails (full disk, quota, I/O error,
    read-only file system) removes what it left and raises StorageError
    naming the path, the reason and the last good checkpoint."""
    try:
      path = self._manager.save(checkpoint_number=epoch)
      durable.sync_files(ckpt_files.files_of(path)
                         + [ckpt_files.state_path(self._directory)])
    except (tf.errors.OpError, OSError) as e:
      self._model_dir.remove_partial_saves()
      raise StorageError(
          f"could not save checkpoint {prefix}: {reason(e)}; last "
          f"good checkpoint: {self._last_good or 'none'}") from e
    self._last_good = path
    logging.info("saved checkpoint %s", path)
