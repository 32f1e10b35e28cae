"""Flags that every command shares (data, model directory), their checks, and
the one-line failure that every command ends with on bad input.

Each command module calls the `define_*` functions it needs at import, keeps
the returned holders and builds its configs from them; library code never
reads flags.
"""

import sys
import types
from typing import Optional

from absl import flags

from logreg_tf.data import cache
from logreg_tf.rundir import workdir
from logreg_tf.config import Storage
from logreg_tf.errors import UserError


def fail(prog: str, message: str, code: int = 1):
  """Ends the command with one line on stderr, no traceback."""
  sys.stderr.write(f"{prog}: error: {message}\n")
  sys.exit(code)


def flags_parser(prog: str, positional: bool = False):
  """absl parsing for app.run: errors in one line; stray arguments refused
  unless the command takes `positional` ones."""
  def parse(argv):
    try:
      rest = flags.FLAGS(argv)
    except flags.Error as e:
      fail(prog, str(e).replace("ERROR:: ", ""))
    if len(rest) > 1 and not positional:
      fail(prog, f"unexpected arguments {' '.join(rest[1:])!r}: this command "
           "takes only --flags (see --helpfull)")
    return rest
  return parse


def user_check(fn):
  """A flag validator from a function that raises UserError with the reason."""
  def check(value):
    try:
      fn(value)
    except UserError as e:
      raise flags.ValidationError(str(e)) from e
    return True
  return check


def define_data_flags(dataset_default: Optional[str] = "mnist",
                      unset_means: str = "") -> types.SimpleNamespace:
  """--dataset, --data_dir, --idx_dir, --cache_dir."""
  holders = types.SimpleNamespace(
      dataset=flags.DEFINE_string(
          "dataset", dataset_default, "TFDS name of an image classification "
          "dataset (an image feature and a ClassLabel), e.g. mnist, "
          "fashion_mnist, emnist/balanced, cifar10; with --idx_dir, the name "
          f"of the dataset its files hold.{unset_means}"),
      data_dir=flags.DEFINE_string(
          "data_dir", None, "TFDS data directory holding the prepared "
          "dataset; unset means TFDS's default, which honours TFDS_DATA_DIR."),
      idx_dir=flags.DEFINE_string(
          "idx_dir", None, "Directory with the four IDX files of the dataset "
          "(MNIST's names, plain or .gz); when set, TFDS is not read."),
      cache_dir=flags.DEFINE_string(
          "cache_dir", None, "Where decoded datasets are kept between runs; "
          "unset means $XDG_CACHE_HOME/logreg_tf or ~/.cache/logreg_tf, "
          "empty disables the cache."),
  )
  flags.register_validator(
      "dataset", lambda v: (v is None and dataset_default is None) or bool(
          v and v.strip()),
      message="give a TFDS dataset name, e.g. mnist or fashion_mnist")
  flags.register_multi_flags_validator(
      ["idx_dir", "data_dir"],
      lambda d: not (d["idx_dir"] and d["data_dir"]),
      message="--idx_dir and --data_dir name two sources of data; give one")
  return holders


def define_model_dir_flag(help_text: str) -> flags.FlagHolder:
  holder = flags.DEFINE_string("model_dir", None, help_text)
  flags.register_validator(
      "model_dir",
      user_check(lambda p: p is None or workdir.check_writable(p)))
  return holder


def define_checkpoint_flags(verb: str,
                            required: bool = True) -> types.SimpleNamespace:
  """--model_dir or --checkpoint: the trained model a command reads (one of
  them, when `required`)."""
  holders = types.SimpleNamespace(
      model_dir=flags.DEFINE_string(
          "model_dir", None, "A training run's directory: its newest intact "
          f"checkpoint is {verb}."),
      checkpoint=flags.DEFINE_string(
          "checkpoint", None, "A checkpoint prefix "
          "(MODEL_DIR/checkpoints/ckpt-N) instead of --model_dir's newest."))
  if required:
    flags.register_multi_flags_validator(
        ["model_dir", "checkpoint"],
        lambda d: bool(d["model_dir"]) != bool(d["checkpoint"]),
        message="give --model_dir=DIR or --checkpoint=PATH (one of them)")
  return holders


def storage_from_flags(data, model_dir: Optional[str] = None,
                       **outputs) -> Storage:
  """The Storage of the data flags, the model directory and `outputs`."""
  cache_dir = data.cache_dir.value
  return Storage(
      model_dir=model_dir, data_dir=data.data_dir.value,
      idx_dir=data.idx_dir.value,
      cache_dir=cache.default_dir() if cache_dir is None else cache_dir or None,
      **outputs)
