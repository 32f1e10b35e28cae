"""train_and_evaluate: load data, build the model, run the train/eval loop.

A `Run` is built whole: its tensors, its steps, what it writes (an outputs
object from rundir/outputs.py: everything in --model_dir, or the log lines
alone) and what it does together with other workers (`OneProcess` here, or
distributed/cluster.py's `Together`, imported only under a strategy).
"""

import contextlib
import math
import signal
from typing import Dict, Optional

from absl import logging
import tensorflow as tf

from logreg_tf import blocks, data
from logreg_tf.config import RunConfig, Storage, describe
from logreg_tf.errors import DivergenceError, Interrupted
from logreg_tf.interrupts import StopRequest
from logreg_tf.model import head_for, linear_model, num_outputs
from logreg_tf.rundir import outputs as outputs_lib
from logreg_tf.rundir.runinfo import dataset_record
from logreg_tf.rundir.workdir import ModelDir
from logreg_tf.steps import EvalResult, StepFunctions, Steps, sgd


def steps_per_epoch(num_examples: int, batch_size) -> int:
  if batch_size is None or batch_size >= num_examples:
    return 1
  return math.ceil(num_examples / batch_size)


def build(config: RunConfig, info, num_train: int,
          placement=None, streamed: bool = False) -> StepFunctions:
  """The model, optimizer and compiled steps for a config and its data:
  steps.Steps on one device, ReplicatedSteps under a placement's strategy
  (whose scope makes the variables mirrored), an exact solver's SolverSteps
  (solvers/, imported only then) with --solver; for streamed input their
  streamed forms (a solver streams through its objective)."""
  strategy = placement.strategy if placement else None
  outputs = num_outputs(info.num_classes)
  per_epoch = steps_per_epoch(num_train, config.batch_size)
  with strategy.scope() if strategy else contextlib.nullcontext():
    model = linear_model(info.num_features, outputs,
                         use_bias=config.use_bias, init=config.init,
                         seed=config.seed)
    if config.solver != "sgd":
      from logreg_tf.solvers.loop_steps import SolverSteps
      return SolverSteps(config.solver, model, head_for(outputs),
                         l2=config.l2, tol=config.tol,
                         max_iter=config.max_iter)
    optimizer = sgd(config.learning_rate, config.lr_schedule,
                    total_steps=config.num_epochs * per_epoch)
  kwargs = dict(l2=config.l2, seed=config.seed,
                batch_size=None if per_epoch == 1 else config.batch_size,
                block_rows=blocks.block_rows(info.num_features))
  if strategy is not None or streamed:
    # The last epoch: where a replicated run's mini-batch pipeline ends,
    # and past which a streamed one reads no group ahead.
    kwargs["epochs"] = config.epochs
  if strategy is None:
    kind = Steps
    if streamed:
      from logreg_tf.streamed_steps import StreamedSteps as kind
    return kind(model, head_for(outputs), optimizer, **kwargs)
  from logreg_tf.distributed.replicated import ReplicatedSteps as kind
  if streamed:
    from logreg_tf.distributed.streamed import StreamedReplicatedSteps as kind
  return kind(strategy, model, head_for(outputs), optimizer, **kwargs)


def eval_metrics(result: EvalResult, num_examples: int,
                 split: str = "test") -> Dict[str, float]:
  return {f"{split}_loss": float(result.loss),
          f"{split}_accuracy": int(result.correct) / num_examples}


def run_epoch(steps: StepFunctions, tensors, epoch: int, display: bool):
  """One epoch; with `display`, the test evaluation in the same call.

  Returns the EpochResult and the test metrics (None without `display`).
  """
  x, y, x_test, y_test = tensors
  epoch_t = tf.constant(epoch, tf.int64)
  if not display:
    return steps.train_epoch(x, y, epoch_t), None
  result, evaluation = steps.train_epoch_and_eval(x, y, epoch_t, x_test,
                                                  y_test)
  return result, eval_metrics(evaluation, int(y_test.shape[0]))


# The figures of a streamed test split use its first examples: at most
# 10,000 and 64 MB as float32 (10,000 of MNIST, 1,024 of 128x128 images).
FIGURE_SAMPLE, FIGURE_BYTES = 10_000, 64 << 20


def figure_data(x_test, y_test):
  """The test split as tensors for the figures: a streamed one's first
  examples, FIGURE_SAMPLE and FIGURE_BYTES at most (the log says so)."""
  if not hasattr(x_test, "sample"):
    return x_test, y_test
  rows = min(FIGURE_SAMPLE, FIGURE_BYTES // (4 * x_test.features),
             x_test.num_examples)
  if rows < x_test.num_examples:
    logging.info("figures from the first %d of the %d test examples "
                 "(streamed input)", rows, x_test.num_examples)
  return tf.constant(x_test.sample(rows)), y_test[:rows]


