"""Measures logreg_tf against its baselines on this machine: `make bench`.

Five targets (see README, "Speed and memory"):
  1. tutorial protocol (full batch, evaluation every epoch): time per epoch
     vs the plain TF2 loop (<= 0.5x) and vs the machine's floor (<= 2x),
     with the same final weights as the plain loop;
  2. time to 92% test accuracy with configs/fast.cfg vs NumPy SGD;
  3. start-up: process start to first step vs `import tensorflow` (<= +1 s);
  4. peak resident memory of the tutorial run (<= 1.0 GB);
  5. time per epoch linear in the number of examples; no retracing.
Then sections of their own (bench_*.py): the whole command, predict, the
distributed runs, the optimum, the server, and the scale of the data
(in memory against streamed, issue 19).
Runs are interleaved and repeated; the table shows median [min, max].

`--quick` runs every section once on small budgets (one repeat, a few
epochs, 100 PNGs, no warm-up runs, no Keras fit), in about a minute: the
test suite runs it so that the benchmark cannot rot. Its figures are not
measurements.
"""

import os
import sys

import datetime
import json
import shutil
import subprocess
import time
from typing import NamedTuple, Optional, Tuple

from absl import app, flags
import numpy as np
import tensorflow as tf

import baselines
import bench_compute as bc
import bench_distribute
import bench_epoch
import bench_optimum
import bench_process
import bench_scale
import bench_serve
import bench_table
from logreg_tf import data, loop, train
from logreg_tf.data import cache
from logreg_tf.config import DataSpec, Storage

_REPEATS = flags.DEFINE_integer("repeats", 3, "Interleaved repeats.")
_EPOCHS = flags.DEFINE_integer("epochs", 60, "Timed full-batch epochs a run.")
_JSON = flags.DEFINE_string("json", "bench-results/benchmark.json",
                            "Where to write the results.")
_SKIP_KERAS = flags.DEFINE_bool("skip_keras", False, "Leave out Keras fit.")
_PLAIN_ONLY = flags.DEFINE_bool(
    "plain_tutorial_only", False, "Internal: run only the plain TF2 loop for "
    "500 epochs, as a user would load the data, to measure its peak memory.")
_PLAIN_STEPS = flags.DEFINE_integer(
    "plain_steps", None, "Internal: run only the plain TF2 loop for this many "
    "full-batch steps (lr 0.5), then one evaluation, as a whole process.")
_SECTIONS = flags.DEFINE_list(
    "sections", ["targets", "itemized", "whole_command", "predict",
                 "distribute", "optimum", "serve", "scale"],
    "What to measure: targets (1-5 and the checkpoint save), itemized (one "
    "displayed epoch, part by part), whole_command (per step as whole "
    "processes), predict (images per second on 10,000 PNGs), distribute "
    "(2 workers against one process, mirrored against one device), optimum "
    "(the exact solvers against scikit-learn; SGD's distance to the "
    "optimum), serve (logreg-serve under 8 clients: single digits and "
    "batches of 100), scale (in memory against streamed input at 60k, 600k "
    "and 3M rows: rows per second and peak memory).")
_IDX_DIR = flags.DEFINE_string("bench_idx_dir", None, "IDX files instead of "
                               "TFDS (TFDS_DATA_DIR) for the data.")
_QUICK = flags.DEFINE_bool(
    "quick", False, "Every section once on small budgets, to check that the "
    "benchmark runs (its figures are not measurements).")
_PLAIN_EPOCHS = flags.DEFINE_integer(
    "plain_epochs", 500, "Internal: epochs of --plain_tutorial_only.")


class Budget(NamedTuple):
  """How much each section measures."""
  check_epochs: int = 500  # target 1: epochs before the weights are compared
  tutorial_epochs: int = 500  # target 4: the runs whose peak memory counts
  linear_epochs: int = 30  # target 5: epochs per training-set size
  saves: int = 30  # checkpoint saves timed
  whole_epochs: int = 200  # whole_command: T(N + 1) - T(1) over N epochs
  pngs: int = 10_000  # predict: images in the directory
  whole_commands: Optional[Tuple[str, ...]] = None  # None: all three
  distribute_epochs: int = 100  # MNIST set-ups; the 999-row ones run 10x
  distribute_mnist: bool = True  # the MNIST set-ups too (not only 999 rows)
  warm: bool = True  # warm-up runs (data cache, page cache) before timing


