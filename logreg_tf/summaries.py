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


def format_line(epoch: int, num_epochs: int, metrics: Dict[str, float]) -> str:
  width = len(str(num_epochs))
  fields = "  ".join(f"{k} {metrics[k]:.4f}" for k in TAGS)
  return f"epoch {epoch:>{width}}/{num_epochs}  {fields}"


class Reporter:
  """Writes metrics to the log and, when model_dir is set, to TensorBoard."""

  def __init__(self, model_dir: Optional[str], num_epochs: int):
    self.num_epochs = num_epochs
    self._writer = (tf.summary.create_file_writer(model_dir)
                    if model_dir else None)

  def hparams(self, config) -> None:
    """Writes the run's hyperparameters once, for TensorBoard's HParams tab."""
    if self._writer is None:
      return
    # Imported here: only runs that write events need the plugin.
    from tensorboard.plugins.hparams import api as hp
    values = {k: (v if isinstance(v, (bool, int, float, str)) else str(v))
              for k, v in dataclasses.asdict(config).items()}
    with self._writer.as_default():
      hp.hparams(values)
      table = "\n".join(f"| {k} | {v} |" for k, v in values.items())
      tf.summary.text("hparams", "| flag | value |\n|---|---|\n" + table,
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