class OneProcess:
  """The cluster side of a run in one process: each call passes through."""

  is_chief = True
  saved_elsewhere = None

  def check_same_run(self, description, num_train, num_test) -> None:
    del description, num_train, num_test

  def sync(self, start: int, *state) -> int:
    del state
    return start

  def stop_asked(self, here: bool) -> bool:
    return here

  @contextlib.contextmanager
  def failures(self, epoch, outputs=None):
    del epoch, outputs
    yield


class Run:
  """One invocation: data tensors, steps, outputs, the cluster side.

  In a cluster of workers every worker runs the same epochs and collectives;
  the chief alone has outputs that write.
  """

  def __init__(self, config: RunConfig, tensors, steps: StepFunctions,
               outputs, cluster=None, stop: Optional[StopRequest] = None,
               train_loss: Optional[tf.Variable] = None, validation=None):
    """`validation`: (x, y) of --validation_split, scored at every display
    step, or None."""
    self.config, self.tensors, self.steps = config, tensors, steps
    self.validation = validation
    self.outputs, self.stop = outputs, stop
    self.cluster = cluster or OneProcess()
    self.train_loss = train_loss if train_loss is not None else tf.Variable(
        float("nan"), trainable=False)

  def log(self, epoch: int, test: Optional[Dict[str, float]] = None,
          optimization: Optional[Dict[str, float]] = None,
          events: bool = True):
    """The display step's line and, with `events`, its scalars. `test`: the
    test metrics when the epoch's call measured them (else measured now);
    `optimization`: an exact solver's objective, gradient norm and bound."""
    if test is None:
      _, _, x_test, y_test = self.tensors
      test = eval_metrics(self.steps.eval_step(x_test, y_test),
                          int(y_test.shape[0]))
    metrics = {"epoch": epoch, "train_loss": float(self.train_loss),
               **test, **(optimization or {})}
    if self.validation is not None:
      x_val, y_val = self.validation
      metrics.update(eval_metrics(self.steps.eval_step(x_val, y_val),
                                  int(y_val.shape[0]), "validation"))
    self.outputs.report(epoch, metrics, events=events)
    return metrics

  def _diverged(self, epoch, result) -> DivergenceError:
    self.outputs.wait()  # the error names the last checkpoint on disk
    return DivergenceError(
        f"training diverged at epoch {epoch}, step {int(result.steps)} of "
        f"the epoch (global step {self.steps.optimizer.iterations.numpy()}):"
        f" loss {float(result.loss)} or a weight is not finite; last good "
        f"checkpoint: {self.outputs.latest or 'none'}; try a smaller "
        "--learning_rate")

  def _stopped(self, epoch: int, saved: bool) -> Interrupted:
    if not saved:
      self.outputs.save(epoch)
    self.outputs.wait()
    signum = (self.stop and self.stop.signum) or signal.SIGTERM
    return Interrupted(signum, self.outputs.latest if self.outputs.saves
                       else self.cluster.saved_elsewhere)

  def epochs(self, start: int) -> Dict[str, float]:
    c, out = self.config, self.outputs
    if self.steps.finished:
      logging.info("the solver stopped at iteration %d: nothing to train",
                   start)
      return self.log(start, events=False)  # its events exist
    if start >= c.epochs:
      logging.info("the checkpoint is at the last epoch (%d): nothing to train",
                   start)
      return self.log(start, events=False)  # its events exist
    metrics = {}
    for epoch in range(start + 1, c.epochs + 1):
      display = c.is_display_epoch(epoch)
      with self.cluster.failures(epoch, out):
        result, test = run_epoch(self.steps, self.tensors, epoch, display)
      if not result.finite:
        raise self._diverged(epoch, result)
      self.train_loss.assign(result.loss)
      # The last epoch: the loop's, or an exact solver's stopping rule.
      last = epoch == c.epochs or bool(result.finished)
      if display or last:
        metrics = self.log(epoch, test, result.optimization)
        if out.figures_due(epoch, last):
          out.draw(epoch, self.steps.model, *figure_data(*self.tensors[2:]))
      saved = out.save_due(epoch, last)
      if saved:
        out.save(epoch)
      # In a cluster the workers meet here, after the epoch's own work (the
      # chief's log, figures and checkpoint: a slow disk waits here, under
      # the longer bound, not in the next epoch's steps).
      with self.cluster.failures(epoch, out):
        stopping = self.cluster.stop_asked(
            self.stop is not None and self.stop.signum is not None)
      if stopping:
        raise self._stopped(epoch, saved)
      if last:
        break
    out.wait()
    return metrics

  def train(self) -> Dict[str, float]:
    """Restores (or starts), trains to the last epoch, records the end."""
    start = self.cluster.sync(self.outputs.restore(), self.train_loss)
    self.outputs.begin(start)
    try:
      metrics = self.epochs(start)
    except outputs_lib.ENDINGS as e:
      raise self.outputs.failed(e)
    finally:
      self.steps.close()
      self.outputs.close()
    self.outputs.finish(metrics, self.optimization() if self.outputs.saves
                        else None)
    return metrics

  def optimization(self) -> dict:
    """run.json's "optimization": how far from the optimum the run stopped.
    An exact solver's own record; for SGD the certificate of its weights."""
    if self.config.solver != "sgd":
      return self.steps.solver.record()
    from logreg_tf.solvers.objective import certify
    x, y, _, _ = self.tensors
    return {"solver": "sgd", **certify(self.steps.model, self.steps.head, x,
                                       y, self.config.l2).as_dict(),
            "iterations": int(self.steps.optimizer.iterations.numpy()),
            "converged": None}


