"""Command line: `python -m logreg_tf.train --learning_rate=0.05`.

Defines the training flags (the data and model-dir flags come from cli.py),
turns them into a RunConfig and a Storage and calls
`loop.train_and_evaluate`. User errors end as one line on stderr.
"""

import math
import os
import sys

from absl import app
from absl import flags
from absl import logging

from logreg_tf import cli
from logreg_tf import config as config_lib
from logreg_tf.errors import (DivergenceError, StorageError, UserError,
                              WorkerError)

PROG = "logreg-train"

_DATA = cli.define_data_flags()
_TRAIN_SPLIT = flags.DEFINE_string(
    "train_split", "train", "TFDS split to train on; TFDS split syntax such "
    "as train[:90%] is accepted.")
_TEST_SPLIT = flags.DEFINE_string(
    "test_split", "test", "TFDS split to evaluate on, e.g. test or "
    "train[90%:] for a dataset without a test split.")
_CLASSES = flags.DEFINE_string(
    "classes", "", "Comma-separated classes of the dataset to train on, by "
    "name or index: two (A,B) give binomial (sigmoid) regression with B "
    "positive; more give a softmax over them; empty means all.")
_LEARNING_RATE = flags.DEFINE_float(
    "learning_rate", 0.05, "SGD step size: weights move by this times the "
    "gradient of the mean loss.")
_LR_SCHEDULE = flags.DEFINE_enum(
    "lr_schedule", "constant", ["constant", "linear"],
    "constant: the same rate every step; linear: decays from --learning_rate "
    "to 0 at the last step of the run.")
_NUM_EPOCHS = flags.DEFINE_integer(
    "num_epochs", 500, "Passes over the training set.", lower_bound=1)
_DISPLAY_STEP = flags.DEFINE_integer(
    "display_step", 1, "Evaluate and log every this many epochs (the last "
    "epoch is always logged).", lower_bound=1)
_BATCH_SIZE = flags.DEFINE_integer(
    "batch_size", None, "Examples per SGD step; unset means the whole "
    "training set (one step per epoch). Smaller sizes shuffle every epoch and "
    "keep the last partial batch.", lower_bound=1)
_SEED = flags.DEFINE_integer(
    "seed", 0, "Seed of the initial weights and of the shuffle order.",
    lower_bound=0)
_INIT = flags.DEFINE_enum(
    "init", "zeros", ["zeros", "normal"],
    "Initial weights: zeros, or draws from a standard normal (the tutorial).")
_USE_BIAS = flags.DEFINE_bool(
    "use_bias", True, "Learn a bias per output; --nouse_bias as in the tutorial.")
_L2 = flags.DEFINE_float(
    "l2", 0.0, "Weight of the 0.5 * l2 * ||W||^2 penalty on the weights (not "
    "the bias).")

_STRATEGY = flags.DEFINE_enum(
    "strategy", "one_device", ["one_device", "mirrored", "multi_worker"],
    "Where to train: one_device (one GPU if TensorFlow finds one, else the "
    "CPU); mirrored (a replica on every GPU, or on --cpu_devices logical CPU "
    "devices); multi_worker (the workers of the TF_CONFIG environment "
    "variable; scripts/launch_local.py starts them on this machine).")
_CPU_DEVICES = flags.DEFINE_integer(
    "cpu_devices", None, "With --strategy=mirrored: split the CPU into this "
    "many logical devices, one replica each (to run the mirrored path "
    "without GPUs). Unset: every GPU, or the CPU as one device.",
    lower_bound=1)
_WORKER_TIMEOUT = flags.DEFINE_float(
    "worker_timeout", 20.0, "With --strategy=multi_worker: seconds to wait "
    "for every worker to join at start-up, and for a silent worker before it "
    "counts as lost (the others then stop with exit status 5).")

_MODEL_DIR = cli.define_model_dir_flag(
    "Directory for TensorBoard events, checkpoints and run.json; unset writes "
    "nothing. An existing run there is resumed.")
_CHECKPOINT_EVERY = flags.DEFINE_integer(
    "checkpoint_every", 10, "Save a checkpoint to --model_dir every this many "
    "epochs (and always at the end, and on SIGINT/SIGTERM).", lower_bound=1)
