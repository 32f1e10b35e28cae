"""train_and_evaluate: load data, build the model, run the train/eval loop."""

import math
from typing import Dict

from absl import logging
import tensorflow as tf

from logreg_tf import data
from logreg_tf.config import Config
from logreg_tf.errors import DivergenceError
from logreg_tf.model import LinearModel, head_for
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
  return {"test_loss": float(loss),
          "test_accuracy": int(correct) / int(tf.shape(y)[0])}


def train_and_evaluate(config: Config) -> Dict[str, float]:
  """Trains per `config` and returns the metrics of the last epoch."""
  mnist = data.select_classes(data.load(config.data_dir, config.idx_dir),
                              config.classes)
  logging.info("data: %s, %d train and %d test examples, classes %s",
               mnist.source, len(mnist.train_labels), len(mnist.test_labels),
               "all" if config.classes is None else config.classes)
  x_train = data.to_features(mnist.train_images)
  y_train = tf.constant(mnist.train_labels)
  x_test = data.to_features(mnist.test_images)
  y_test = tf.constant(mnist.test_labels)

  _, _, steps = build(config, len(mnist.train_labels))
  reporter = Reporter(config.model_dir, config.num_epochs)
  reporter.hparams(config)
  metrics = {}
  try:
    for epoch in range(1, config.num_epochs + 1):
      loss, taken, ok = steps.train_epoch(x_train, y_train,
                                          tf.constant(epoch, tf.int64))
      if not ok:
        raise DivergenceError(
            f"training diverged at epoch {epoch}, step {int(taken)}: "
            f"non-finite loss or weights (loss {float(loss)})")
      if epoch % config.display_step == 0 or epoch == config.num_epochs:
        metrics = {"epoch": epoch, "train_loss": float(loss),
                   **evaluate(steps, x_test, y_test)}
        reporter.report(epoch, metrics)
  finally:
    reporter.close()
  return metrics
