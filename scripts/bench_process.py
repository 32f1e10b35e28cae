"""Whole-process measurements for scripts/benchmark.py (issue 9's protocol).

The per-step cost of full-batch training as a user meets it: whole commands,
`(T(N + 1 epochs) - T(1 epoch)) / N` with `--display_step` equal to the
epochs, learning rate 0.5, with and without `--model_dir`, against the plain
TF2 loop run the same way (`benchmark.py --plain_steps`), interleaved.
"""

import os
import sys
import tempfile
import time
import subprocess

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRAIN = [sys.executable, "-m", "logreg_tf.train"]
PLAIN = [sys.executable, os.path.join(REPO, "scripts", "benchmark.py")]


def _seconds(cmd):
  env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
  start = time.perf_counter()
  done = subprocess.run(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                        stderr=subprocess.PIPE, text=True, check=False)
  if done.returncode != 0:
    raise RuntimeError(f"{' '.join(cmd)} failed: {done.stderr[-500:]}")
  return time.perf_counter() - start


def _commands(epochs, scratch):
  """name -> function(epochs) -> command line."""
  def ours(n, model_dir=None):
    out = TRAIN + [f"--num_epochs={n}", f"--display_step={n}",
                   "--learning_rate=0.5"]
    if model_dir:
      out += [f"--model_dir={model_dir}", "--fresh"]
    return out
  return {
      "logreg_tf": ours,
      "logreg_tf, --model_dir": lambda n: ours(n, os.path.join(scratch, "r")),
      "plain TF2 (tape)": lambda n: PLAIN + [f"--plain_steps={n}"],
  }


def per_step(rounds, epochs=200, warm=True, names=None):
  """ms per full-batch step of each command (those `names`; None: all),
  median of `rounds`."""
  os.makedirs(os.path.join(REPO, "bench-results"), exist_ok=True)
  with tempfile.TemporaryDirectory(dir=os.path.join(REPO, "bench-results")) \
      as scratch:
    commands = {name: make for name, make in _commands(epochs, scratch).items()
                if names is None or name in names}
    for make in commands.values() if warm else ():  # the data cache, disk
      _seconds(make(1))
    out = {name: [] for name in commands}
    for _ in range(rounds):
      for name, make in commands.items():
        one = _seconds(make(1))
        many = _seconds(make(epochs + 1))
        out[name].append((many - one) / epochs)
  med = {k: float(np.median(v)) for k, v in out.items()}
  plain = med.get("plain TF2 (tape)", float("nan"))
  return {"per_step_s": out, "median_ms": {k: v * 1e3 for k, v in med.items()},
          "over_plain": {k: v / plain for k, v in med.items()},
          "epochs": epochs}


def predict_throughput(info, data_module, rounds, train_model, count=10_000):
  """Images per second of `python -m logreg_tf.predict` on a directory of
  `count` PNGs (the test split), whole commands:
  (T(count) - T(1)) / (count - 1). `train_model(model_dir)` trains the
  model they use.
  """
  import tensorflow as tf
  root = os.path.join(REPO, "bench-results", "predict")
  pngs = os.path.join(root, f"pngs-{count}")
  if len(os.listdir(pngs) if os.path.isdir(pngs) else []) < count:
    os.makedirs(pngs, exist_ok=True)
    test = data_module.test_images.reshape(-1, *info.image_shape)
    for i, image in enumerate(test[:count]):
      tf.io.write_file(os.path.join(pngs, f"{i:05d}.png"),
                       tf.io.encode_png(image))
  model_dir = os.path.join(root, "model")
  train_model(model_dir)
  predict = [sys.executable, "-m", "logreg_tf.predict",
             f"--model_dir={model_dir}"]
  one, many = [], []
  for _ in range(rounds):
    one.append(_seconds(predict + [os.path.join(pngs, "00000.png")]))
    many.append(_seconds(predict + [pngs]))
  per_image = (np.median(many) - np.median(one)) / (count - 1)
  return {"images_per_second": 1 / per_image, "one_image_s": one,
          "all_images_s": many, "images": count}
