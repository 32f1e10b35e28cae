"""train_and_evaluate: load data, build the model, run the train/eval loop."""

import contextlib
import functools
import math
import os
import signal
from typing import Dict, Optional

from absl import logging
import tensorflow as tf

from logreg_tf import blocks, data, insight

from logreg_tf.rundir import checkpoints, durable
from logreg_tf.config import RunConfig, Storage
from logreg_tf.distributed.placement import Placement
from logreg_tf.errors import DivergenceError, StorageError, WorkerError
from logreg_tf.interrupts import Interrupted, StopRequest
from logreg_tf.model import head_for, linear_model, num_outputs
from logreg_tf.distributed.replicated import ReplicatedSteps
from logreg_tf.rundir.runinfo import RunInfo, describe
from logreg_tf.steps import EvalResult, Steps, sgd
from logreg_tf.rundir.summaries import Reporter, drop_after
from logreg_tf.distributed.cluster import Together
from logreg_tf.rundir.workdir import ModelDir


def steps_per_epoch(num_examples: int, batch_size) -> int:
  if batch_size is None or batch_size >= num_examples:
    return 1
  return math.ceil(num_examples / batch_size)


def build(config: RunConfig, info, num_train: int,
          placement: Optional[Placement] = None):
  """The model, optimizer and compiled steps for a config and its data:
  steps.Steps on one device, ReplicatedSteps under a strategy (whose scope
  makes the variables mirrored)."""
  strategy = placement.strategy if placement else None
  outputs = num_outputs(info.num_classes)
  per_epoch = steps_per_epoch(num_train, config.batch_size)
  with strategy.scope() if strategy else contextlib.nullcontext():
    model = linear_model(info.num_features, outputs,
                         use_bias=config.use_bias, init=config.init,
                         seed=config.seed)
    optimizer = sgd(config.learning_rate, config.lr_schedule,
                    total_steps=config.num_epochs * per_epoch)
  batch = None if per_epoch == 1 else config.batch_size
  kind = Steps if strategy is None else functools.partial(
      ReplicatedSteps, strategy)
  return kind(model, head_for(outputs), optimizer, l2=config.l2,
              batch_size=batch, seed=config.seed,
              block_rows=blocks.block_rows(info.num_features))


def load_data(config: RunConfig, storage: Storage) -> data.Dataset:
  """The dataset with the config's classes selected, described in the log."""
  loaded = data.load(config, storage)
  info = loaded.info
  logging.info("data: %s %s from %s: %s images, %d classes (%s), splits "
               "%s / %s", info.name, info.version or "", info.source,
               "x".join(map(str, info.image_shape)), info.num_classes,
               ", ".join(info.class_names), info.train_split, info.test_split)
  selected = data.select_classes(
      loaded, data.resolve_classes(info, config.classes))
  logging.info("data: %d train and %d test examples of classes %s",
               len(selected.train_labels), len(selected.test_labels),
               ", ".join(selected.info.class_names))
  return selected


def test_metrics(result: EvalResult, num_test: int) -> Dict[str, float]:
  return {"test_loss": float(result.loss),
          "test_accuracy": int(result.correct) / num_test}


def run_epoch(steps: Steps, tensors, epoch: int, display: bool):
  """One epoch; with `display`, the test evaluation in the same call.

  Returns the EpochResult and the test metrics (None without `display`).
  """
  x, y, x_test, y_test = tensors
  epoch_t = tf.constant(epoch, tf.int64)
  if not display:
    return steps.train_epoch(x, y, epoch_t), None
  result, evaluation = steps.train_epoch_and_eval(x, y, epoch_t, x_test,
                                                  y_test)
  return result, test_metrics(evaluation, int(y_test.shape[0]))


def _diverged(epoch, result, steps, ckpt) -> DivergenceError:
  last = ckpt.latest if ckpt else None
  return DivergenceError(
      f"training diverged at epoch {epoch}, step {int(result.steps)} of the "
      f"epoch (global step {steps.optimizer.iterations.numpy()}): loss "
      f"{float(result.loss)} or a weight is not finite; last good checkpoint:"
      f" {last or 'none'}; try a smaller --learning_rate")


