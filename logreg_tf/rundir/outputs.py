"""What a run writes while it trains, given to `loop.Run` when it is built.

`LogOnly`: the log lines and nothing else (no --model_dir, or a worker other
than the chief, which logs at debug level). `ChiefOutputs`: the whole record
in --model_dir: checkpoints, TensorBoard events, the figures and run.json.
Both have the same methods, so the loop never asks which one it has.
"""

import re
import threading
from typing import Dict

from absl import logging
import tensorflow as tf

from logreg_tf import figures, metrics
from logreg_tf.config import describe
from logreg_tf.errors import (DivergenceError, Interrupted, NoOptimumError,
                              StorageError, WorkerError, reason)
from logreg_tf.rundir import durable
from logreg_tf.rundir.checkpoints import Checkpointer
from logreg_tf.rundir.runinfo import RunInfo
from logreg_tf.rundir.summaries import Reporter, drop_after

# How run.json names each way a run can end early.
_STATUS = ((DivergenceError, "diverged"), (Interrupted, "interrupted"),
           (StorageError, "failed"), (WorkerError, "worker lost"),
           (NoOptimumError, "no finite optimum"))
ENDINGS = tuple(kind for kind, _ in _STATUS)


class LogOnly:
  """The outputs of a run that writes nothing: every call but the log line
  does nothing."""

  saves = False
  latest = None

  def __init__(self, num_epochs: int, log=logging.info):
    self._reporter = Reporter(None, num_epochs, log)

  def restore(self) -> int:
    return 0

  def begin(self, start: int) -> None:
    del start

  def report(self, epoch: int, values: Dict[str, float],
             events: bool = True) -> None:
    self._reporter.report(epoch, values, events)

  def figures_due(self, epoch: int, last: bool) -> bool:
    del epoch, last
    return False

  def draw(self, epoch, model, x_test, y_test) -> None:
    del epoch, model, x_test, y_test

  def save_due(self, epoch: int, last: bool) -> bool:
    del epoch, last
    return False

  def save(self, epoch: int) -> None:
    del epoch

  def wait(self) -> None:
    pass

  def failed(self, error: Exception) -> Exception:
    return error

  def finish(self, final: Dict[str, float], optimization=None) -> None:
    del final, optimization

  def close(self) -> None:
    pass


def _tag(name: str) -> str:
  """A class name as one TensorBoard tag component."""
  return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "class"


def figure_scalars(analysis: metrics.Analysis) -> Dict[str, float]:
  """The scalars that go with the figures: ECE and each class's accuracy
  (its recall: right among that class's examples)."""
  scalars = {"test/ece": analysis.ece}
  for row in analysis.per_class:
    scalars[f"test/accuracy_per_class/{_tag(row['class'])}"] = row["recall"]
  return scalars


class ChiefOutputs:
  """Checkpoints, events, figures and run.json in one locked ModelDir."""

  saves = True

  def __init__(self, model_dir, config, storage, info, dataset_record: dict,
               model, optimizer, train_loss, placement=None, state=None):
    self._dir, self._config, self._storage = model_dir, config, storage
    self._info, self._record = info, dataset_record
    self._placement = placement  # run.json's "placement"; None: one device
    state = state or {}  # more variables to checkpoint (a solver's)
    self._device = model.kernel.value.device
    self._description = describe(config, info)
    self.ckpt = Checkpointer(model_dir, model, optimizer, self._description,
                             storage.keep_checkpoints,
                             extra={"train_loss": train_loss, **state})
    self._reporter = None  # made by begin(), after old events are dropped
    self._run_json = None
    # The figures' matplotlib (0.3 to 0.5 s to import) loads on a thread
    # while the run trains, so that the first draw() finds it loaded. Not a
    # daemon: a run that ends sooner waits for it at exit.
    threading.Thread(target=figures.pyplot, name="import-pyplot").start()

  @property
  def latest(self):
    return self.ckpt.latest

  def restore(self) -> int:
    return self.ckpt.restore()

  def begin(self, start: int) -> None:
    """From epoch `start`: drops the events an interrupted run wrote after
    it, writes run.json, opens the event file; hparams on a new run."""
    try:
      drop_after(self._dir.event_files(), start)
    except (tf.errors.OpError, OSError) as e:
      raise StorageError(f"cannot rewrite TensorBoard events in "
                         f"{self._dir.events}: {reason(e)}") from e
    self._run_json = RunInfo(self._dir.run_json, self._config, self._storage,
                             self._record, self._device, start,
                             self._placement)
    self._reporter = Reporter(self._dir.events, self._config.epochs)
    if start == 0:
      self._reporter.hparams(self._description)

  def report(self, epoch: int, values: Dict[str, float],
             events: bool = True) -> None:
    self._reporter.report(epoch, values, events)

  def figures_due(self, epoch: int, last: bool) -> bool:
    """At the last epoch, and every `figure_every` displayed epochs."""
    every, config = self._storage.figure_every, self._config
    return last or bool(
        every and (epoch // config.display_step) % every == 0)

  def draw(self, epoch: int, model, x_test, y_test) -> None:
    """The figures as PNG files in the model directory and in TensorBoard."""
    info = self._info
    analysis = metrics.analyze(model(x_test).numpy(), y_test.numpy(),
                               info.class_names)
    pngs = figures.draw_all(analysis, model.kernel.numpy(), x_test.numpy(),
                            info.image_shape)
    for name, png in pngs.items():
      durable.write_bytes(self._dir.figure(name), png)
    self._reporter.figures(epoch, pngs, figure_scalars(analysis))
    logging.info("figures at epoch %d in %s; test ECE %.4f", epoch,
                 self._dir.figures, analysis.ece)

  def save_due(self, epoch: int, last: bool) -> bool:
    """Every `checkpoint_every` epochs, and at the last."""
    return last or epoch % self._storage.checkpoint_every == 0

  def save(self, epoch: int) -> None:
    self.ckpt.save(epoch)

  def wait(self) -> None:
    self.ckpt.wait()

  def failed(self, error: Exception) -> Exception:
    """Records how the run ended in run.json; returns the error to raise
    (a failed write names the last good checkpoint)."""
    try:
      self.ckpt.wait()  # a save still being written ends first
    except StorageError as late:
      logging.warning("%s", late)
    if isinstance(error, StorageError) and (
        "last good checkpoint" not in str(error)):
      error = StorageError(f"{error}; last good checkpoint: "
                           f"{self.ckpt.latest or 'none'}")
    if self._run_json is not None:
      self._run_json.record_failure(
          next(status for kind, status in _STATUS if isinstance(error, kind)),
          error)
    return error

  def finish(self, final: Dict[str, float], optimization=None) -> None:
    """run.json's end: the final metrics and how far from the optimum the
    run stopped (solvers/objective.py's certificate)."""
    self._run_json.finish("completed", final, optimization=optimization)

  def close(self) -> None:
    """Best effort: what could not be written was reported when it failed."""
    if self._reporter is not None:
      self._reporter.close()
