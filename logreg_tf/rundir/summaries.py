"""One log line per display step, and the same scalars in TensorBoard."""

import contextlib
import os
import struct
from typing import Dict, Iterable, Optional

from absl import logging
import tensorflow as tf

from logreg_tf.rundir import durable
from logreg_tf.errors import StorageError, reason

# Log key -> TensorBoard tag. The log line and the event file carry the same.
TAGS = {
    "train_loss": "train/loss",
    "test_loss": "test/loss",
    "test_accuracy": "test/accuracy",
}
# Logged when present, after the keys above: --validation_split's scores,
# and an exact solver's (solvers/) with the digits a certificate needs.
OPTIONAL_TAGS = {
    "validation_loss": ("validation/loss", ".4f"),
    "validation_accuracy": ("validation/accuracy", ".4f"),
    "objective": ("train/objective", ".10f"),
    "gradient_norm": ("train/gradient_norm", ".3e"),
    "suboptimality_bound": ("train/suboptimality_bound", ".3e"),
}
# The scalars TensorBoard's HParams table shows for each run (their last
# values: the run's final test metrics).
HPARAM_METRICS = ("test/accuracy", "test/loss")


def png_summary(png: bytes) -> tf.Tensor:
  """TensorBoard's image summary of a PNG as it is: [width, height, PNG]
  (what tf.summary.image writes after decoding and encoding the image again:
  0.1 to 0.2 s for the four figures of a run, for the same picture)."""
  if not png.startswith(b"\x89PNG\r\n\x1a\n") or png[12:16] != b"IHDR":
    raise ValueError("not a PNG")
  width, height = struct.unpack(">II", png[16:24])
  return tf.constant([str(width).encode(), str(height).encode(), png])


def format_line(epoch: int, num_epochs: int, metrics: Dict[str, float]) -> str:
  width = len(str(num_epochs))
  fields = [f"{k} {metrics[k]:.4f}" for k in TAGS]
  fields += [f"{k} {metrics[k]:{form}}" for k, (_, form) in OPTIONAL_TAGS.items()
             if k in metrics]
  return f"epoch {epoch:>{width}}/{num_epochs}  " + "  ".join(fields)


# What TensorBoard's HParams tab shows of a run's description (config.describe):
# the config's own fields and the dataset's version; the shapes and class
# indices it also records are facts of the data, not choices.
HPARAMS = ("dataset", "train_split", "test_split", "classes", "learning_rate",
           "lr_schedule", "num_epochs", "display_step", "batch_size", "seed",
           "init", "use_bias", "l2", "solver", "tol", "max_iter",
           "dataset_version")


def hparam_values(description: dict) -> Dict[str, object]:
  """What the run is, as TensorBoard hparams (scalars and strings only)."""
  values = {key: description[key] for key in HPARAMS}
  if description["class_indices"] is None:
    values["classes"] = "all"
  else:
    values["classes"] = ",".join(description["classes"])
  if values["batch_size"] is None:
    values["batch_size"] = "full"
  values["dataset_version"] = values["dataset_version"] or "none"
  return values


def drop_after(event_files: Iterable[str], step: int) -> None:
  """Removes the events of steps after `step` (all of them at step 0).

  A resumed run writes again every epoch after its checkpoint; what the
  interrupted run wrote of those epochs goes first, so TensorBoard shows
  each step once. Each file is replaced atomically (durable.replacing).
  """
  for path in event_files:
    if step == 0:
      os.remove(path)
      continue
    kept, dropped = [], 0
    try:
      for record in tf.data.TFRecordDataset(path):
        event = tf.compat.v1.Event.FromString(record.numpy())
        if event.step > step and event.HasField("summary"):
          dropped += 1
        else:
          kept.append(record.numpy())
    except tf.errors.DataLossError:
      dropped += 1  # a last record cut short by the kill: drop it too
    if not dropped:
      continue
    with durable.replacing(path) as tmp:
      with tf.io.TFRecordWriter(tmp) as writer:
        for record in kept:
          writer.write(record)
    logging.info("TensorBoard: dropped %d events after step %d from %s, to "
                 "be written again", dropped, step, path)


class Reporter:
  """Writes metrics to the log and, given a directory, to TensorBoard."""

  def __init__(self, events_dir: Optional[str], num_epochs: int,
               log=logging.info):
    self.num_epochs = num_epochs
    self._log = log  # a worker other than the chief logs at debug level
    self._events_dir = events_dir
    self._writer = None
    if events_dir:
      with self._storage_errors():
        self._writer = tf.summary.create_file_writer(events_dir)

  @contextlib.contextmanager
  def _storage_errors(self):
    """Turns a failed event write into StorageError naming the directory."""
    try:
      yield
    except (tf.errors.OpError, OSError) as e:
      raise StorageError(f"cannot write TensorBoard events in "
                         f"{self._events_dir}: {reason(e)}") from e

  def hparams(self, description: dict) -> None:
    """Writes the run's hyperparameters once, for TensorBoard's HParams tab."""
    if self._writer is None:
      return
    # Imported here: only runs that write events need the plugin.
    from tensorboard.plugins.hparams import api as hp
    values = hparam_values(description)
    with self._storage_errors(), self._writer.as_default():
      hp.hparams_config(
          hparams=[hp.HParam(k) for k in values],
          metrics=[hp.Metric(tag) for tag in HPARAM_METRICS])
      hp.hparams(values)
      table = "\n".join(f"| {k} | {v} |" for k, v in values.items())
      tf.summary.text("hparams", "| hparam | value |\n|---|---|\n" + table,
                      step=0)
      self._writer.flush()

  def report(self, epoch: int, metrics: Dict[str, float],
             events: bool = True) -> None:
    """The log line; with `events`, the same scalars to TensorBoard."""
    self._log(format_line(epoch, self.num_epochs, metrics))
    if self._writer is None or not events:
      return
    with self._storage_errors(), self._writer.as_default(step=epoch):
      for key, tag in TAGS.items():
        tf.summary.scalar(tag, metrics[key])
      for key, (tag, _) in OPTIONAL_TAGS.items():
        if key in metrics:
          tf.summary.scalar(tag, metrics[key])
      self._writer.flush()

  def figures(self, step: int, pngs: Dict[str, bytes],
              scalars: Dict[str, float]) -> None:
    """The pictures as TensorBoard images (figures/NAME) and their scalars."""
    if self._writer is None:
      return
    from tensorboard.plugins.image import metadata as image_metadata
    with self._storage_errors(), self._writer.as_default(step=step):
      for name, png in pngs.items():
        tf.summary.write(f"figures/{name}", png_summary(png),
                         metadata=image_metadata.create_summary_metadata(
                             display_name=None, description=""))
      for tag, value in scalars.items():
        tf.summary.scalar(tag, value)
      self._writer.flush()

  def close(self) -> None:
    """Best effort: what could not be written was reported when it failed."""
    if self._writer is not None:
      try:
        self._writer.close()
      except (tf.errors.OpError, OSError) as e:
        logging.warning("closing the TensorBoard events in %s: %s",
                        self._events_dir, reason(e))