class Run:
  """One invocation's state: data tensors, steps, outputs.

  In a cluster of workers (`placement`), every worker runs the same epochs
  and collectives (together.py); the chief alone has `ckpt`, events and
  figures.
  """

  def __init__(self, config, storage, tensors, steps, stop,
               placement: Optional[Placement] = None):
    self.config, self.storage, self.steps = config, storage, steps
    self.tensors, self.stop, self.placement = tensors, stop, placement
    self.ckpt = None
    self.draw = None  # draw(epoch): the figures, when there is a model_dir
    self.train_loss = tf.Variable(float("nan"), trainable=False)
    self.together = Together(placement, steps, storage.model_dir,
                             lambda: self.ckpt)
    self.reporter = Reporter(None, config.num_epochs, logging.info
                             if self.together.is_chief else logging.debug)

  def log(self, epoch: int, metrics: Optional[Dict[str, float]] = None):
    """The display step's line and scalars; without `metrics`, a report of
    a finished run, evaluated now and only logged (its events exist)."""
    events = metrics is not None
    if metrics is None:
      _, _, x_test, y_test = self.tensors
      metrics = test_metrics(self.steps.eval_step(x_test, y_test),
                             int(y_test.shape[0]))
    metrics = {"epoch": epoch, "train_loss": float(self.train_loss),
               **metrics}
    self.reporter.report(epoch, metrics, events=events)
    return metrics

  def _figures_due(self, epoch: int) -> bool:
    """At the last epoch, and every `figure_every` displayed epochs."""
    every = self.storage.figure_every
    return epoch == self.config.num_epochs or bool(
        every and (epoch // self.config.display_step) % every == 0)

  def epochs(self, start: int) -> Dict[str, float]:
    c = self.config
    if start >= c.num_epochs:
      logging.info("the checkpoint is at the last epoch (%d): nothing to train",
                   start)
      return self.log(start)
    metrics = {}
    for epoch in range(start + 1, c.num_epochs + 1):
      display = c.is_display_epoch(epoch)
      with self.together.failures(epoch):
        result, test = run_epoch(self.steps, self.tensors, epoch, display)
        stopping = self.together.stop_asked(
            self.stop is not None and self.stop.signum is not None)
      if not result.finite:
        if self.ckpt:
          self.ckpt.wait()  # the error names the last checkpoint on disk
        raise _diverged(epoch, result, self.steps, self.ckpt)
      self.train_loss.assign(result.loss)
      if display:
        metrics = self.log(epoch, test)
        if self.draw and self._figures_due(epoch):
          self.draw(epoch)
      saved = self.ckpt and (epoch % self.storage.checkpoint_every == 0
                             or epoch == c.num_epochs)
      if saved:
        self.ckpt.save(epoch)
      if stopping:
        if self.ckpt:
          if not saved:
            self.ckpt.save(epoch)
          self.ckpt.wait()
        signum = (self.stop and self.stop.signum) or signal.SIGTERM
        raise Interrupted(signum, self.ckpt.latest if self.ckpt else
                          self.together.saved_elsewhere)
    if self.ckpt:
      self.ckpt.wait()
    return metrics


_STATUS = ((DivergenceError, "diverged"), (Interrupted, "interrupted"),
           (StorageError, "failed"), (WorkerError, "worker lost"))


def _draw(model_dir: ModelDir, run: Run, info, epoch: int) -> None:
  """The figures as PNG files in the model directory and in TensorBoard."""
  _, _, x_test, y_test = run.tensors
  pngs, scalars = insight.measure_and_draw(run.steps.model, info, x_test,
                                           y_test)
  for name, png in pngs.items():
    durable.write_bytes(model_dir.figure(name), png)
  run.reporter.figures(epoch, pngs, scalars)
  logging.info("figures at epoch %d in %s; test ECE %.4f", epoch,
               os.path.dirname(model_dir.figure("x")), scalars["test/ece"])


def _run_in(model_dir: ModelDir, run: Run, info, record) -> Dict[str, float]:
  """The run with checkpoints, events and run.json in `model_dir`.

  The checkpoint is restored (or refused) before anything is written, and
  events the interrupted run wrote after it are dropped first.
  """
  config, steps = run.config, run.steps
  spec = checkpoints.run_spec(config, info, num_outputs(info.num_classes))
  run.ckpt = checkpoints.Checkpointer(model_dir, steps.model, steps.optimizer,
                                      spec, run.storage.keep_checkpoints)
  run.ckpt.track(train_loss=run.train_loss)
  start = run.together.sync(run.ckpt.restore(), run.train_loss)
  try:
    drop_after(model_dir.event_files(), start)
  except (tf.errors.OpError, OSError) as e:
    raise StorageError(f"cannot rewrite TensorBoard events in "
                       f"{model_dir.events}: {e}") from e
  run_info = RunInfo(model_dir.run_json, config, run.storage, record,
                     steps.model.kernel.value.device, start,
                     run.placement.describe() if run.placement else None)
  run.reporter = Reporter(model_dir.events, config.num_epochs)
  run.draw = lambda epoch: _draw(model_dir, run, info, epoch)
  try:
    if start == 0:
      run.reporter.hparams(config, info)
    metrics = run.epochs(start)
  except tuple(kind for kind, _ in _STATUS) as e:
    try:
      run.ckpt.wait()  # a save still being written ends first
    except StorageError as late:
      logging.warning("%s", late)
    if isinstance(e, StorageError) and "last good checkpoint" not in str(e):
      e = StorageError(f"{e}; last good checkpoint: "
                       f"{run.ckpt.latest or 'none'}")
    run_info.record_failure(
        next(status for kind, status in _STATUS if isinstance(e, kind)), e)
    raise e
  finally:
    run.reporter.close()
  run_info.finish("completed", metrics)
  return metrics


def train_and_evaluate(config: RunConfig, storage: Storage = Storage(),
                       stop: Optional[StopRequest] = None,
                       placement: Optional[Placement] = None
                       ) -> Dict[str, float]:
  """Trains per `config` and returns the metrics of the last epoch.

  With `storage.model_dir`, holds that directory's lock for the whole run,
  resumes from the newest intact checkpoint there, saves every
  `checkpoint_every` epochs and at the end, and keeps run.json. `stop` (set
  by a signal handler) ends the run after the current step, saved. With a
  `placement` (distribute.place), trains on its strategy's replicas; in a
  cluster only the chief writes --model_dir.
  """
  dataset = load_data(config, storage)
  info = dataset.info
  record = describe(dataset) if storage.model_dir else None
  tensors = data.to_tensors(dataset)
  num_train = len(dataset.train_labels)
  del dataset  # the uint8 copy is no longer needed
  run = Run(config, storage, tensors,
            build(config, info, num_train, placement), stop, placement)
  run.together.check_same_run(config, info, num_train,
                              int(tensors[3].shape[0]))
  if not storage.model_dir or not run.together.is_chief:
    # Nothing written: no --model_dir, or a worker other than the chief.
    return run.epochs(run.together.sync(0, run.train_loss))
  model_dir = ModelDir(storage.model_dir)
  with model_dir.locked(storage.fresh):
    return _run_in(model_dir, run, info, record)
