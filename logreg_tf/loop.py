"""train_and_evaluate: load data, build the model, run the train/eval loop."""

import math
import os
from typing import Dict, Optional

from absl import logging
import tensorflow as tf

from logreg_tf import checkpoints, data
from logreg_tf.config import Config
from logreg_tf.errors import DivergenceError, UserError
from logreg_tf.interrupts import Interrupted, StopRequest
from logreg_tf.model import LinearModel, head_for
from logreg_tf.runinfo import RunInfo, describe
from logreg_tf.steps import SGD, Steps
from logreg_tf.summaries import Reporter


def steps_per_epoch(num_examples: int, batch_size) -> int:
  if batch_size is None or batch_size >= num_examples:
    return 1
  return math.ceil(num_examples / batch_size)


def build(config: Config, num_train: int):
  """The model, optimizer and compiled steps for a config."""
  model = LinearModel(data.NUM_FEATURES, config.num_outputs,
                      use_bias=config.use_bias, init=config.init,
                      seed=config.seed)
  per_epoch = steps_per_epoch(num_train, config.batch_size)
  optimizer = SGD(config.learning_rate, config.lr_schedule,
                  total_steps=config.num_epochs * per_epoch)
  batch = None if per_epoch == 1 else config.batch_size
  steps = Steps(model, head_for(config.num_outputs), optimizer,
                l2=config.l2, batch_size=batch, seed=config.seed)
  return model, optimizer, steps


def evaluate(steps: Steps, x, y) -> Dict[str, float]:
  loss, correct = steps.eval_step(x, y)
  return _test_metrics(loss, correct, y)


def _test_metrics(loss, correct, y) -> Dict[str, float]:
  return {"test_loss": float(loss),
          "test_accuracy": int(correct) / int(y.shape[0])}


def _prepare_model_dir(config: Config) -> None:
  try:
    if config.fresh:
      checkpoints.clear(config.model_dir)
    os.makedirs(config.model_dir, exist_ok=True)
  except OSError as e:
    raise UserError(f"--model_dir={config.model_dir!r}: {e.strerror}") from e


def _diverged(epoch, taken, loss, steps, ckpt) -> DivergenceError:
  last = ckpt.latest if ckpt else None
  return DivergenceError(
      f"training diverged at epoch {epoch}, step {int(taken)} of the epoch "
      f"(global step {int(steps.optimizer.iterations)}): loss {float(loss)} "
      f"or a weight is not finite; last good checkpoint: {last or 'none'}; "
      "try a smaller --learning_rate")


class _Run:
  """One invocation's state: data tensors, steps, outputs."""

  def __init__(self, config, tensors, steps, reporter, ckpt, stop):
    self.config, self.steps = config, steps
    self.reporter, self.ckpt, self.stop = reporter, ckpt, stop
    self.x_train, self.y_train, self.x_test, self.y_test = tensors
    self.train_loss = tf.Variable(float("nan"), trainable=False)

  def log(self, epoch: int, test_metrics=None) -> Dict[str, float]:
    if test_metrics is None:
      test_metrics = evaluate(self.steps, self.x_test, self.y_test)
    metrics = {"epoch": epoch, "train_loss": float(self.train_loss),
               **test_metrics}
    self.reporter.report(epoch, metrics)
    return metrics

  def train(self, epoch: int, display: bool):
    """One epoch; with `display`, the test evaluation in the same call."""
    epoch_t = tf.constant(epoch, tf.int64)
    if not display:
      return (*self.steps.train_epoch(self.x_train, self.y_train, epoch_t),
              None)
    loss, taken, ok, test_loss, correct = self.steps.train_epoch_and_eval(
        self.x_train, self.y_train, epoch_t, self.x_test, self.y_test)
    return loss, taken, ok, _test_metrics(test_loss, correct, self.y_test)

  def epochs(self, start: int) -> Dict[str, float]:
    c = self.config
    if start >= c.num_epochs:
      logging.info("the checkpoint is at the last epoch (%d): nothing to train",
                   start)
      return self.log(start)
    metrics = {}
    for epoch in range(start + 1, c.num_epochs + 1):
      last = epoch == c.num_epochs
      display = epoch % c.display_step == 0 or last
      loss, taken, ok, test_metrics = self.train(epoch, display)
      if not ok:
        raise _diverged(epoch, taken, loss, self.steps, self.ckpt)
      self.train_loss.assign(loss)
      if display:
        metrics = self.log(epoch, test_metrics)
      saved = self.ckpt and (epoch % c.checkpoint_every == 0 or last)
      if saved:
        self.ckpt.save(epoch)
      if self.stop is not None and self.stop.signum is not None:
        if self.ckpt and not saved:
          self.ckpt.save(epoch)
        raise Interrupted(self.stop.signum, self.ckpt and self.ckpt.latest)
    return metrics


def train_and_evaluate(config: Config,
                       stop: Optional[StopRequest] = None) -> Dict[str, float]:
  """Trains per `config` and returns the metrics of the last epoch.

  With `config.model_dir`, resumes from the latest checkpoint there, saves
  every `checkpoint_every` epochs and at the end, and keeps run.json. `stop`
  (set by a signal handler) ends the run after the current step, saved.
  """
  mnist = data.select_classes(
      data.load(config.data_dir, config.idx_dir, config.cache_dir),
      config.classes)
  logging.info("data: %s, %d train and %d test examples, classes %s",
               mnist.source, len(mnist.train_labels), len(mnist.test_labels),
               "all" if config.classes is None else config.classes)
  dataset = describe(mnist) if config.model_dir else None
  tensors = (data.to_features(mnist.train_images),
             data.to_labels(mnist.train_labels),
             data.to_features(mnist.test_images),
             data.to_labels(mnist.test_labels))
  num_train = len(mnist.train_labels)
  del mnist  # the uint8 copy is no longer needed
  model, optimizer, steps = build(config, num_train)
  ckpt, info, start = None, None, 0
  if config.model_dir:
    _prepare_model_dir(config)
    ckpt = checkpoints.Checkpointer(config.model_dir, model, optimizer, config)
  run = _Run(config, tensors, steps,
             Reporter(config.model_dir, config.num_epochs), ckpt, stop)
  if ckpt:
    ckpt.track(train_loss=run.train_loss)
    start = ckpt.restore()
    info = RunInfo(config.model_dir, config, dataset, model.kernel.device,
                   start)
  if start == 0:
    run.reporter.hparams(config)
  try:
    metrics = run.epochs(start)
  except (DivergenceError, Interrupted) as e:
    if info:
      info.finish("diverged" if isinstance(e, DivergenceError)
                  else "interrupted", error=str(e))
    raise
  finally:
    run.reporter.close()
  if info:
    info.finish("completed", metrics)
  return metrics
