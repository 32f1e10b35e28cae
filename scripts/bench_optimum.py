"""`make bench`'s optimum section: the exact solvers against scikit-learn.

Side by side in one run, on MNIST with l2 = 1e-4 (C = 1 / (l2 N)):
  - each exact solver as a whole command (`python -m logreg_tf.train
    --solver=S --tol=1e-9`: import, data, solve, checkpoint, figures), with
    the objective and certified bound it records in run.json; the median of
    COMMAND_REPEATS runs, the two solvers alternated;
  - scikit-learn's lbfgs at tol=1e-8 (its fit alone, on the same float64
    inputs), with its objective evaluated in float64 by our objective;
  - how far the tutorial's SGD runs stop from the optimum (the certificate
    of their final weights, from run.json).
`quick` trains on 500 images with l2 = 1e-2 and skips the SGD runs.
"""

import json
import os
import sys
import tempfile
import time
import subprocess

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRAIN = [sys.executable, "-m", "logreg_tf.train"]
# Runs of each exact solver's whole command (one with --quick).
COMMAND_REPEATS = 3


def _command(args, model_dir):
  """Runs the train command; (seconds, run.json's optimization)."""
  env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
  start = time.perf_counter()
  done = subprocess.run(TRAIN + args + [f"--model_dir={model_dir}", "--fresh"],
                        cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                        stderr=subprocess.PIPE, text=True, check=False)
  seconds = time.perf_counter() - start
  if done.returncode != 0:
    raise RuntimeError(f"{' '.join(args)} failed: {done.stderr[-500:]}")
  with open(os.path.join(model_dir, "run.json")) as f:
    record = json.load(f)
  return seconds, {**record["optimization"],
                   "test_accuracy": record["final_metrics"]["test_accuracy"]}


def _sklearn(x, y, l2, tol):
  """scikit-learn's lbfgs fit: (seconds, iterations, coef [D, K], bias)."""
  from sklearn.linear_model import LogisticRegression
  oracle = LogisticRegression(C=1 / (l2 * len(y)), tol=tol, max_iter=100_000)
  start = time.perf_counter()
  oracle.fit(x, y)
  return (time.perf_counter() - start, int(oracle.n_iter_.max()),
          oracle.coef_.T, oracle.intercept_)


def optimum(train_data, quick=False):
  """The section's results. `train_data`: (x float32 [N, D], y) of MNIST's
  training split, as the trainer reads it."""
  import tensorflow as tf
  from logreg_tf.model import head_for
  from logreg_tf.solvers.objective import Objective
  x, y = train_data
  l2, split = (1e-2, "train[:500]") if quick else (1e-4, "train")
  if quick:
    x, y = x[:500], y[:500]
  out = {"l2": l2, "train_split": split, "examples": int(len(y))}
  os.makedirs(os.path.join(REPO, "bench-results"), exist_ok=True)
  with tempfile.TemporaryDirectory(dir=os.path.join(REPO, "bench-results")) \
      as scratch:
    # Each solver's command COMMAND_REPEATS times, the two alternated: a
    # 10 s command feels the machine's moments more than a 80 s fit does;
    # the median is reported, with every run.
    runs = {"lbfgs": [], "newton_cg": []}
    for _ in range(1 if quick else COMMAND_REPEATS):
      for solver, times in runs.items():
        seconds, out[solver] = _command(
            [f"--solver={solver}", f"--l2={l2}", "--tol=1e-9",
             f"--train_split={split}", "--display_step=100000"],
            os.path.join(scratch, solver))
        times.append(seconds)
    for solver, times in runs.items():
      out[solver].update(seconds=float(np.median(times)), runs=times)
    seconds, iterations, coef, bias = _sklearn(x.astype(np.float64), y, l2,
                                               1e-8)
    objective = Objective(head_for(coef.shape[1]), x, tf.constant(y), l2, True)
    cert = objective.certificate(coef, bias)
    out["sklearn lbfgs tol=1e-8"] = {
        "seconds": seconds, "iterations": iterations,
        "objective": cert.objective,
        "suboptimality_bound": cert.suboptimality_bound}
    out["path"] = path_cost(x, y, quick)
    if not quick:
      for name, args in (("SGD, tutorial defaults (l2 0)", []),
                         ("SGD, configs/best.cfg (l2 1e-5)",
                          [f"--flagfile={REPO}/configs/best.cfg"])):
        seconds, record = _command(args, os.path.join(scratch, "sgd"))
        out[name] = {"seconds": seconds, **record}
  return out


