"""Command line: `python -m logreg_tf.train --learning_rate=0.05`.

Defines the training flags (the data and model-dir flags come from cli.py),
turns them into a RunConfig and a Storage and calls
`loop.train_and_evaluate`. Every error ends as one line on stderr
(cli.run_command).
"""

import math
import types

from absl import flags
from absl import logging

from logreg_tf import cli
from logreg_tf import config as config_lib

PROG = "logreg-train"


def define_flags(fv: flags.FlagValues) -> types.SimpleNamespace:
  """The training flags in `fv`; returns their holders."""
  f = types.SimpleNamespace(data=cli.define_data_flags(fv))
  define = lambda kind, *args, **kw: getattr(flags, f"DEFINE_{kind}")(
      *args, flag_values=fv, **kw)
  f.train_split = define(
      "string", "train_split", "train", "TFDS split to train on; TFDS split "
      "syntax such as train[:90%] is accepted.")
  f.test_split = define(
      "string", "test_split", "test", "TFDS split to evaluate on, e.g. test "
      "or train[90%:] for a dataset without a test split.")
  f.validation_split = define(
      "string", "validation_split", None, "TFDS split also scored at every "
      "display step (validation loss and accuracy), held out from "
      "--train_split, e.g. --train_split=train[:50000] "
      "--validation_split=train[50000:].")
  f.classes = define(
      "string", "classes", "", "Comma-separated classes of the dataset to "
      "train on, by name or index: two (A,B) give binomial (sigmoid) "
      "regression with B positive; more give a softmax over them; empty "
      "means all.")
  f.learning_rate = define(
      "float", "learning_rate", 0.05, "SGD step size: weights move by this "
      "times the gradient of the mean loss.")
  f.lr_schedule = define(
      "enum", "lr_schedule", "constant", ["constant", "linear"],
      "constant: the same rate every step; linear: decays from "
      "--learning_rate to 0 at the last step of the run.")
  f.num_epochs = define("integer", "num_epochs", 500,
                        "Passes over the training set.", lower_bound=1)
  f.display_step = define(
      "integer", "display_step", 1, "Evaluate and log every this many epochs "
      "(the last epoch is always logged).", lower_bound=1)
  f.batch_size = define(
      "integer", "batch_size", None, "Examples per SGD step; unset means the "
      "whole training set (one step per epoch). Smaller sizes shuffle every "
      "epoch and keep the last partial batch.", lower_bound=1)
  f.seed = define("integer", "seed", 0, "Seed of the initial weights and of "
                  "the shuffle order.", lower_bound=0)
  f.init = define(
      "enum", "init", "zeros", ["zeros", "normal"], "Initial weights: zeros, "
      "or draws from a standard normal (the tutorial).")
  f.use_bias = define("bool", "use_bias", True, "Learn a bias per output; "
                      "--nouse_bias as in the tutorial.")
  f.l2 = define("float", "l2", 0.0, "Weight of the 0.5 * l2 * ||W||^2 "
                "penalty on the weights (not the bias).")
  f.solver = define(
      "enum", "solver", "sgd", ["sgd", "lbfgs", "newton_cg"],
      "sgd: the tutorial's stochastic gradient descent (--learning_rate, "
      "--num_epochs, --batch_size); lbfgs or newton_cg: an exact full-batch "
      "solver of the same objective, which stops at a certified optimum "
      "(--tol, --max_iter; README's The optimum).")
  f.tol = define(
      "float", "tol", 1e-4, "With an exact --solver: stop once the certified "
      "bound on the objective's distance to its optimum is at most this "
      "(with --l2=0: once the gradient's largest component is).")
  f.max_iter = define(
      "integer", "max_iter", 1000, "With an exact --solver: at most this many "
      "iterations (each one epoch of the log and the checkpoints).",
      lower_bound=1)
  f.strategy = define(
      "enum", "strategy", "one_device", ["one_device", "mirrored",
                                         "multi_worker"],
      "Where to train: one_device (one GPU if TensorFlow finds one, else the "
      "CPU); mirrored (a replica on every GPU, or on --cpu_devices logical "
      "CPU devices); multi_worker (the workers of the TF_CONFIG environment "
      "variable; scripts/launch_local.py starts them on this machine).")
  f.cpu_devices = define(
      "integer", "cpu_devices", None, "With --strategy=mirrored: split the "
      "CPU into this many logical devices, one replica each (to run the "
      "mirrored path without GPUs). Unset: every GPU, or the CPU as one "
      "device.", lower_bound=1)
  f.worker_timeout = define(
      "float", "worker_timeout", 20.0, "With --strategy=multi_worker: "
      "seconds to wait for every worker to join at start-up, for a "
      "silent worker before it counts as lost, and for a worker's answer to "
      "the others' are-you-alive questions (two unanswered: frozen); the "
      "others then stop with exit status 5.")
  f.input = define(
      "enum", "input", "auto", ["auto", "memory", "stream"],
      "memory: the splits as float32 matrices in memory; stream: read block "
      "by block from their decoded files, for data larger than memory; "
      "auto: memory when the float32 splits "
      "fit half of the memory this process may use, else stream.")
  f.model_dir = cli.define_model_dir_flag(
      fv, "Directory for TensorBoard events, checkpoints and run.json; unset "
      "writes nothing. An existing run there is resumed.")
  f.checkpoint_every = define(
      "integer", "checkpoint_every", 10, "Save a checkpoint to --model_dir "
      "every this many epochs (and always at the end, and on "
      "SIGINT/SIGTERM).", lower_bound=1)
  f.keep_checkpoints = define("integer", "keep_checkpoints", 3, "How many "
                              "of the newest checkpoints to keep.",
                              lower_bound=1)
  f.figure_every = define(
      "integer", "figure_every", 0, "Draw the figures (weight templates, "
      "confusion matrix, reliability diagram, confident mistakes) into "
      "--model_dir every this many displayed epochs; 0 draws them at the end "
      "only.", lower_bound=0)
  f.fresh = define(
      "bool", "fresh", False, "Start over in --model_dir: delete its "
      "checkpoints, event files and run.json instead of resuming from them.")
  _validate(fv)
  return f


