"""One log line per display step, and the same scalars in TensorBoard."""

import dataclasses
from typing import Dict, Optional

from absl import logging
import tensorflow as tf

# Log key -> TensorBoard tag. The log line and the event file carry the same.
TAGS = {
    "train_loss": "train/loss",
    "test_loss": "test/loss",
    "test_accuracy": "test/accuracy",
}
# The scalars TensorBoard's HParams table shows for each run (their last
# values: the run's final test metrics).
HPARAM_METRICS = ("test/accuracy", "test/loss")


def format_line(epoch: int, num_epochs: int, metrics: Dict[str, float]) -> str:
  width = len(str(num_epochs))
  fields = "  ".join(f"{k} {metrics[k]:.4f}" for k in TAGS)
  return f"epoch {epoch:>{width}}/{num_epochs}  {fields}"


def hparam_values(config, info) -> Dict[str, object]:
  """What the run is, as TensorBoard hparams: the config and the data."""
  values = {}
  for key, value in dataclasses.asdict(config).items():
    if key == "classes":
      value = ",".join(info.class_names) if value else "all"
    elif key == "batch_size" and value is None:
      value = "full"
    values[key] = value
  values["dataset_version"] = info.version or "none"
  return values


class Reporter:
  """Writes metrics to the log and, given a directory, to TensorBoard."""

  def __init__(self, events_dir: Optional[str], num_epochs: int):
    self.num_epochs = num_epochs
    self._writer = (tf.summary.create_file_writer(events_dir)
                    if events_dir else None)

  def hparams(self, config, info) -> None:
    """Writes the run's hyperparameters once, for TensorBoard's HParams tab."""
    if self._writer is None:
      return
    # Imported here: only runs that write events need the plugin.
    from tensorboard.plugins.hparams import api as hp
    values = hparam_values(config, info)
    with self._writer.as_default():
      hp.hparams_config(
          hparams=[hp.HParam(k) for k in values],
          metrics=[hp.Metric(tag) for tag in HPARAM_METRICS])
      hp.hparams(values)
      table = "\n".join(f"| {k} | {v} |" for k, v in values.items())
      tf.summary.text("hparams", "| hparam | value |\n|---|---|\n" + table,
                      step=0)
    self._writer.flush()

  def report(self, epoch: int, metrics: Dict[str, float]) -> None:
    logging.info(format_line(epoch, self.num_epochs, metrics))
    if self._writer is None:
      return
    with self._writer.as_default(step=epoch):
      for key, tag in TAGS.items():
        tf.summary.scalar(tag, metrics[key])
    self._writer.flush()

  def close(self) -> None:
    if self._writer is not None:
      self._writer.close()
