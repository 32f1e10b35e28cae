"""In-process measurements for scripts/benchmark.py: targets 1, 2 and 5.

Each timed run calls logreg_tf's own code: `loop.build` for the model and
steps, `loop.run_epoch` for an epoch (with its evaluation on display epochs)
and `RunConfig.is_display_epoch` for which epochs those are. The baselines
live in baselines.py.
"""

import os
import platform
import time

import numpy as np
import tensorflow as tf

import baselines
from logreg_tf import loop, train
from logreg_tf.config import RunConfig

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LR = 0.5  # the issue's side-by-side protocol: 500 steps, lr 0.5, zero init


def stats(values):
  v = np.asarray(values, float)
  return {"median": float(np.median(v)), "min": float(v.min()),
          "max": float(v.max())}


def timed(fn, reps):
  out = []
  for _ in range(reps):
    start = time.perf_counter()
    fn()
    out.append(time.perf_counter() - start)
  return out


def _cpu_name():
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        if line.startswith("model name"):
          return line.split(":", 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or platform.machine()


def machine():
  """Read bandwidth (2 threads, TF) and float32 matrix-product rate."""
  big = tf.ones([128 * 1024 * 1024])  # 512 MB, far beyond the caches
  read = tf.function(lambda: tf.reduce_sum(big))
  read().numpy()
  # The best of many runs: what the memory can deliver, a stricter floor
  # than a median that other processes' traffic has slowed.
  t_read = min(timed(lambda: read().numpy(), 25))
  a = tf.random.stateless_normal([2048, 2048], seed=[1, 2])
  mm = tf.function(lambda: tf.reduce_sum(tf.matmul(a, a)))
  mm().numpy()
  t_mm = min(timed(lambda: mm().numpy(), 10))
  return {"read_GBps": 512 * 2**20 / t_read / 1e9,
          "matmul_GFLOPps": 2 * 2048**3 / t_mm / 1e9,
          "cpu": _cpu_name(),
          "cores": os.cpu_count()}


def floor_ms(m, n, n_test, d, k):
  read = (2 * n * d + n_test * d) * 4  # X twice per step, the test set once
  flops = 2 * (2 * n * d * k) + 2 * n_test * d * k
  return 1e3 * max(read / (m["read_GBps"] * 1e9),
                   flops / (m["matmul_GFLOPps"] * 1e9))


def ours_epochs(info, tensors, epochs, lr=LR, n=None):
  """Our loop's per-epoch work (epoch + evaluation); seconds per epoch."""
  x, y, xt, yt = tensors
  if n is not None:
    tensors = (x[:n], y[:n], xt, yt)
  config = RunConfig(learning_rate=lr, num_epochs=epochs)
  steps = loop.build(config, info, int(tensors[0].shape[0]))
  times = []
  for epoch in range(1, epochs + 1):
    start = time.perf_counter()
    result, metrics = loop.run_epoch(steps, tensors, epoch,
                                     config.is_display_epoch(epoch))
    float(result.loss)
    times.append(time.perf_counter() - start)
  return times, steps, metrics


def plain_epochs(tensors, epochs, lr=LR):
  x, y, xt, yt = tensors
  model = baselines.PlainTF2(lr, int(x.shape[1]),
                             int(tf.reduce_max(y)) + 1)
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
  w = np.zeros((x.shape[1], int(y.max()) + 1), np.float32)
  times = []
  for _ in range(epochs):
    start = time.perf_counter()
    baselines.numpy_full_batch_epoch(w, x, y, xt, yt, lr)
    times.append(time.perf_counter() - start)
  return times


def products_ms(tensors, k):
  """The two products of a step, alone: what bounds an epoch here."""
  x = tensors[0]
  w = tf.zeros([x.shape[1], k])
  delta = tf.zeros([x.shape[0], k])
  forward = tf.function(lambda: tf.matmul(x, w))
  backward = tf.function(lambda: tf.matmul(delta, x, transpose_a=True))
  out = {}
  for name, fn in (("X W", forward), ("(P - Y)^T X", backward)):
    fn().numpy()
    out[name] = 1e3 * float(np.median(timed(lambda f=fn: f().numpy(), 30)))
  return out


def target_1(m, info, tensors, arrays, repeats, epochs, skip_keras,
             check_epochs=500):
  """Tutorial protocol, interleaved; steady state excludes the first epoch.
  The final weights are compared with the plain loop's after
  `check_epochs`."""
  runs = {"logreg_tf": [], "plain TF2 (tape)": [], "NumPy reference": []}
  if not skip_keras:
    runs["Keras fit (NumPy arrays)"] = []
  first = {k: [] for k in runs}
  for _ in range(repeats):
    for name in runs:
      if name == "logreg_tf":
        t = ours_epochs(info, tensors, epochs)[0]
      elif name.startswith("plain"):
        t = plain_epochs(tensors, epochs)[0]
      elif name.startswith("NumPy"):
        t = numpy_epochs(arrays, max(epochs // 4, 5))
      else:
        t = baselines.keras_fit_epoch_times(*arrays, LR, epochs)[0]
      first[name].append(t[0])
      runs[name].append(float(np.median(t[1:])))
  # Same math: the same epochs each, final weights side by side.
  _, steps, ours_metrics = ours_epochs(info, tensors, check_epochs)
  _, plain, plain_acc = plain_epochs(tensors, check_epochs)
  w_ours = steps.model.kernel.numpy()
  w_plain = plain.w.numpy()
  diff = float(np.max(np.abs(w_ours - w_plain)) / np.max(np.abs(w_plain)))
  floor = floor_ms(m, int(tensors[0].shape[0]), int(tensors[2].shape[0]),
                   info.num_features, info.num_classes)
  products = products_ms(tensors, info.num_classes)
  ours = np.median(runs["logreg_tf"]) * 1e3
  plain_ms = np.median(runs["plain TF2 (tape)"]) * 1e3
  return {"per_epoch": {k: stats(v) for k, v in runs.items()},
          "first_epoch": {k: stats(v) for k, v in first.items()},
          "floor_ms": floor, "products_ms": products,
          "ours_over_plain": ours / plain_ms,
          "ours_over_floor": ours / floor,
          "weights_max_rel_diff_vs_plain": diff,
          "ours_500": ours_metrics, "plain_500_accuracy": plain_acc}


def fast_config():
  return train.configs_from_argv([f"--flagfile={REPO}/configs/fast.cfg"])[0]


def ours_to(target, config, info, tensors, steps=None):
  """Seconds of training + evaluation until `target` test accuracy."""
  if steps is None:
    steps = loop.build(config, info, int(tensors[0].shape[0]))
  start = time.perf_counter()
  acc = 0.0
  for epoch in range(1, config.num_epochs + 1):
    result, metrics = loop.run_epoch(steps, tensors, epoch,
                                     config.is_display_epoch(epoch))
    float(result.loss)
    if metrics is not None:
      acc = metrics["test_accuracy"]
      if acc >= target:
        return time.perf_counter() - start, epoch, acc, steps
  return None, config.num_epochs, acc, steps


def reset(steps, config, info):
  """Back to the initial weights and step count, keeping the traced code."""
  fresh = loop.build(config, info, 1)
  for v, init in zip(steps.model.weights, fresh.model.weights):
    v.assign(init)
  steps.optimizer.iterations.assign(0)


def target_2(info, tensors, arrays, repeats, target=0.92):
  config = fast_config()
  cold = "logreg_tf, new build (tracing and XLA compilation)"
  rows = {cold: [], "logreg_tf, steady state": [],
          "NumPy SGD, batch 100, lr 1.0 linear": []}
  reached = {}
  for _ in range(repeats):
    t, epoch, acc, steps = ours_to(target, config, info, tensors)
    rows[cold].append(t or np.inf)
    reset(steps, config, info)
    t, epoch, acc, _ = ours_to(target, config, info, tensors, steps)
    rows["logreg_tf, steady state"].append(t or np.inf)
    reached["logreg_tf"] = {"epoch": epoch, "accuracy": acc}
    t, step, acc = baselines.numpy_minibatch_to(target, *arrays)
    rows["NumPy SGD, batch 100, lr 1.0 linear"].append(t or np.inf)
    reached["numpy"] = {"step": step, "accuracy": acc}
  return {"seconds": {k: stats(v) for k, v in rows.items()},
          "reached": reached, "config": str(config)}


def target_5(info, tensors, repeats, epochs=30):
  sizes = (10_000, 20_000, 40_000, 60_000)
  per = {n: [] for n in sizes}
  traces = []
  for _ in range(repeats):
    for n in sizes:
      times, steps, _ = ours_epochs(info, tensors, epochs, n=n)
      per[n].append(float(np.median(times[1:])))
      traces.append(
          steps.train_epoch_and_eval.experimental_get_tracing_count())
  medians = np.array([np.median(per[n]) for n in sizes])
  slope, intercept = np.polyfit(np.array(sizes, float), medians, 1)
  fit = slope * np.array(sizes) + intercept
  return {"per_epoch_s": {str(n): stats(per[n]) for n in sizes},
          "ms_per_10k_examples": slope * 1e4 * 1e3, "intercept_ms":
          intercept * 1e3, "max_rel_dev_from_line": float(
              np.max(np.abs(fit - medians) / medians)),
          "max_traces_per_run": max(traces)}


