"""The scale section of scripts/benchmark.py: in memory against streamed.

Synthetic 28x28 datasets of 60k, 600k and 3M training rows (MNIST's digits,
repeated, with their labels; the test split is MNIST's) are written straight
into the decoded-data cache's format (data/cache.py) under a throwaway
prepared-TFDS directory, so the runs read them as they would read any
decoded dataset. Each run is its own process (`logreg_tf.train`'s loop in a
small harness that times its epochs and reports its own peak resident
memory, VmHWM: a child's rusage would count this process's memory, which
it shared until its exec). A run is made with `--input=memory` only
where the float32 splits fit its budget.

Measured per run: peak RSS, and rows per second over the epochs after the
first (the first pays for tracing). The decode-once cost is TFDS decoding
MNIST's 70,000 PNGs into the row files, timed in its own process.

Targets (issue 19): peak RSS flat in the number of rows (<= 1.5 GB at 3M,
streamed) and streamed throughput >= 0.7x the in-memory path where both run.
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time


REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NAME, VERSION = "scale_digits", "1.0.0"

# The child: train with the flags given, print the epochs' seconds as JSON.
CHILD = r'''
import json, sys, time
from absl import logging
logging.set_verbosity(logging.WARNING)
from logreg_tf import cli
cli.load_tensorflow()  # as the command loads it
from logreg_tf import loop, train
times = []
run_epoch = loop.run_epoch
def timed(*args, **kwargs):
  start = time.perf_counter()
  out = run_epoch(*args, **kwargs)
  float(out[0].loss)  # wait for the step
  times.append(time.perf_counter() - start)
  return out
loop.run_epoch = timed
config, storage = train.configs_from_argv(sys.argv[1:])
start = time.perf_counter()
loop.train_and_evaluate(config, storage)
with open("/proc/self/status") as f:  # this process's own peak
  peak = [int(l.split()[1]) << 10 for l in f if l.startswith("VmHWM:")][0]
print(json.dumps({"epochs": times, "total": time.perf_counter() - start,
                  "peak_rss": peak}))
'''


def _prepare(root, mnist, rows):
  """A prepared-TFDS directory for `rows` training rows, and its cache."""
  from logreg_tf.data import cache
  from logreg_tf.data.dataset import DatasetInfo
  version_dir = os.path.join(root, "tfds", NAME, VERSION)
  os.makedirs(version_dir)
  with open(os.path.join(version_dir, "dataset_info.json"), "w") as f:
    f.write("{}")  # found by its name; never read: the cache answers
  info = DatasetInfo(name=NAME, version=VERSION, source=f"bench:{root}",
                     image_shape=(28, 28, 1),
                     class_names=tuple(str(i) for i in range(10)))
  cache_dir = os.path.join(root, "cache")
  start = time.perf_counter()
  images, labels = mnist.train_images, mnist.train_labels
  with cache.SplitWriter(cache_dir, version_dir, "train", info,
                         rows) as writer:
    for at in range(0, rows, len(images)):
      take = min(len(images), rows - at)
      writer.append(images[:take], labels[:take])
  written = time.perf_counter() - start
  with cache.SplitWriter(cache_dir, version_dir, "test", info,
                         len(mnist.test_labels)) as writer:
    writer.append(mnist.test_images, mnist.test_labels)
  return os.path.join(root, "tfds"), cache_dir, written


def _run(data_dir, cache_dir, flags):
  """(epoch seconds, total seconds, peak RSS bytes) of one child run."""
  cmd = [sys.executable, "-c", CHILD, f"--dataset={NAME}",
         f"--data_dir={data_dir}", f"--cache_dir={cache_dir}", *flags]
  env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
  with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile(
      "w+") as err:
    child = subprocess.run(cmd, cwd=REPO, env=env, stdout=out, stderr=err,
                           check=False)
    out.seek(0)
    err.seek(0)
    if child.returncode:
      raise RuntimeError(f"{' '.join(flags)} failed: {err.read()[-800:]}")
    result = json.loads(out.read().strip().splitlines()[-1])
  return result["epochs"], result["total"], result["peak_rss"]


def _decode_once():
  """Seconds for TFDS to decode MNIST into a fresh cache (own process)."""
  code = ("import sys, time; from logreg_tf.data import tfds as t; "
          "s = time.perf_counter(); "
          "t.load('mnist', 'train', 'test', None, sys.argv[1]); "
          "print(time.perf_counter() - s)")
  with tempfile.TemporaryDirectory() as fresh:
    done = subprocess.run([sys.executable, "-c", code, fresh], cwd=REPO,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
                          capture_output=True, text=True, check=True)
  return float(done.stdout.strip().splitlines()[-1])


def scale(mnist, quick=False, sizes=(60_000, 600_000, 3_000_000),
          epochs=5):
  """Results by size: written seconds, and per (input, batch) the epochs,
  rows per second and peak RSS."""
  from logreg_tf.data import streamed
  batches, modes = (None, 1000), ("memory", "stream")
  if quick:  # one small run, no decoding: checks that the section runs
    sizes, epochs, batches, modes = (6_000,), 3, (None,), ("stream",)
  budget = streamed.memory_budget()
  results = {"budget": budget,
             "decode_mnist_s": None if quick else _decode_once(),
             "sizes": {}}
  for rows in sizes:
    os.makedirs(os.path.join(REPO, "bench-results"), exist_ok=True)
    root = tempfile.mkdtemp(prefix="scale-",
                            dir=os.path.join(REPO, "bench-results"))
    try:
      data_dir, cache_dir, written = _prepare(root, mnist, rows)
      need = 4 * 784 * (rows + len(mnist.test_labels))
      entry = {"rows": rows, "float32_gb": need / 1e9,
               "uint8_gb": rows * 784 / 1e9, "write_s": written, "runs": {}}
      for batch in batches:
        for mode in modes:
          if mode == "memory" and budget is not None and need > budget:
            continue
          flags = [f"--input={mode}", f"--num_epochs={epochs}",
                   f"--display_step={epochs}", "--learning_rate=0.1"]
          if batch:
            flags.append(f"--batch_size={batch}")
          times, total, peak = _run(data_dir, cache_dir, flags)
          # Not the first (tracing) nor the last (it also evaluates).
          later = times[1:-1] or times
          entry["runs"][f"{mode}/{batch or 'full'}"] = {
              "epoch_s": times, "total_s": total, "peak_rss": peak,
              "rows_per_s": rows * len(later) / sum(later)}
      results["sizes"][str(rows)] = entry
    finally:
      shutil.rmtree(root, ignore_errors=True)
  return results


def table(r) -> str:
  lines = ["Scale: in memory vs streamed (synthetic 28x28 rows; rows/s over "
           "the epochs between the first and the last; peak RSS of the process)",
           "decode once: TFDS MNIST (70,000 PNGs) into row files "
           + ("not measured" if r["decode_mnist_s"] is None
              else f"{r['decode_mnist_s']:.1f} s") + "; budget "
           + ("unknown" if r["budget"] is None
              else f"{r['budget'] / 1e9:.1f} GB"),
           "| rows | uint8 / float32 GB | write s | run | rows/s | peak RSS "
           "GB | streamed / memory |",
           "| ---: | --- | ---: | --- | ---: | ---: | ---: |"]
  for size, e in r["sizes"].items():
    for name, run in e["runs"].items():
      mode, batch = name.split("/")
      ratio = ""
      if mode == "stream" and f"memory/{batch}" in e["runs"]:
        ratio = (f"{run['rows_per_s'] / e['runs'][f'memory/{batch}']['rows_per_s']:.2f}x")
      lines.append(
          f"| {int(size):,} | {e['uint8_gb']:.2f} / {e['float32_gb']:.2f} | "
          f"{e['write_s']:.1f} | {name} | {run['rows_per_s']:,.0f} | "
          f"{run['peak_rss'] / 1e9:.2f} | {ratio} |")
  return "\n".join(lines) + "\n"


if __name__ == "__main__":
  sys.path.insert(0, REPO)
  from logreg_tf import data
  from logreg_tf.config import DataSpec, Storage
  from logreg_tf.data import cache
  mnist = data.load(DataSpec(), Storage(cache_dir=cache.default_dir()))
  out = scale(mnist, quick="--quick" in sys.argv)
  print(table(out))
  print(json.dumps(out, indent=1))
