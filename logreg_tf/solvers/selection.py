"""Honest selection of l2 (logreg-sweep's library): path on train, choice on
validation, then refit on train + validation and one test evaluation.

Writes, into the sweep directory: sweep.json, sweep.csv, sweep.png and
tensorboard/ (a run per trial with its hparams; the parent holds the HParams
config and the figure). The refit is an ordinary training run in refit/.
"""

import csv
import dataclasses
import io
import json
import os
import shutil
from typing import Dict, List

from absl import logging
import tensorflow as tf

from logreg_tf import data, figures, loop
from logreg_tf.config import Storage
from logreg_tf.model import head_for, num_outputs
from logreg_tf.rundir import durable
from logreg_tf.solvers import path as path_lib
from logreg_tf.solvers.objective import Objective

CSV_FIELDS = ("l2", "objective", "gradient_norm", "suboptimality_bound",
              "iterations", "converged", "seconds", "validation_loss",
              "validation_accuracy", "test_loss", "test_accuracy")


# TensorBoard tag -> trial record key.
TENSORBOARD = {"validation/loss": "validation_loss",
               "validation/accuracy": "validation_accuracy",
               "test/accuracy": "test_accuracy",
               "train/objective": "objective",
               "train/suboptimality_bound": "suboptimality_bound"}


def choose(trials: List[dict], by: str) -> dict:
  """The trial of the lowest validation loss, or of the highest validation
  accuracy; a tie goes to the larger l2 (the simpler model)."""
  if by == "loss":
    key = lambda t: (t["validation_loss"], -t["l2"])
  else:
    key = lambda t: (-t["validation_accuracy"], -t["l2"])
  return min(trials, key=key)


def _trial_name(l2: float) -> str:
  return f"l2={l2:.3e}"


def _tensorboard(root: str, trials: List[dict], png: bytes) -> None:
  """A run per trial (its hparams and scalars at step 0) under a parent
  that holds the HParams config and the sweep's figure."""
  from tensorboard.plugins.hparams import api as hp
  metrics = TENSORBOARD
  shutil.rmtree(root, ignore_errors=True)  # the same sweep run again
  with tf.summary.create_file_writer(root).as_default():
    hp.hparams_config(hparams=[hp.HParam("l2", hp.RealInterval(
        min(t["l2"] for t in trials), max(t["l2"] for t in trials)))],
                      metrics=[hp.Metric(m) for m in metrics])
    tf.summary.image("sweep", tf.image.decode_png(png, channels=4)[None],
                     step=0)
  for t in trials:
    writer = tf.summary.create_file_writer(os.path.join(
        root, _trial_name(t["l2"])))
    with writer.as_default():
      hp.hparams({"l2": t["l2"]}, trial_id=_trial_name(t["l2"]))
      for tag, key in metrics.items():
        value = t[key]
        if value is not None:
          tf.summary.scalar(tag, value, step=0)
    writer.close()


def _csv(trials: List[dict]) -> str:
  out = io.StringIO()
  writer = csv.DictWriter(out, CSV_FIELDS, extrasaction="ignore")
  writer.writeheader()
  writer.writerows(trials)
  return out.getvalue()


def _path(config, storage: Storage):
  """Solves the path on the training split; each trial's record with its
  validation metrics, and the trials' weights."""
  tuning = data.load_selected(
      config.data(config.train_split, config.validation_split), storage)
  outputs = num_outputs(tuning.info.num_classes)
  head = head_for(outputs)
  x, y = (data.to_features(tuning.train_images),
          data.to_labels(tuning.train_labels))
  xv, yv = (data.to_features(tuning.test_images),
            data.to_labels(tuning.test_labels))
  objective = Objective(head, x, y, config.l2[0], config.use_bias)

  def log(trial):
    logging.info("l2 %.3e  objective %.10f  bound %s  iterations %d  %.1f s",
                 trial.l2, trial.objective,
                 f"{trial.suboptimality_bound:.2e}"
                 if trial.suboptimality_bound is not None else "none",
                 trial.iterations, trial.seconds)

  solved = path_lib.solve_path(objective, outputs, list(config.l2),
                               config.solver, config.tol, config.max_iter, log)
  records = []
  for trial in solved:
    scored = path_lib.metrics(trial, head, xv, yv)
    records.append({**trial.record(), "validation_loss": scored["loss"],
                    "validation_accuracy": scored["accuracy"]})
  return records, solved, head


def run(config, storage: Storage, sweep_dir: str) -> Dict:
  """The whole sweep; returns what sweep.json holds."""
  records, solved, head = _path(config, storage)
  chosen = choose(records, config.select_by)
  logging.info("chosen: l2 %.3e (validation loss %.4f, accuracy %.4f)",
               chosen["l2"], chosen["validation_loss"],
               chosen["validation_accuracy"])
  # The choice is fixed: from here on the test split is read.
  refit_dir = os.path.join(sweep_dir, "refit")
  refit_storage = dataclasses.replace(storage, model_dir=refit_dir,
                                      fresh=True)
  final = loop.train_and_evaluate(config.refit(chosen["l2"]), refit_storage)
  with open(os.path.join(refit_dir, "run.json")) as f:
    refit_record = json.load(f)
  test = data.load_selected(config.data(config.train_split,
                                        config.test_split), storage)
  xt, yt = data.to_features(test.test_images), data.to_labels(test.test_labels)
  for record, trial in zip(records, solved):
    scored = path_lib.metrics(trial, head, xt, yt)
    record.update(test_loss=scored["loss"], test_accuracy=scored["accuracy"])
  png = figures.sweep([r["l2"] for r in records],
                      [r["validation_accuracy"] for r in records],
                      [r["test_accuracy"] for r in records], chosen["l2"],
                      config.select_by)
  result = {
      "config": dataclasses.asdict(config),
      "trials": records,
      "chosen": {"l2": chosen["l2"], "by": f"validation {config.select_by}",
                 "validation_loss": chosen["validation_loss"],
                 "validation_accuracy": chosen["validation_accuracy"]},
      "refit": {"model_dir": refit_dir,
                "train_split": config.refit(chosen["l2"]).train_split,
                "final_metrics": final,
                "optimization": refit_record["optimization"]},
      "path_seconds": sum(r["seconds"] for r in records),
  }
  durable.write_bytes(os.path.join(sweep_dir, "sweep.png"), png)
  durable.write_text(os.path.join(sweep_dir, "sweep.csv"), _csv(records))
  _tensorboard(os.path.join(sweep_dir, "tensorboard"), records, png)
  durable.write_text(os.path.join(sweep_dir, "sweep.json"),
                     json.dumps(result, indent=2) + "\n")
  return result
