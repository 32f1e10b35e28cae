"""Measures logreg_tf against its baselines on this machine: `make bench`.

Five targets (see README, "Speed and memory"):
  1. tutorial protocol (full batch, evaluation every epoch): time per epoch
     vs the plain TF2 loop (<= 0.5x) and vs the machine's floor (<= 2x),
     with the same final weights as the plain loop;
  2. time to 92% test accuracy with configs/fast.cfg vs NumPy SGD;
  3. start-up: process start to first step vs `import tensorflow` (<= +1 s);
  4. peak resident memory of the tutorial run (<= 1.0 GB);
  5. time per epoch linear in the number of examples; no retracing.
Runs are interleaved and repeated; the table shows median [min, max].
"""

import os
import sys

import datetime
import json
import subprocess
import time

from absl import app, flags
import numpy as np
import tensorflow as tf

import baselines
import bench_compute as bc
import bench_distribute
import bench_epoch
import bench_process
import bench_table
from logreg_tf import data, loop
from logreg_tf.data import cache
from logreg_tf.config import RunConfig, Storage

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
                 "distribute"],
    "What to measure: targets (1-5 and the checkpoint save), itemized (one "
    "displayed epoch, part by part), whole_command (per step as whole "
    "processes), predict (images per second on 10,000 PNGs), distribute "
    "(2 workers against one process, mirrored against one device).")
_IDX_DIR = flags.DEFINE_string("bench_idx_dir", None, "IDX files instead of "
                               "TFDS (TFDS_DATA_DIR) for the data.")

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


def target_3(repeats):
  """Whole-process times: `import tensorflow` vs a 1-epoch tutorial run."""
  _run(TRAIN + TUTORIAL + ["--num_epochs=1"])  # fills the data cache
  rows = {"python -c 'import tensorflow'": [], "logreg_tf, 1 epoch": []}
  for _ in range(repeats):
    rows["python -c 'import tensorflow'"].append(
        _run([sys.executable, "-c", "import tensorflow"])[0])
    rows["logreg_tf, 1 epoch"].append(
        _run(TRAIN + TUTORIAL + ["--num_epochs=1"])[0])
  out = {k: stats(v) for k, v in rows.items()}
  out["extra_s"] = (out["logreg_tf, 1 epoch"]["median"]
                    - out["python -c 'import tensorflow'"]["median"])
  return out


def target_4():
  seconds, peak, status = _run(TRAIN + TUTORIAL)
  plain = _run([sys.executable, os.path.join(REPO, "scripts", "benchmark.py"),
                "--plain_tutorial_only"])
  return {"logreg_tf_peak_GB": peak / 1e9, "logreg_tf_seconds": seconds,
          "status": status, "plain_tf2_peak_GB": plain[1] / 1e9}


def _mnist():
  """The same data for every measurement: IDX files, or TFDS via the cache."""
  return loop.load_data(RunConfig(), Storage(
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


def plain_tutorial_only():
  mnist = _mnist()
  to_x = lambda a: tf.cast(tf.constant(a), tf.float32) / 255.0  # the usual way
  bc.plain_epochs((to_x(mnist.train_images), tf.constant(mnist.train_labels),
                to_x(mnist.test_images), tf.constant(mnist.test_labels)),
               500, lr=0.05)


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
  info, arrays, tensors = load()
  results = {"date": datetime.date.today().isoformat(),
             "machine": bc.machine()}
  # On the disk the runs write to (runs/ and bench-results/ are beside it).
  scratch = os.path.join(REPO, "bench-results")
  if "targets" in _SECTIONS.value:
    results["target_1"] = bc.target_1(results["machine"], info, tensors,
                                      arrays, _REPEATS.value, _EPOCHS.value,
                                      _SKIP_KERAS.value)
    results["target_2"] = bc.target_2(info, tensors, arrays, _REPEATS.value)
    results["target_3"] = target_3(_REPEATS.value)
    results["target_4"] = target_4()
    results["target_5"] = bc.target_5(info, tensors, _REPEATS.value)
    results["checkpoint_save"] = bench_epoch.checkpoint_save_ms(info,
                                                                scratch)
  if "itemized" in _SECTIONS.value:
    results["itemized"] = bench_epoch.itemize(info, tensors, scratch)
  if "whole_command" in _SECTIONS.value:
    results["whole_command"] = bench_process.per_step(_REPEATS.value)
  if "predict" in _SECTIONS.value:
    results["predict"] = bench_process.predict_throughput(
        info, _mnist(), _REPEATS.value)
  if "distribute" in _SECTIONS.value:
    results["distribute"] = bench_distribute.scaling(_REPEATS.value)
  text = bench_table.table(results)
  if "distribute" in results:
    text += "\n" + bench_distribute.table(results["distribute"])
  print(text)
  os.makedirs(os.path.dirname(os.path.abspath(_JSON.value)), exist_ok=True)
  with open(_JSON.value, "w") as f:
    json.dump({**results, "table": text}, f, indent=2, default=str)


if __name__ == "__main__":
  app.run(main)
