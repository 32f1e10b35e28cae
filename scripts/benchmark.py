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

import datetime
import json
import os
import platform
import subprocess
import sys
import time

from absl import app, flags
import numpy as np
import tensorflow as tf

import baselines
from logreg_tf import cache, data, loop, train
from logreg_tf.config import Config

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

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LR = 0.5  # the issue's side-by-side protocol: 500 steps, lr 0.5, zero init


def stats(values):
  v = np.asarray(values, float)
  return {"median": float(np.median(v)), "min": float(v.min()),
          "max": float(v.max())}


def fmt(s, unit="ms", scale=1e3):
  return (f"{s['median'] * scale:.2f} [{s['min'] * scale:.2f}, "
          f"{s['max'] * scale:.2f}] {unit}")


def timed(fn, reps):
  out = []
  for _ in range(reps):
    start = time.perf_counter()
    fn()
    out.append(time.perf_counter() - start)
  return out


def machine():
  """Read bandwidth (2 threads, TF) and float32 matrix-product rate."""
  big = tf.ones([128 * 1024 * 1024])  # 512 MB, far beyond the caches
  read = tf.function(lambda: tf.reduce_sum(big))
  read().numpy()
  t_read = np.median(timed(lambda: read().numpy(), 15))
  a = tf.random.stateless_normal([2048, 2048], seed=[1, 2])
  mm = tf.function(lambda: tf.reduce_sum(tf.matmul(a, a)))
  mm().numpy()
  t_mm = np.median(timed(lambda: mm().numpy(), 10))
  del big
  return {"read_GBps": 512 * 2**20 / t_read / 1e9,
          "matmul_GFLOPps": 2 * 2048**3 / t_mm / 1e9,
          "cpu": platform.processor() or platform.machine(),
          "cores": os.cpu_count()}


def floor_ms(m, n, n_test, d=784, k=10):
  read = (2 * n * d + n_test * d) * 4  # X twice per step, the test set once
  flops = 2 * (2 * n * d * k) + 2 * n_test * d * k
  return 1e3 * max(read / (m["read_GBps"] * 1e9),
                   flops / (m["matmul_GFLOPps"] * 1e9))


def ours_epochs(tensors, epochs, lr=LR, n=None):
  """Our loop's per-epoch work (train_epoch + evaluate); seconds per epoch."""
  x, y, xt, yt = tensors
  if n is not None:
    x, y = x[:n], y[:n]
  _, _, steps = loop.build(Config(learning_rate=lr, num_epochs=epochs),
                           int(x.shape[0]))
  times = []
  for epoch in range(1, epochs + 1):
    start = time.perf_counter()
    loss, _, _ = steps.train_epoch(x, y, tf.constant(epoch, tf.int64))
    float(loss)
    metrics = loop.evaluate(steps, xt, yt)
    times.append(time.perf_counter() - start)
  return times, steps, metrics


def plain_epochs(tensors, epochs, lr=LR):
  x, y, xt, yt = tensors
  model = baselines.PlainTF2(lr)
  times = []
  for _ in range(epochs):
    start = time.perf_counter()
    float(model.train_step(x, y))
    loss, acc = model.eval_step(xt, yt)
    float(loss), float(acc)
    times.append(time.perf_counter() - start)
  return times, model, float(acc)


def numpy_epochs(arrays, epochs, lr=LR):
  x, y, xt, yt = arrays
  w = np.zeros((784, 10), np.float32)
  times = []
  for _ in range(epochs):
    start = time.perf_counter()
    baselines.numpy_full_batch_epoch(w, x, y, xt, yt, lr)
    times.append(time.perf_counter() - start)
  return times


