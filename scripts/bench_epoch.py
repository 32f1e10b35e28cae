"""One displayed epoch of the tutorial protocol, part by part, with a model
directory: what scripts/benchmark.py prints as "itemized".

Each part is timed on logreg_tf's own objects (steps, Reporter,
Checkpointer, the loop's Run); the loop's share is what a whole epoch in
`Run.epochs` costs beyond the parts.
"""

import itertools
import time
import os
import tempfile
from unittest import mock

from absl import logging
import tensorflow as tf

from bench_compute import LR, stats, timed
from logreg_tf import loop
from logreg_tf.rundir import checkpoints, durable
from logreg_tf.config import RunConfig, Storage, describe
from logreg_tf.rundir.outputs import ChiefOutputs
from logreg_tf.rundir.summaries import Reporter
from logreg_tf.rundir.workdir import ModelDir


def _checkpointer(steps, config, info, root, keep=3):
  spec = describe(config, info)
  ckpt = checkpoints.Checkpointer(ModelDir(root), steps.model,
                                  steps.optimizer, spec, keep)
  ckpt.restore()
  return ckpt


def checkpoint_save_ms(info, directory, repeats=30):
  """Per checkpoint save of the model, written and flushed to disk as the
  command does (in its background thread), and the same without the flush
  (what durability costs)."""
  config = RunConfig()
  steps = loop.build(config, info, 1)
  numbers = itertools.count(1)
  out = {}
  os.makedirs(directory, exist_ok=True)
  with tempfile.TemporaryDirectory(dir=directory) as root:
    for name, sync in (("flushed to disk", durable.sync_files),
                       ("not flushed", lambda paths: None)):
      ckpt = _checkpointer(steps, config, info, os.path.join(root, name))
      with mock.patch.object(durable, "sync_files", sync):
        out[name] = stats(timed(lambda c=ckpt: _save_and_wait(c, numbers),
                                repeats))
  return out


def itemize(info, tensors, directory, epochs=60, checkpoint_every=10):
  """Seconds of each part of one displayed epoch (median over `epochs`)."""
  x, y, xt, yt = tensors
  config = RunConfig(learning_rate=LR, num_epochs=epochs)
  steps = loop.build(config, info, int(x.shape[0]))
  epoch = tf.constant(1, tf.int64)
  parts = {
      "train step alone (epoch call)":
          lambda: float(steps.train_epoch(x, y, epoch).loss),
      "evaluation alone": lambda: float(steps.eval_step(xt, yt).loss),
      "train step + evaluation, one call (what the loop runs)":
          lambda: float(steps.train_epoch_and_eval(x, y, epoch, xt,
                                                   yt)[1].loss),
  }
  os.makedirs(directory, exist_ok=True)
  out = {}
  with tempfile.TemporaryDirectory(dir=directory) as root:
    for name, fn in parts.items():
      fn()
      out[name] = stats(timed(fn, epochs))
    reporter = Reporter(root, epochs)
    metrics = {"train_loss": 0.5, "test_loss": 0.5, "test_accuracy": 0.9}
    with mock.patch.object(logging, "info"):  # the line, not the terminal
      out["summaries: log line + TensorBoard scalars"] = stats(
          timed(lambda: reporter.report(1, metrics), epochs))
    reporter.close()
    ckpt = _checkpointer(steps, config, info, os.path.join(root, "c"))
    save = stats(_save_times(ckpt, min(10, epochs)))
    out[f"checkpoint save on the loop's thread / {checkpoint_every} (one "
        f"every {checkpoint_every} epochs; written in the background)"] = {
            k: v / checkpoint_every for k, v in save.items()}
    out["whole displayed epoch in the loop"] = stats(
        _loop_epochs(config, info, tensors, os.path.join(root, "run"),
                     checkpoint_every))
  parts_sum = sum(out[k]["median"] for k in list(out)[2:-1])
  out["the loop's own share (whole minus the parts)"] = {
      "median": out["whole displayed epoch in the loop"]["median"] - parts_sum,
      "min": float("nan"), "max": float("nan")}
  return out


def _save_and_wait(ckpt, numbers):
  ckpt.save(next(numbers))
  ckpt.wait()


def _save_times(ckpt, repeats):
  """Seconds the loop waits in save(): the copy, not the background write
  (each previous write is waited for outside the timing, as the epochs
  between two saves would)."""
  times = []
  for n in range(1, repeats + 1):
    ckpt.wait()
    start = time.perf_counter()
    ckpt.save(n)
    times.append(time.perf_counter() - start)
  ckpt.wait()
  return times


class _Timed:
  """The command's own outputs, with a timestamp after each report."""

  def __init__(self, outputs, times):
    self._outputs, self._times = outputs, times

  def __getattr__(self, name):
    return getattr(self._outputs, name)

  def report(self, epoch, values, events=True):
    self._outputs.report(epoch, values, events)
    self._times.append(time.perf_counter())


def _loop_epochs(config, info, tensors, root, checkpoint_every):
  """Per-epoch seconds of the command's own loop: a `Run` built as
  train_and_evaluate builds it, with the chief's outputs in `root`."""
  storage = Storage(model_dir=root, checkpoint_every=checkpoint_every)
  steps = loop.build(config, info, int(tensors[0].shape[0]))
  train_loss = tf.Variable(float("nan"), trainable=False)
  times = []
  with ModelDir(root).locked() as model_dir:
    outputs = ChiefOutputs(model_dir, config, storage, info, {}, steps.model,
                           steps.optimizer, train_loss)
    run = loop.Run(config, tensors, steps, _Timed(outputs, times),
                   train_loss=train_loss)
    with mock.patch.object(logging, "info"):
      run.train()
  return [b - a for a, b in zip(times[1:], times[2:])]