QUICK = Budget(check_epochs=10, tutorial_epochs=3, linear_epochs=3, saves=3,
               whole_epochs=3, pngs=100,
               whole_commands=("logreg_tf",),
               distribute_epochs=3, distribute_mnist=False, warm=False)

REPO = bc.REPO
stats = bc.stats


def _run(cmd):
  """Runs cmd; returns (seconds, peak RSS in bytes, exit status).

  The peak is the child's own VmHWM, polled from /proc: ru_maxrss would
  count the benchmark's memory, which a forked child starts out sharing.
  """
  env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
  start = time.perf_counter()
  proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL)
  peak = 0
  while proc.poll() is None:
    try:
      with open(f"/proc/{proc.pid}/status") as f:
        for line in f:
          if line.startswith("VmHWM:"):
            peak = max(peak, int(line.split()[1]) * 1024)
    except OSError:
      pass
    time.sleep(0.02)
  return time.perf_counter() - start, peak, proc.returncode


TRAIN = [sys.executable, "-m", "logreg_tf.train"]
TUTORIAL = [f"--flagfile={REPO}/configs/tutorial.cfg"]


# TensorFlow as the commands import it: without the scikit-learn (in this
# development environment) and pyplot Keras would import with it.
IMPORT = "python -c 'import tensorflow' (as the commands: cli.load_tensorflow)"


def target_3(repeats, warm=True):
  """Whole-process times: importing TensorFlow vs a 1-epoch tutorial run."""
  if warm:
    _run(TRAIN + TUTORIAL + ["--num_epochs=1"])  # fills the data cache
  commands = {
      IMPORT: [sys.executable, "-c", "from logreg_tf import cli; "
               "cli.load_tensorflow()"],
      "logreg_tf, 1 epoch": TRAIN + TUTORIAL + ["--num_epochs=1"]}
  rows = {name: [] for name in commands}
  for _ in range(repeats):
    for name, argv in commands.items():
      rows[name].append(_run(argv)[0])
  out = {k: stats(v) for k, v in rows.items()}
  out["extra_s"] = (out["logreg_tf, 1 epoch"]["median"]
                    - out[IMPORT]["median"])
  return out


def target_4(epochs=500):
  seconds, peak, status = _run(TRAIN + TUTORIAL + [f"--num_epochs={epochs}"])
  plain = _run([sys.executable, os.path.join(REPO, "scripts", "benchmark.py"),
                "--plain_tutorial_only", f"--plain_epochs={epochs}"])
  return {"logreg_tf_peak_GB": peak / 1e9, "logreg_tf_seconds": seconds,
          "status": status, "plain_tf2_peak_GB": plain[1] / 1e9}


def _mnist():
  """The same data for every measurement: IDX files, or TFDS via the cache."""
  return data.load_selected(DataSpec(), Storage(
      idx_dir=_IDX_DIR.value,
      cache_dir=None if _IDX_DIR.value else cache.default_dir()))


def load():
  """The description, NumPy arrays for the baselines, and the trainer's own
  tensors (made and placed by its data module)."""
  mnist = _mnist()
  arrays = (mnist.train_images.astype(np.float32) / np.float32(255),
            mnist.train_labels, mnist.test_images.astype(np.float32)
            / np.float32(255), mnist.test_labels)
  return mnist.info, arrays, data.to_tensors(mnist)


_SMOKE_RUNS = []  # the model directory configs/smoke.cfg was trained into


def train_smoke(model_dir):
  """configs/smoke.cfg into `model_dir`, in this process: the model predict
  and serve use. Trained once per benchmark run; later calls copy it."""
  if _SMOKE_RUNS and os.path.isdir(_SMOKE_RUNS[0]):
    if os.path.abspath(model_dir) != os.path.abspath(_SMOKE_RUNS[0]):
      shutil.rmtree(model_dir, ignore_errors=True)
      shutil.copytree(_SMOKE_RUNS[0], model_dir)
    return
  config, _ = train.configs_from_argv([f"--flagfile={REPO}/configs/smoke.cfg"])
  loop.train_and_evaluate(config, Storage(
      model_dir=model_dir, fresh=True, idx_dir=_IDX_DIR.value,
      cache_dir=None if _IDX_DIR.value else cache.default_dir()))
  _SMOKE_RUNS.append(model_dir)