def _validate(fv: flags.FlagValues) -> None:
  check = lambda *args, **kw: flags.register_validator(*args, flag_values=fv,
                                                       **kw)
  check("learning_rate", lambda v: v > 0 and math.isfinite(v),
        message="must be a finite number > 0")
  check("l2", lambda v: v >= 0 and math.isfinite(v),
        message="must be a finite number >= 0")
  check("classes", cli.user_check(config_lib.parse_classes))
  check("worker_timeout", lambda v: v > 0 and math.isfinite(v),
        message="must be a finite number of seconds > 0")
  for split in ("train_split", "test_split"):
    check(split, lambda v: bool(v and v.strip()),
          message="give a TFDS split, e.g. train or test")
  check("tol", lambda v: v > 0 and math.isfinite(v),
        message="must be a finite number > 0")
  flags.register_multi_flags_validator(
      ["solver", "batch_size"],
      lambda d: d["solver"] == "sgd" or d["batch_size"] is None,
      message="--solver=lbfgs and newton_cg are full-batch solvers; drop "
      "--batch_size, or use --solver=sgd for mini-batches", flag_values=fv)
  flags.register_multi_flags_validator(
      ["solver", "strategy"],
      lambda d: d["solver"] == "sgd" or d["strategy"] == "one_device",
      message="--solver=lbfgs and newton_cg run on one device (one GPU if "
      "TensorFlow finds one); --strategy is for --solver=sgd", flag_values=fv)
  flags.register_multi_flags_validator(
      ["strategy", "cpu_devices"],
      lambda d: d["cpu_devices"] is None or d["strategy"] == "mirrored",
      message="--cpu_devices splits the CPU for --strategy=mirrored; the "
      "chosen --strategy does not use it", flag_values=fv)


def config_from_flags(f) -> config_lib.RunConfig:
  return config_lib.RunConfig(
      dataset=f.data.dataset.value.strip(),
      train_split=f.train_split.value.strip(),
      test_split=f.test_split.value.strip(),
      classes=config_lib.parse_classes(f.classes.value),
      learning_rate=f.learning_rate.value,
      lr_schedule=f.lr_schedule.value,
      num_epochs=f.num_epochs.value,
      display_step=f.display_step.value,
      batch_size=f.batch_size.value,
      seed=f.seed.value,
      init=f.init.value,
      use_bias=f.use_bias.value,
      l2=f.l2.value,
      solver=f.solver.value,
      tol=f.tol.value,
      max_iter=f.max_iter.value,
      validation_split=(f.validation_split.value or "").strip() or None,
  )


def storage_from_flags(f) -> config_lib.Storage:
  return cli.storage_from_flags(
      f.data, f.model_dir.value, checkpoint_every=f.checkpoint_every.value,
      keep_checkpoints=f.keep_checkpoints.value, fresh=f.fresh.value,
      figure_every=f.figure_every.value, input=f.input.value)


def configs_from_argv(argv):
  """(RunConfig, Storage) of `logreg-train ARGV` (flags, flagfiles), parsed
  on fresh flags; UsageError as the command gives it."""
  flag_values = flags.FlagValues()
  holders = define_flags(flag_values)
  cli.parse(flag_values, [PROG, *argv])
  return config_from_flags(holders), storage_from_flags(holders)


def main(f, argv) -> None:
  del argv  # cli.parse rejects positional arguments
  config, storage = config_from_flags(f), storage_from_flags(f)
  # A signal from here on, even while TensorFlow loads, stops the run after
  # its current step, saved; no KeyboardInterrupt traceback.
  from logreg_tf.interrupts import StopRequest
  stop = StopRequest()
  with stop.installed():
    # Loaded here so that --help and flag errors answer before TensorFlow
    # loads.
    cli.load_tensorflow()
    from logreg_tf import loop
    import tensorflow as tf
    if config.validation_split:
      from logreg_tf import data
      data.check_held_out(config.data, config.validation_split, storage)
    # Same flags and seed give the same bits: no nondeterministic kernels.
    tf.config.experimental.enable_op_determinism()
    placement = None
    if f.strategy.value != "one_device":
      from logreg_tf.distributed import placement as placement_lib
      placement = placement_lib.place(f.strategy.value, f.cpu_devices.value,
                                      f.worker_timeout.value)
      stop.take_back()
    metrics = loop.train_and_evaluate(config, storage, stop, placement)
  logging.info("final: %s", metrics)


COMMAND = cli.Command(PROG, define_flags, main)


def run():
  cli.run_command(COMMAND)


if __name__ == "__main__":
  run()
