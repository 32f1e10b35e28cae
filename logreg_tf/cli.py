"""What every command shares: flag builders, the parser, and the one runner
that ends a `CommandError` as one line and its exit status.

A command module has a `COMMAND`: its name, `define(flag_values)`, which
defines its flags there and returns their holders, and `main(holders,
argv)`. `run_command` runs it as a program, with its flags in absl's global
FLAGS (so `--help` lists them); `invoke` runs it in this process on a fresh
`FlagValues`, so that all four commands, any number of times, can run in one
process (the tests do). Library code never reads flags.
"""

import gc
import logging as py_logging
import os
import sys
import types
from typing import Callable, List, NamedTuple, Optional

from absl import flags
from absl import logging

from logreg_tf.config import Storage
from logreg_tf.data import cache
from logreg_tf.errors import CommandError, UserError
from logreg_tf.rundir import workdir


class Command(NamedTuple):
  prog: str  # the name errors start with, e.g. logreg-train
  define: Callable  # (FlagValues) -> the flags' holders
  main: Callable  # (holders, argv) -> exit status (None: 0)
  positional: bool = False  # takes arguments besides --flags


class UsageError(UserError):
  """Flags that do not parse or check, or stray arguments."""


# Modules Keras imports with TensorFlow for features no command uses: its
# scikit-learn wrappers (scikit-learn and SciPy's statistics, where
# scikit-learn is installed, as in this project's development environment)
# and its image-gallery plots (matplotlib: its pyplot for the gallery, and
# the package itself, whose patches the bounding-box gallery takes). SciPy
# itself too: TensorFlow's legacy Keras 2 training loop (compat.v1) imports
# scipy.sparse, 0.1 s, to accept sparse arrays it will never see here.
HIDDEN_WHILE_LOADING = ("sklearn", "matplotlib", "scipy")


def load_tensorflow() -> None:
  """Imports TensorFlow for a command, after its flags parsed (so --help
  and flag errors answer at once), without C++ INFO chatter and without
  the modules of HIDDEN_WHILE_LOADING.

  Importing TensorFlow imports Keras 3, which imports scikit-learn (1.2 to
  1.4 s of every command's start-up on this project's 2-core machine) and
  matplotlib with its pyplot (0.3 to 0.5 s for pyplot, then 0.2 to 0.4 s
  for the package itself; the commands that draw figures import them when
  they draw), and SciPy's sparse matrices (0.1 s), for features no command
  uses, each guarded by an ImportError.
  So those are hidden while TensorFlow loads, unless already imported;
  afterwards they import as usual, and only Keras's wrappers and gallery,
  in this process, take them for missing.

  Python's cyclic collector is off while TensorFlow loads, and then leaves
  everything loaded so far alone for good (gc.freeze): some 420,000
  objects, modules and their functions and classes, that live as long as
  the process and that every full collection walked through. In MNIST's
  Newton-CG command the collector took 0.69 s (6 full collections, 0.58 s);
  since, 0.05 s (one full collection, 0.02 s), at the same peak memory.
  """
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")
  if "tensorflow" in sys.modules:
    return
  hidden = [name for name in HIDDEN_WHILE_LOADING if name not in sys.modules]
  for name in hidden:
    sys.modules[name] = None  # `import name` raises ImportError
  collecting = gc.isenabled()
  gc.disable()
  try:
    import tensorflow  # noqa: F401  pylint: disable=import-outside-toplevel
  finally:
    for name in hidden:
      if name in sys.modules and sys.modules[name] is None:
        del sys.modules[name]
    gc.freeze()
    if collecting:
      gc.enable()


def report(prog: str, error: CommandError) -> int:
  """The one line for `error` (a warning for a requested stop); its status."""
  if error.warning:
    logging.warning("%s", error)
  else:
    sys.stderr.write(f"{prog}: error: {error}\n")
  return error.exit_code


def parse(flag_values: flags.FlagValues, argv: List[str],
          positional: bool = False) -> List[str]:
  """absl parsing; UsageError in one line. Stray arguments are refused
  unless the command takes `positional` ones."""
  try:
    rest = flag_values(argv)
  except flags.Error as e:
    raise UsageError(str(e).replace("ERROR:: ", "")) from e
  if len(rest) > 1 and not positional:
    raise UsageError(f"unexpected arguments {' '.join(rest[1:])!r}: this "
                     "command takes only --flags (see --helpfull)")
  return rest


def invoke(command: Command, argv: List[str]) -> int:
  """Runs a command in this process on fresh flags; returns its status."""
  flag_values = flags.FlagValues()
  holders = command.define(flag_values)
  try:
    rest = parse(flag_values, [command.prog, *argv], command.positional)
    return command.main(holders, rest) or 0
  except CommandError as e:
    return report(command.prog, e)