def target_1(m, tensors, arrays):
  """Tutorial protocol, interleaved; steady state excludes the first epoch."""
  runs = {"logreg_tf": [], "plain TF2 (tape)": [], "NumPy reference": []}
  if not _SKIP_KERAS.value:
    runs["Keras fit (NumPy arrays)"] = []
  first = {k: [] for k in runs}
  for _ in range(_REPEATS.value):
    for name in runs:
      if name == "logreg_tf":
        t = ours_epochs(tensors, _EPOCHS.value)[0]
      elif name.startswith("plain"):
        t = plain_epochs(tensors, _EPOCHS.value)[0]
      elif name.startswith("NumPy"):
        t = numpy_epochs(arrays, max(_EPOCHS.value // 4, 5))
      else:
        t = baselines.keras_fit_epoch_times(*arrays, LR, _EPOCHS.value)[0]
      first[name].append(t[0])
      runs[name].append(float(np.median(t[1:])))
  # Same math: 500 epochs each, final weights side by side.
  _, steps, ours_metrics = ours_epochs(tensors, 500)
  _, plain, plain_acc = plain_epochs(tensors, 500)
  w_ours = steps.model.kernel.numpy()
  w_plain = plain.w.numpy()
  diff = float(np.max(np.abs(w_ours - w_plain)) / np.max(np.abs(w_plain)))
  floor = floor_ms(m, int(tensors[0].shape[0]), int(tensors[2].shape[0]))
  ours = np.median(runs["logreg_tf"]) * 1e3
  plain_ms = np.median(runs["plain TF2 (tape)"]) * 1e3
  return {"per_epoch": {k: stats(v) for k, v in runs.items()},
          "first_epoch": {k: stats(v) for k, v in first.items()},
          "floor_ms": floor, "ours_over_plain": ours / plain_ms,
          "ours_over_floor": ours / floor,
          "weights_max_rel_diff_vs_plain": diff,
          "ours_500": ours_metrics, "plain_500_accuracy": plain_acc}


def fast_config():
  flags.FLAGS(["benchmark", f"--flagfile={REPO}/configs/fast.cfg"],
              known_only=True)
  return train.config_from_flags()


def ours_to(target, config, tensors, steps=None):
  """Seconds of training + evaluation until `target` test accuracy."""
  x, y, xt, yt = tensors
  if steps is None:
    _, _, steps = loop.build(config, int(x.shape[0]))
  start = time.perf_counter()
  for epoch in range(1, config.num_epochs + 1):
    steps.train_epoch(x, y, tf.constant(epoch, tf.int64))
    if epoch % config.display_step == 0 or epoch == config.num_epochs:
      acc = loop.evaluate(steps, xt, yt)["test_accuracy"]
      if acc >= target:
        return time.perf_counter() - start, epoch, acc, steps
  return None, config.num_epochs, acc, steps


def reset(steps, config):
  """Back to the initial weights and step count, keeping the traced code."""
  fresh, _, _ = loop.build(config, 1)
  for v, init in zip(steps.model.weights, fresh.weights):
    v.assign(init)
  steps.optimizer.iterations.assign(0)


def target_2(tensors, arrays, target=0.92):
  config = fast_config()
  rows = {"logreg_tf cold (incl. tracing, XLA compile)": [],
          "logreg_tf warm": [], "NumPy SGD, batch 100, lr 1.0 linear": []}
  reached = {}
  for _ in range(_REPEATS.value):
    t, epoch, acc, steps = ours_to(target, config, tensors)
    rows["logreg_tf cold (incl. tracing, XLA compile)"].append(t or np.inf)
    reset(steps, config)
    t, epoch, acc, _ = ours_to(target, config, tensors, steps)
    rows["logreg_tf warm"].append(t or np.inf)
    reached["logreg_tf"] = {"epoch": epoch, "accuracy": acc}
    t, step, acc = baselines.numpy_minibatch_to(target, *arrays)
    rows["NumPy SGD, batch 100, lr 1.0 linear"].append(t or np.inf)
    reached["numpy"] = {"step": step, "accuracy": acc}
  return {"seconds": {k: stats(v) for k, v in rows.items()},
          "reached": reached, "config": str(config)}


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


def target_3():
  """Whole-process times: `import tensorflow` vs a 1-epoch tutorial run."""
  _run(TRAIN + TUTORIAL + ["--num_epochs=1"])  # fills the data cache
  rows = {"python -c 'import tensorflow'": [], "logreg_tf, 1 epoch": []}
  for _ in range(_REPEATS.value):
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


def target_5(tensors):
  sizes = (10_000, 20_000, 40_000, 60_000)
  per = {n: [] for n in sizes}
  traces = []
  for _ in range(_REPEATS.value):
    for n in sizes:
      times, steps, _ = ours_epochs(tensors, 30, n=n)
      per[n].append(float(np.median(times[1:])))
      traces.append(steps.train_epoch.experimental_get_tracing_count())
  medians = np.array([np.median(per[n]) for n in sizes])
  slope, intercept = np.polyfit(np.array(sizes, float), medians, 1)
  fit = slope * np.array(sizes) + intercept
  return {"per_epoch_s": {str(n): stats(per[n]) for n in sizes},
          "ms_per_10k_examples": slope * 1e4 * 1e3, "intercept_ms":
          intercept * 1e3, "max_rel_dev_from_line": float(
              np.max(np.abs(fit - medians) / medians)),
          "max_traces_per_run": max(traces)}


def load():
  mnist = data.load(idx_dir=_IDX_DIR.value, cache_dir=None if _IDX_DIR.value
                    else cache.default_dir())
  arrays = (mnist.train_images.astype(np.float32) / np.float32(255),
            mnist.train_labels, mnist.test_images.astype(np.float32)
            / np.float32(255), mnist.test_labels)
  tensors = (data.to_features(mnist.train_images),
             tf.constant(mnist.train_labels),
             data.to_features(mnist.test_images),
             tf.constant(mnist.test_labels))
  return mnist, arrays, tensors


def plain_tutorial_only():
  mnist = data.load(idx_dir=_IDX_DIR.value, cache_dir=None if _IDX_DIR.value
                    else cache.default_dir())
  to_x = lambda a: tf.cast(tf.constant(a), tf.float32) / 255.0  # the usual way
  plain_epochs((to_x(mnist.train_images), tf.constant(mnist.train_labels),
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
      f"| 5. traces of the epoch function per run (target 1) | "
      f"{t5['max_traces_per_run']} |"]
  return "\n".join(lines)


def main(argv):
  del argv
  tf.config.experimental.enable_op_determinism()
  if _PLAIN_ONLY.value:
    plain_tutorial_only()
    return
  _, arrays, tensors = load()
  results = {"date": datetime.date.today().isoformat(), "machine": machine()}
  results["target_1"] = target_1(results["machine"], tensors, arrays)
  results["target_2"] = target_2(tensors, arrays)
  results["target_3"] = target_3()
  results["target_4"] = target_4()
  results["target_5"] = target_5(tensors)
  text = table(results)
  print(text)
  os.makedirs(os.path.dirname(os.path.abspath(_JSON.value)), exist_ok=True)
  with open(_JSON.value, "w") as f:
    json.dump({**results, "table": text}, f, indent=2, default=str)


if __name__ == "__main__":
  app.run(main)