def path_cost(x, y, quick=False):
  """The regularisation path (logreg-sweep's, on the first 50,000 images)
  against cold solves at its ends and at l2 = 1e-4, in this process, with
  Newton-CG at the sweep's default tolerance."""
  import tensorflow as tf
  from logreg_tf.model import head_for
  from logreg_tf.solvers import NewtonCG
  from logreg_tf.solvers.objective import Objective
  from logreg_tf.solvers.path import solve_path
  from logreg_tf.sweep import parse_grid
  n, grid, tol = (1000, "1e-4:1e-1:5", 1e-6) if quick else (
      50_000, "1e-7:1e-1:25", 1e-6)
  objective = Objective(head_for(10), x[:n], tf.constant(y[:n]), 1e-4, True)
  l2s = parse_grid(grid)
  start = time.perf_counter()
  trials = solve_path(objective, 10, l2s, "newton_cg", tol, 1000)
  out = {"grid": grid, "tol": tol, "examples": n,
         "path_seconds": time.perf_counter() - start,
         "path_iterations": sum(t.iterations for t in trials), "cold": {}}
  for l2 in (l2s[0], 1e-4, l2s[-1]):
    objective.l2 = l2
    solver = NewtonCG(tf.zeros([x.shape[1], 10]), True, l2, tol)
    start = time.perf_counter()
    solver.solve(objective)
    out["cold"][f"{l2:.0e}"] = {"seconds": time.perf_counter() - start,
                               "iterations": int(solver.iterations)}
  return out


def table(r) -> str:
  sk = r["sklearn lbfgs tol=1e-8"]
  lines = [
      f"Optimum: {r['examples']} MNIST training images ({r['train_split']}), "
      f"l2 {r['l2']:g}", "",
      "| run | seconds | iterations | objective | certified bound | vs "
      "sklearn's time | test accuracy |", "| --- | --- | --- | --- | --- | "
      "--- | --- |"]
  for name in ("lbfgs", "newton_cg"):
    row = r[name]
    runs = row["runs"]
    spread = (f" [{min(runs):.1f}, {max(runs):.1f}]" if len(runs) > 1
              else "")
    lines.append(
        f"| logreg_tf --solver={name} --tol=1e-9 (whole command"
        f"{f', median of {len(runs)}' if len(runs) > 1 else ''}) | "
        f"{row['seconds']:.1f}{spread} | {row['iterations']} | "
        f"{row['objective']:.12f} | {row['suboptimality_bound']:.1e} | "
        f"{row['seconds'] / sk['seconds']:.3f}x | "
        f"{row['test_accuracy']:.4f} |")
  lines.append(
      f"| scikit-learn lbfgs tol=1e-8 (fit alone) | {sk['seconds']:.1f} | "
      f"{sk['iterations']} | {sk['objective']:.12f} | "
      f"{sk['suboptimality_bound']:.1e} | 1x | |")
  for name, row in r.items():
    if name.startswith("SGD"):
      bound = row["suboptimality_bound"]
      lines.append(
          f"| {name} | {row['seconds']:.1f} | {row['iterations']} | "
          f"{row['objective']:.6f} | "
          + (f"{bound:.1e}" if bound is not None else "none (l2 = 0), "
             f"gradient norm {row['gradient_norm']:.1e}")
          + f" | | {row['test_accuracy']:.4f} |")
  p = r["path"]
  lines += ["", f"Regularisation path ({p['grid']}, newton_cg, tol "
            f"{p['tol']:g}, {p['examples']} images): {p['path_seconds']:.1f} s"
            f", {p['path_iterations']} Newton iterations in all; cold solves: "
            + ", ".join(f"l2 {k} {v['seconds']:.1f} s ({v['iterations']} it.)"
                        for k, v in p["cold"].items())
            + "; path / cold solve at l2 1e-4: "
            f"{p['path_seconds'] / p['cold']['1e-04']['seconds']:.1f}x"]
  return "\n".join(lines) + "\n"
