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

import bench_compute as bc
from logreg_tf import cache, data, loop
from logreg_tf.config import RunConfig, Storage

_REPEATS = flags.DEFINE_integer("repeats", 3, "Interleaved repeats.")
_EPOCHS = flags.DEFINE_integer("epochs", 60, "Timed full-batch epochs a run.")
_JSON = flags.DEFINE_string("json", "bench-results/benchmark.json",
                            "Where to write the results.")
_SKIP_KERAS = flags.DEFINE_bool("skip_keras", False, "Leave out Keras fit.")
_PLAIN_ONLY = flags.DEFINE_bool(
    "plain_tutorial_only", False, "Internal: run only the plain TF2 loop for "
    "500 epochs, as a user would load the data, to measure its peak memory.")
_IDX_DIR = flags.DEFINE_string("bench_idx_dir", None, "IDX files instead of "
                               "TFDS (TFDS_DATA_DIR) for the data.")

REPO = bc.REPO
stats = bc.stats


def fmt(s, unit="ms", scale=1e3):
  return (f"{s['median'] * scale:.2f} [{s['min'] * scale:.2f}, "
          f"{s['max'] * scale:.2f}] {unit}")


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


def table(r):
  m, t1, t2, t3, t4, t5 = (r[k] for k in ("machine", "target_1", "target_2",
                                          "target_3", "target_4", "target_5"))
  lines = [
      f"Machine: {m['cores']} cores ({m['cpu']}), read {m['read_GBps']:.1f} "
      f"GB/s, float32 matmul {m['matmul_GFLOPps']:.0f} GFLOP/s; "
      f"{r['date']}; TF {tf.__version__}",
      "", "| measure | result |", "| --- | --- |"]
  for name, s in t1["per_epoch"].items():
    lines.append(f"| 1. ms per tutorial epoch (step + test eval): {name} | "
                 f"{fmt(s)} |")
  lines += [
      f"| 1. floor from bandwidth and matmul rate | {t1['floor_ms']:.2f} ms |",
      "| 1. the step's two products alone, TF kernels | " + ", ".join(
          f"{k}: {v:.2f} ms" for k, v in t1["products_ms"].items()) + " |",
      f"| 1. logreg_tf / plain TF2 (target <= 0.5) | "
      f"{t1['ours_over_plain']:.2f} |",
      f"| 1. logreg_tf / floor (target <= 2) | {t1['ours_over_floor']:.2f} |",
      f"| 1. weights after 500 epochs vs plain TF2 (max rel. diff) | "
      f"{t1['weights_max_rel_diff_vs_plain']:.1e}; accuracy "
      f"{t1['ours_500']['test_accuracy']:.4f} vs "
      f"{t1['plain_500_accuracy']:.4f} |"]
  for name, s in t2["seconds"].items():
    lines.append(f"| 2. seconds to 92% test accuracy: {name} | "
                 f"{fmt(s, 's', 1)} |")
  for name, s in t3.items():
    if name != "extra_s":
      lines.append(f"| 3. process wall time: {name} | {fmt(s, 's', 1)} |")
  lines += [
      f"| 3. start-up beyond importing TensorFlow (target <= 1 s) | "
      f"{t3['extra_s']:.2f} s |",
      f"| 4. peak RSS, tutorial run: logreg_tf (target <= 1.0 GB) | "
      f"{t4['logreg_tf_peak_GB']:.2f} GB |",
      f"| 4. peak RSS, tutorial run: plain TF2 | "
      f"{t4['plain_tf2_peak_GB']:.2f} GB |"]
  for n, s in t5["per_epoch_s"].items():
    lines.append(f"| 5. ms per full-batch epoch, {n} examples | {fmt(s)} |")
  lines += [
      f"| 5. linear fit | {t5['ms_per_10k_examples']:.2f} ms per 10k examples"
      f" + {t5['intercept_ms']:.2f} ms; largest deviation "
      f"{100 * t5['max_rel_dev_from_line']:.0f}% |",
      f"| 5. traces of the epoch (+ eval) function per run (target 1) | "
      f"{t5['max_traces_per_run']} |"]
  for name, s in r["checkpoint_save"].items():
    lines.append(f"| checkpoint save (MNIST model), {name} | {fmt(s)} |")
  return "\n".join(lines)


def main(argv):
  del argv
  tf.config.experimental.enable_op_determinism()
  if _PLAIN_ONLY.value:
    plain_tutorial_only()
    return
  info, arrays, tensors = load()
  results = {"date": datetime.date.today().isoformat(),
             "machine": bc.machine()}
  results["target_1"] = bc.target_1(results["machine"], info, tensors, arrays,
                                    _REPEATS.value, _EPOCHS.value,
                                    _SKIP_KERAS.value)
  results["target_2"] = bc.target_2(info, tensors, arrays, _REPEATS.value)
  results["target_3"] = target_3(_REPEATS.value)
  results["target_4"] = target_4()
  results["target_5"] = bc.target_5(info, tensors, _REPEATS.value)
  # On the disk the runs write to (runs/ and bench-results/ are beside it).
  results["checkpoint_save"] = bc.checkpoint_save_ms(
      info, os.path.join(REPO, "bench-results"))
  text = table(results)
  print(text)
  os.makedirs(os.path.dirname(os.path.abspath(_JSON.value)), exist_ok=True)
  with open(_JSON.value, "w") as f:
    json.dump({**results, "table": text}, f, indent=2, default=str)


if __name__ == "__main__":
  app.run(main)