def load_in_turn(config: RunConfig, storage: Storage, placement=None):
  """The dataset with its classes selected. In a cluster of workers reading
  TFDS through a cache, the chief loads first, decoding what the cache
  lacks, and the others after it: where they share its cache directory (one
  machine, a shared file system) they map the chief's decoded files instead
  of decoding the same splits again; elsewhere each decodes its own."""
  if (placement is None or placement.num_workers < 2 or storage.idx_dir
      or not storage.cache_dir):
    return data.load_selected(config.data, storage)
  from logreg_tf.distributed.cluster import Collectives
  dataset = (data.load_selected(config.data, storage) if placement.is_chief
             else None)
  if not placement.is_chief:
    logging.info("data: waiting for the chief to load the data first")
  Collectives(placement.strategy).agree(True)  # the chief has its splits
  return dataset or data.load_selected(config.data, storage)


def train_and_evaluate(config: RunConfig, storage: Storage = Storage(),
                       stop: Optional[StopRequest] = None,
                       placement=None) -> Dict[str, float]:
  """Trains per `config` and returns the metrics of the last epoch.

  With `storage.model_dir`, holds that directory's lock for the whole run,
  resumes from the newest intact checkpoint there, saves every
  `checkpoint_every` epochs and at the end, and keeps run.json. `stop` (set
  by a signal handler) ends the run after the current step, saved. With a
  `placement` (distributed.placement.place), trains on its strategy's
  replicas; in a cluster only the chief writes --model_dir.
  """
  dataset = load_in_turn(config, storage, placement)
  info = dataset.info
  record = dataset_record(dataset) if storage.model_dir else None
  input_mode = data.choose_input(storage.input, dataset)
  multiple = blocks.block_rows(info.num_features) or 1
  tensors = (data.to_tensors(dataset) if input_mode == "memory"
             else data.to_streamed(dataset, multiple))
  validation = (data.load_validation(config.data, config.validation_split,
                                     storage, input_mode, multiple)
                if config.validation_split else None)
  num_train = len(dataset.train_labels)
  del dataset  # the uint8 copy is no longer needed
  steps = build(config, info, num_train, placement,
                streamed=input_mode == "stream")
  if placement is None:
    cluster = OneProcess()
  else:
    from logreg_tf.distributed.cluster import Together
    cluster = Together(placement, steps, storage.model_dir)
  cluster.check_same_run(describe(config, info), num_train,
                         int(tensors[3].shape[0]))
  train_loss = tf.Variable(float("nan"), trainable=False)
  make_run = lambda outputs: Run(config, tensors, steps, outputs, cluster,
                                 stop, train_loss, validation)
  if not storage.model_dir or not cluster.is_chief:
    # Nothing written: no --model_dir, or a worker other than the chief.
    return make_run(outputs_lib.LogOnly(
        config.epochs,
        logging.info if cluster.is_chief else logging.debug)).train()
  with ModelDir(storage.model_dir).locked(storage.fresh) as model_dir:
    return make_run(outputs_lib.ChiefOutputs(
        model_dir, config, storage, info, record, steps.model,
        steps.optimizer, train_loss,
        placement.describe() if placement else None, steps.state)).train()
