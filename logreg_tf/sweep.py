"""Command line: `python -m logreg_tf.sweep --sweep_dir=DIR`.

Chooses l2 honestly: the regularisation path (solvers/path.py) is solved
exactly on --train_split, every l2 is scored on --validation_split, the
choice (by validation loss, or accuracy) is fixed, and only then is the
chosen l2 refit on train + validation and the test split evaluated, as an
ordinary run in DIR/refit (evaluate, export and predict take it). The test
accuracy of each trial is computed after the choice, for the figure only.

DIR holds all it writes: sweep.json, sweep.csv, sweep.png, TensorBoard runs
(DIR/tensorboard: one run per trial under a parent holding the HParams
config, so the HParams tab compares them) and the refit run.
"""

import dataclasses
import json
import math
import os
import time
import types
from typing import List, Tuple

from absl import flags
from absl import logging
import numpy as np

from logreg_tf import cli
from logreg_tf import config as config_lib
from logreg_tf.errors import UserError

PROG = "logreg-sweep"


@dataclasses.dataclass(frozen=True)
class SweepConfig:
  """What a sweep is: sweep.json keeps it, and a second sweep in the same
  directory must be the same one."""

  dataset: str = "mnist"
  train_split: str = "train[:50000]"
  validation_split: str = "train[50000:]"
  test_split: str = "test"
  classes: Tuple[str, ...] = ()
  l2: Tuple[float, ...] = ()
  solver: str = "newton_cg"
  tol: float = 1e-6
  max_iter: int = 1000
  select_by: str = "loss"
  use_bias: bool = True

  def data(self, train: str, test: str) -> config_lib.DataSpec:
    return config_lib.DataSpec(self.dataset, train, test,
                               self.classes or None)

  def refit(self, l2: float) -> config_lib.RunConfig:
    """The chosen l2 on train + validation; the test split evaluated once,
    at the end (display_step = max_iter)."""
    return config_lib.RunConfig(
        dataset=self.dataset, classes=self.classes or None,
        train_split=f"{self.train_split}+{self.validation_split}",
        test_split=self.test_split, solver=self.solver, l2=l2, tol=self.tol,
        max_iter=self.max_iter, display_step=self.max_iter,
        use_bias=self.use_bias)


def parse_grid(text: str) -> List[float]:
  """'low:high:count' (log-spaced, both ends included) or a comma list."""
  text = text.strip()
  try:
    if ":" in text:
      low, high, count = text.split(":")
      low, high, count = float(low), float(high), int(count)
      if not (0 < low < high and count >= 2):
        raise ValueError
      return list(np.geomspace(low, high, count))
    values = [float(v) for v in text.split(",")]
  except ValueError:
    raise UserError("give low:high:count with 0 < low < high and count >= 2 "
                    "(log-spaced, e.g. 1e-7:1e-1:25), or l2 values joined "
                    "by commas") from None
  if not values or any(not (v > 0 and math.isfinite(v)) for v in values):
    raise UserError("every l2 of a sweep must be a finite number > 0")
  return sorted(set(values))


def define_flags(fv: flags.FlagValues) -> types.SimpleNamespace:
  define = lambda kind, *args, **kw: getattr(flags, f"DEFINE_{kind}")(
      *args, flag_values=fv, **kw)
  f = types.SimpleNamespace(data=cli.define_data_flags(fv))
  f.train_split = define("string", "train_split", "train[:50000]",
                         "TFDS split the path is solved on.")
  f.validation_split = define(
      "string", "validation_split", "train[50000:]", "TFDS split that scores "
      "each l2; it must share no row with --train_split.")
  f.test_split = define("string", "test_split", "test", "TFDS split the "
                        "refit model is tested on, once.")
  f.classes = define("string", "classes", "", "As logreg-train's --classes.")
  f.l2 = define("string", "l2", "1e-7:1e-1:25", "The l2 values: "
                "low:high:count, log-spaced with both ends, or a comma list.")
  f.solver = define("enum", "solver", "newton_cg", ["lbfgs", "newton_cg"],
                    "The exact solver of each point.")
  f.tol = define("float", "tol", 1e-6, "Each solve stops once its certified "
                 "suboptimality bound is at most this.")
  f.max_iter = define("integer", "max_iter", 1000, "Most iterations of each "
                      "solve.", lower_bound=1)
  f.select_by = define("enum", "select_by", "loss", ["loss", "accuracy"],
                       "Choose the l2 of the lowest validation loss, or of "
                       "the highest validation accuracy (ties: larger l2).")
  f.use_bias = define("bool", "use_bias", True, "Learn a bias per output.")
  f.sweep_dir = define("string", "sweep_dir", None, "Directory for "
                       "everything the sweep writes.", required=True)
  check = lambda *a, **kw: flags.register_validator(*a, flag_values=fv, **kw)
  check("l2", cli.user_check(parse_grid))
  check("classes", cli.user_check(config_lib.parse_classes))
  check("tol", lambda v: v > 0, message="must be a finite number > 0")
  from logreg_tf.rundir import workdir
  check("sweep_dir", cli.user_check(workdir.check_writable))
  return f


def config_from_flags(f) -> SweepConfig:
  return SweepConfig(
      dataset=f.data.dataset.value.strip(),
      train_split=f.train_split.value.strip(),
      validation_split=f.validation_split.value.strip(),
      test_split=f.test_split.value.strip(),
      classes=config_lib.parse_classes(f.classes.value) or (),
      l2=tuple(parse_grid(f.l2.value)), solver=f.solver.value,
      tol=f.tol.value, max_iter=f.max_iter.value,
      select_by=f.select_by.value, use_bias=f.use_bias.value)


def check_new(sweep_dir: str, config: SweepConfig) -> None:
  """A directory holding another sweep is refused; the same sweep is run
  again."""
  path = os.path.join(sweep_dir, "sweep.json")
  if not os.path.exists(path):
    return
  try:
    with open(path) as f:
      held = json.load(f)["config"]
  except (OSError, ValueError, KeyError, TypeError) as e:
    raise UserError(f"--sweep_dir={sweep_dir}: its sweep.json cannot be "
                    f"read ({e}); use another --sweep_dir") from e
  ours = json.loads(json.dumps(dataclasses.asdict(config)))
  changed = [f"{k} {held.get(k)!r} -> {v!r}" for k, v in ours.items()
             if held.get(k) != v]
  if changed:
    raise UserError(
        f"--sweep_dir={sweep_dir} holds another sweep ({'; '.join(changed)})"
        "; use another --sweep_dir, or delete that one")


def main(f, argv) -> None:
  del argv
  config = config_from_flags(f)
  storage = cli.storage_from_flags(f.data)
  sweep_dir = f.sweep_dir.value
  check_new(sweep_dir, config)
  cli.load_tensorflow()
  import tensorflow as tf
  tf.config.experimental.enable_op_determinism()
  from logreg_tf import data
  data.check_held_out(config.data(config.train_split, config.test_split),
                      config.validation_split, storage)
  from logreg_tf.solvers import selection
  start = time.perf_counter()
  result = selection.run(config, storage, sweep_dir)
  logging.info("sweep done in %.1f s: l2 %.3g chosen by validation %s; "
               "refit test accuracy %.4f (%s)", time.perf_counter() - start,
               result["chosen"]["l2"], config.select_by,
               result["refit"]["final_metrics"]["test_accuracy"],
               os.path.join(sweep_dir, "sweep.json"))


COMMAND = cli.Command(PROG, define_flags, main)


def run():
  cli.run_command(COMMAND)


if __name__ == "__main__":
  run()
