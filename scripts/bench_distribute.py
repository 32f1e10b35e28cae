"""tf.distribute on this machine, for scripts/benchmark.py (issue 12).

Whole commands, (T(N + 1 epochs) - T(1 epoch)) / N with --display_step
equal to the epochs, so that start-up, data loading and the cluster's
forming cancel out:

- one process on both cores (one_device) against two workers pinned to one
  core each (multi_worker over 127.0.0.1): each worker computes half of each
  full batch, then the gradient is all-reduced. Per step and examples per
  second; scaling efficiency = T(one process) / T(two workers).
- the same two set-ups on 999 rows (random IDX data), where the products
  cost next to nothing: the difference is the cluster's own cost per step
  (the all-reduces of gradient and loss, the per-epoch stop agreement, and
  the extra Python of a distributed step).
- mirrored on 2 logical CPU devices against one device, in one process.
"""

import os
import subprocess
import sys
import tempfile
import time

import numpy as np

import launch_local

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRAIN = [sys.executable, "-m", "logreg_tf.train"]
sys.path.insert(0, os.path.join(REPO, "tests"))


def _env(**extra):
  return {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **extra}


def _check(procs, what):
  for p in procs:
    _, err = p.communicate()
    if p.returncode != 0:
      raise RuntimeError(f"{what} failed: {err[-800:]}")


def _one(flags, cores="0,1"):
  start = time.perf_counter()
  _check([subprocess.Popen(["taskset", "-c", cores, *TRAIN, *flags],
                           cwd=REPO, env=_env(), stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE, text=True)], "one process")
  return time.perf_counter() - start


def _two_workers(flags):
  """Two workers, worker i pinned to core i, as launch_local starts them."""
  addresses = [f"127.0.0.1:{p}" for p in launch_local.free_ports(2)]
  start = time.perf_counter()
  procs = [subprocess.Popen(
      ["taskset", "-c", str(i), *TRAIN, "--strategy=multi_worker", *flags],
      cwd=REPO, env=_env(TF_CONFIG=launch_local.tf_config(addresses, i)),
      stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
      for i in range(2)]
  _check(procs, "two workers")
  return time.perf_counter() - start


def _flags(n, data):
  return [f"--num_epochs={n}", f"--display_step={n}", "--learning_rate=0.5",
          *data]


def scaling(rounds: int, epochs: int = 100, tiny_epochs: int = 1000,
            warm: bool = True, mnist: bool = True):
  """Per-step seconds of each set-up, `rounds` interleaved rounds. The
  999-row set-ups run more epochs: their steps are short beside the noise
  of a process's start."""
  from conftest import make_idx_dir
  with tempfile.TemporaryDirectory() as tmp:
    tiny = make_idx_dir(os.path.join(tmp, "idx"), n_train=999, n_test=101)[0]
    setups = {
        "MNIST, one process, 2 cores": lambda n: _one(_flags(n, [])),
        "MNIST, 2 workers, 1 core each": lambda n: _two_workers(
            _flags(n, [])),
        "MNIST, mirrored on 2 logical CPUs": lambda n: _one(_flags(n, [
            "--strategy=mirrored", "--cpu_devices=2"])),
        "999 rows, one process": lambda n: _one(_flags(n, [
            f"--idx_dir={tiny}", "--cache_dir="])),
        "999 rows, 2 workers": lambda n: _two_workers(_flags(n, [
            f"--idx_dir={tiny}", "--cache_dir="])),
    }
    if not mnist:  # the quick check: the 999-row set-ups alone
      setups = {k: v for k, v in setups.items() if k.startswith("999")}
    for run in setups.values() if warm else ():  # the data cache, pages
      run(1)
    per_step = {name: [] for name in setups}
    for _ in range(rounds):
      for name, run in setups.items():
        n = tiny_epochs if name.startswith("999") else epochs
        # The quick check runs each set-up once: no start-up to subtract.
        one = run(1) if mnist else 0.0
        per_step[name].append((run(n + 1) - one) / n)
  med = {k: float(np.median(v)) for k, v in per_step.items()}
  mnist_one = med.get("MNIST, one process, 2 cores", float("nan"))
  return {
      "per_step_s": per_step, "median_ms": {k: v * 1e3 for k, v in med.items()},
      "examples_per_s": {k: (60_000 if k.startswith("MNIST") else 999) / v
                         for k, v in med.items()},
      "efficiency_2_workers": mnist_one / med.get(
          "MNIST, 2 workers, 1 core each", float("nan")),
      "cluster_ms_per_step": (med["999 rows, 2 workers"]
                              - med["999 rows, one process"]) * 1e3,
      "epochs": epochs, "tiny_epochs": tiny_epochs,
  }


def table(r) -> str:
  lines = ["", f"tf.distribute, whole commands, (T(N + 1 epochs) - T(1)) / "
           f"N, N = {r['epochs']} on MNIST and {r['tiny_epochs']} on 999 "
           "rows, full batch, median of the rounds:", "",
           "| set-up | ms per step (rounds) | examples per second |",
           "| --- | --- | --- |"]
  for name, ms in r["median_ms"].items():
    rounds = ", ".join(f"{v * 1e3:.1f}" for v in r["per_step_s"][name])
    lines.append(f"| {name} | {ms:.1f} ({rounds}) | "
                 f"{r['examples_per_s'][name]:,.0f} |")
  lines.append("")
  lines.append(f"Scaling efficiency of 2 workers against one process on the "
               f"same 2 cores: {r['efficiency_2_workers']:.2f}; the cluster's "
               f"own cost per step (999 rows, 2 workers minus one process): "
               f"{r['cluster_ms_per_step']:.1f} ms.")
  return "\n".join(lines)