def run_command(command: Command) -> None:
  """The console entry point: absl's app.run, one line on any CommandError."""
  from absl import app
  holders = command.define(flags.FLAGS)

  def parser(argv):
    try:
      return parse(flags.FLAGS, argv, command.positional)
    except CommandError as e:
      sys.exit(report(command.prog, e))

  def app_main(argv):
    try:
      status = command.main(holders, argv)
    except CommandError as e:
      status = report(command.prog, e)
    leave(status or 0)

  app.run(app_main, flags_parser=parser)


def leave(status: int) -> None:
  """Ends a finished command's process with `status`, its output flushed,
  without Python's finalisation. With TensorFlow loaded that finalisation
  (module teardown, then TensorFlow's C++ destructors) takes about 1.5 s on
  2 cores and does nothing a finished command needs: by now every file it
  wrote is closed and flushed (the loop closes its outputs and waits for the
  checkpoint thread in a `finally`), and the run directory's lock goes with
  the process. A worker of a cluster first meets the others
  (placement.part). An uncaught exception never gets here: absl prints it and
  Python exits as usual."""
  if "logreg_tf.distributed.placement" in sys.modules:
    sys.modules["logreg_tf.distributed.placement"].part()
  logging.flush()
  for handler in py_logging.getLogger().handlers:
    handler.flush()
  sys.stdout.flush()
  sys.stderr.flush()
  os._exit(status)


def user_check(fn):
  """A flag validator from a function that raises UserError with the reason."""
  def check(value):
    try:
      fn(value)
    except UserError as e:
      raise flags.ValidationError(str(e)) from e
    return True
  return check


def define_data_flags(fv: flags.FlagValues,
                      dataset_default: Optional[str] = "mnist",
                      unset_means: str = "") -> types.SimpleNamespace:
  """--dataset, --data_dir, --idx_dir, --cache_dir."""
  holders = types.SimpleNamespace(
      dataset=flags.DEFINE_string(
          "dataset", dataset_default, "TFDS name of an image classification "
          "dataset (an image feature and a ClassLabel), e.g. mnist, "
          "fashion_mnist, emnist/balanced, cifar10; with --idx_dir, the name "
          f"of the dataset its files hold.{unset_means}", flag_values=fv),
      data_dir=flags.DEFINE_string(
          "data_dir", None, "TFDS data directory holding the prepared "
          "dataset; unset means TFDS's default, which honours TFDS_DATA_DIR.",
          flag_values=fv),
      idx_dir=flags.DEFINE_string(
          "idx_dir", None, "Directory with the four IDX files of the dataset "
          "(MNIST's names, plain or .gz); when set, TFDS is not read.",
          flag_values=fv),
      cache_dir=flags.DEFINE_string(
          "cache_dir", None, "Where decoded datasets are kept between runs; "
          "unset means $XDG_CACHE_HOME/logreg_tf or ~/.cache/logreg_tf, "
          "empty disables the cache.", flag_values=fv),
  )
  flags.register_validator(
      "dataset", lambda v: (v is None and dataset_default is None) or bool(
          v and v.strip()),
      message="give a TFDS dataset name, e.g. mnist or fashion_mnist",
      flag_values=fv)
  flags.register_multi_flags_validator(
      ["idx_dir", "data_dir"],
      lambda d: not (d["idx_dir"] and d["data_dir"]),
      message="--idx_dir and --data_dir name two sources of data; give one",
      flag_values=fv)
  return holders


def define_model_dir_flag(fv: flags.FlagValues,
                          help_text: str) -> flags.FlagHolder:
  holder = flags.DEFINE_string("model_dir", None, help_text, flag_values=fv)
  flags.register_validator(
      "model_dir", user_check(lambda p: p is None or workdir.check_writable(p)),
      flag_values=fv)
  return holder


def define_checkpoint_flags(fv: flags.FlagValues, verb: str,
                            required: bool = True) -> types.SimpleNamespace:
  """--model_dir or --checkpoint: the trained model a command reads (one of
  them, when `required`)."""
  holders = types.SimpleNamespace(
      model_dir=flags.DEFINE_string(
          "model_dir", None, "A training run's directory: its newest intact "
          f"checkpoint is {verb}.", flag_values=fv),
      checkpoint=flags.DEFINE_string(
          "checkpoint", None, "A checkpoint prefix "
          "(MODEL_DIR/checkpoints/ckpt-N) instead of --model_dir's newest.",
          flag_values=fv))
  if required:
    flags.register_multi_flags_validator(
        ["model_dir", "checkpoint"],
        lambda d: bool(d["model_dir"]) != bool(d["checkpoint"]),
        message="give --model_dir=DIR or --checkpoint=PATH (one of them)",
        flag_values=fv)
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