_KEEP_CHECKPOINTS = flags.DEFINE_integer(
    "keep_checkpoints", 3, "How many of the newest checkpoints to keep.",
    lower_bound=1)
_FIGURE_EVERY = flags.DEFINE_integer(
    "figure_every", 0, "Draw the figures (weight templates, confusion matrix, "
    "reliability diagram, confident mistakes) into --model_dir every this "
    "many displayed epochs; 0 draws them at the end only.", lower_bound=0)
_FRESH = flags.DEFINE_bool(
    "fresh", False, "Start over in --model_dir: delete its checkpoints, event "
    "files and run.json instead of resuming from them.")

flags.register_validator(
    "learning_rate", lambda v: v > 0 and math.isfinite(v),
    message="must be a finite number > 0")
flags.register_validator(
    "l2", lambda v: v >= 0 and math.isfinite(v),
    message="must be a finite number >= 0")
flags.register_validator("classes", cli.user_check(config_lib.parse_classes))
flags.register_validator(
    "worker_timeout", lambda v: v > 0 and math.isfinite(v),
    message="must be a finite number of seconds > 0")
flags.register_multi_flags_validator(
    ["strategy", "cpu_devices"],
    lambda f: f["cpu_devices"] is None or f["strategy"] == "mirrored",
    message="--cpu_devices splits the CPU for --strategy=mirrored; the "
    "chosen --strategy does not use it")
for _split in ("train_split", "test_split"):
  flags.register_validator(_split, lambda v: bool(v and v.strip()),
                           message="give a TFDS split, e.g. train or test")


def config_from_flags() -> config_lib.RunConfig:
  return config_lib.RunConfig(
      dataset=_DATA.dataset.value.strip(),
      train_split=_TRAIN_SPLIT.value.strip(),
      test_split=_TEST_SPLIT.value.strip(),
      classes=config_lib.parse_classes(_CLASSES.value),
      learning_rate=_LEARNING_RATE.value,
      lr_schedule=_LR_SCHEDULE.value,
      num_epochs=_NUM_EPOCHS.value,
      display_step=_DISPLAY_STEP.value,
      batch_size=_BATCH_SIZE.value,
      seed=_SEED.value,
      init=_INIT.value,
      use_bias=_USE_BIAS.value,
      l2=_L2.value,
  )


def storage_from_flags() -> config_lib.Storage:
  return cli.storage_from_flags(
      _DATA, _MODEL_DIR.value, checkpoint_every=_CHECKPOINT_EVERY.value,
      keep_checkpoints=_KEEP_CHECKPOINTS.value, fresh=_FRESH.value,
      figure_every=_FIGURE_EVERY.value)


def parse_flags(argv):
  return cli.flags_parser(PROG)(argv)


def main(argv) -> None:
  del argv  # parse_flags rejects positional arguments
  config, storage = config_from_flags(), storage_from_flags()
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")  # C++ INFO chatter
  # A signal from here on, even while TensorFlow loads, stops the run after
  # its current step, saved; no KeyboardInterrupt traceback.
  from logreg_tf.interrupts import Interrupted, StopRequest
  stop = StopRequest()
  with stop.installed():
    # Imported here so that --help and flag errors answer before TensorFlow
    # loads.
    from logreg_tf import loop
    import tensorflow as tf
    # Same flags and seed give the same bits: no nondeterministic kernels.
    tf.config.experimental.enable_op_determinism()
    from logreg_tf.distributed import placement as distribute
    try:
      placement = distribute.place(_STRATEGY.value, _CPU_DEVICES.value,
                                   _WORKER_TIMEOUT.value)
      stop.take_back()
      metrics = loop.train_and_evaluate(config, storage, stop, placement)
    except (UserError, DivergenceError, StorageError, WorkerError) as e:
      cli.fail(PROG, str(e), e.exit_code)
    except Interrupted as e:
      logging.warning("%s", e)
      sys.exit(e.exit_code)
  logging.info("final: %s", metrics)


def run():
  app.run(main, flags_parser=parse_flags)


if __name__ == "__main__":
  run()