def plain_tutorial_only():
  mnist = _mnist()
  to_x = lambda a: tf.cast(tf.constant(a), tf.float32) / 255.0  # the usual way
  bc.plain_epochs((to_x(mnist.train_images), tf.constant(mnist.train_labels),
                   to_x(mnist.test_images), tf.constant(mnist.test_labels)),
                  _PLAIN_EPOCHS.value, lr=0.05)


def plain_steps(steps):
  """The plain loop as a user runs it: load, train, evaluate once."""
  mnist = _mnist()
  to_x = lambda a: tf.cast(tf.constant(a), tf.float32) / 255.0
  x, y = to_x(mnist.train_images), tf.constant(mnist.train_labels)
  model = baselines.PlainTF2(bc.LR, int(x.shape[1]), mnist.info.num_classes)
  for _ in range(steps):
    float(model.train_step(x, y))
  model.eval_step(to_x(mnist.test_images), tf.constant(mnist.test_labels))


def main(argv):
  del argv
  tf.config.experimental.enable_op_determinism()
  if _PLAIN_ONLY.value:
    plain_tutorial_only()
    return
  if _PLAIN_STEPS.value is not None:
    plain_steps(_PLAIN_STEPS.value)
    return
  quick = _QUICK.value
  budget = QUICK if quick else Budget()
  repeats = 1 if quick else _REPEATS.value
  epochs = 4 if quick else _EPOCHS.value
  info, arrays, tensors = load()
  results = {"date": datetime.date.today().isoformat(),
             "machine": bc.machine(), "quick": quick, "section_seconds": {}}
  # On the disk the runs write to (runs/ and bench-results/ are beside it).
  scratch = os.path.join(REPO, "bench-results")
  sections = {
      "targets": {
          "target_1": lambda: bc.target_1(
              results["machine"], info, tensors, arrays, repeats, epochs,
              _SKIP_KERAS.value or quick, budget.check_epochs),
          "target_2": lambda: bc.target_2(info, tensors, arrays, repeats),
          "target_3": lambda: target_3(repeats, budget.warm),
          "target_4": lambda: target_4(budget.tutorial_epochs),
          "target_5": lambda: bc.target_5(info, tensors, repeats,
                                          budget.linear_epochs),
          "checkpoint_save": lambda: bench_epoch.checkpoint_save_ms(
              info, scratch, budget.saves)},
      "itemized": {"itemized": lambda: bench_epoch.itemize(
          info, tensors, scratch, epochs)},
      "whole_command": {"whole_command": lambda: bench_process.per_step(
          repeats, budget.whole_epochs, budget.warm, budget.whole_commands)},
      "predict": {"predict": lambda: bench_process.predict_throughput(
          info, _mnist(), repeats, train_smoke, budget.pngs)},
      "distribute": {"distribute": lambda: bench_distribute.scaling(
          repeats, budget.distribute_epochs, 10 * budget.distribute_epochs,
          budget.warm, mnist=budget.distribute_mnist)},
      "optimum": {"optimum": lambda: bench_optimum.optimum(
          (tensors[0].numpy(), tensors[1].numpy()), quick)},
      "serve": {"serve": lambda: bench_serve.serve_load(
          _mnist().test_images, train_smoke, quick)},
      "scale": {"scale": lambda: bench_scale.scale(_mnist(), quick)},
  }
  results["itemized_epochs"] = epochs
  for section in _SECTIONS.value:
    for name, measure in sections[section].items():
      start = time.perf_counter()
      results[name] = measure()
      results["section_seconds"][name] = time.perf_counter() - start
  text = bench_table.table(results)
  if "distribute" in results:
    text += "\n" + bench_distribute.table(results["distribute"])
  if "optimum" in results:
    text += "\n" + bench_optimum.table(results["optimum"])
  if "serve" in results:
    text += "\n" + bench_serve.table(results["serve"], results.get("predict"))
  if "scale" in results:
    text += "\n" + bench_scale.table(results["scale"])
  print(text)
  os.makedirs(os.path.dirname(os.path.abspath(_JSON.value)), exist_ok=True)
  with open(_JSON.value, "w") as f:
    json.dump({**results, "table": text}, f, indent=2, default=str)


if __name__ == "__main__":
  app.run(main)
