"""Command line: `python -m logreg_tf.train --learning_rate=0.05`.

Defines the flags, turns them into one frozen Config and calls
`loop.train_and_evaluate`. User errors end as one line on stderr.
"""

import math
import os
import sys
import tempfile

from absl import app
from absl import flags
from absl import logging

from logreg_tf import cache
from logreg_tf import config as config_lib
from logreg_tf.errors import DivergenceError, UserError

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
_CLASSES = flags.DEFINE_string(
    "classes", "", "Comma-separated digits to train on: two digits A,B give "
    "binomial (sigmoid) regression with B positive; more give a softmax over "
    "them; empty means all ten.")
_MODEL_DIR = flags.DEFINE_string(
    "model_dir", None, "Directory for TensorBoard events, checkpoints and "
    "run.json; unset writes nothing.")
_DATA_DIR = flags.DEFINE_string(
    "data_dir", None, "TFDS data directory holding a prepared mnist; unset "
    "means TFDS's default, which honours TFDS_DATA_DIR.")
_IDX_DIR = flags.DEFINE_string(
    "idx_dir", None, "Directory with the four MNIST IDX files (plain or .gz); "
    "when set, TFDS is not used.")
_CACHE_DIR = flags.DEFINE_string(
    "cache_dir", None, "Where decoded MNIST arrays are kept between runs "
    "(keyed by the TFDS files); unset means $XDG_CACHE_HOME/logreg_tf or "
    "~/.cache/logreg_tf, empty disables the cache.")

_CHECKPOINT_EVERY = flags.DEFINE_integer(
    "checkpoint_every", 10, "Save a checkpoint to --model_dir every this many "
    "epochs (and always at the end, and on SIGINT/SIGTERM).", lower_bound=1)
_KEEP_CHECKPOINTS = flags.DEFINE_integer(
    "keep_checkpoints", 3, "How many of the newest checkpoints to keep.",
    lower_bound=1)
_FRESH = flags.DEFINE_bool(
    "fresh", False, "Start over in --model_dir: delete its checkpoints, event "
    "files and run.json instead of resuming from them.")

flags.register_validator(
    "learning_rate", lambda v: v > 0 and math.isfinite(v),
    message="must be a finite number > 0")
flags.register_validator(
    "l2", lambda v: v >= 0 and math.isfinite(v),
    message="must be a finite number >= 0")


def _model_dir_ok(path) -> bool:
  """The directory exists and is writable, or can be created."""
  if path is None:
    return True
  if not path.strip():
    raise UserError("give a directory path, or leave the flag unset")
  probe = os.path.abspath(path)
  if os.path.exists(probe) and not os.path.isdir(probe):
    raise UserError("it is a file, not a directory")
  while not os.path.exists(probe):  # the deepest part that exists
    probe = os.path.dirname(probe)
  if not os.path.isdir(probe):
    raise UserError(f"{probe!r} is a file, not a directory")
  try:
    with tempfile.TemporaryFile(dir=probe):
      pass
  except OSError as e:
    raise UserError(f"cannot write in {probe!r} ({e.strerror})") from e
  return True


def _classes_ok(text: str) -> bool:
  config_lib.parse_classes(text)  # raises UserError with the reason
  return True


def _raise_user_error(fn):
  def check(value):
    try:
      return fn(value)
    except UserError as e:
      raise flags.ValidationError(str(e)) from e
  return check


flags.register_validator("classes", _raise_user_error(_classes_ok))
flags.register_validator("model_dir", _raise_user_error(_model_dir_ok))


def config_from_flags() -> config_lib.Config:
  return config_lib.Config(
      learning_rate=_LEARNING_RATE.value,
      lr_schedule=_LR_SCHEDULE.value,
      num_epochs=_NUM_EPOCHS.value,
      display_step=_DISPLAY_STEP.value,
      batch_size=_BATCH_SIZE.value,
      seed=_SEED.value,
      init=_INIT.value,
      use_bias=_USE_BIAS.value,
      l2=_L2.value,
      classes=config_lib.parse_classes(_CLASSES.value),
      model_dir=_MODEL_DIR.value,
      data_dir=_DATA_DIR.value,
      idx_dir=_IDX_DIR.value,
      cache_dir=(cache.default_dir() if _CACHE_DIR.value is None
                 else _CACHE_DIR.value or None),
      checkpoint_every=_CHECKPOINT_EVERY.value,
      keep_checkpoints=_KEEP_CHECKPOINTS.value,
      fresh=_FRESH.value,
  )


def _fail(message: str, code: int):
  sys.stderr.write(f"logreg-train: error: {message}\n")
  sys.exit(code)


def parse_flags(argv):
  """absl parsing, but every error is one line and stray arguments fail."""
  try:
    rest = flags.FLAGS(argv)
  except flags.Error as e:
    _fail(str(e).replace("ERROR:: ", ""), 1)
  if len(rest) > 1:
    _fail(f"unexpected arguments {' '.join(rest[1:])!r}: this command takes "
          "only --flags (see --helpfull)", 1)
  return rest


def _xla_cache(cache_dir) -> None:
  """Keeps XLA's compiled kernels in the cache too: later runs skip compiling.

  Must happen before TensorFlow is imported; a TF_XLA_FLAGS of the user's
  own wins.
  """
  if cache_dir and "TF_XLA_FLAGS" not in os.environ:
    os.environ["TF_XLA_FLAGS"] = (
        "--tf_xla_persistent_cache_directory=" + os.path.join(cache_dir, "xla"))


def main(argv) -> None:
  del argv  # parse_flags rejects positional arguments
  config = config_from_flags()
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")  # C++ INFO chatter
  _xla_cache(config.cache_dir)
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
    try:
      metrics = loop.train_and_evaluate(config, stop)
    except (UserError, DivergenceError) as e:
      _fail(str(e), e.exit_code)
    except Interrupted as e:
      logging.warning("%s", e)
      sys.exit(e.exit_code)
  logging.info("final: %s", metrics)


def run():
  app.run(main, flags_parser=parse_flags)


if __name__ == "__main__":
  run()
