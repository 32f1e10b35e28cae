"""`python -m logreg_tf.evaluate`: the model from its checkpoint's spec, the
run's final metrics to the bit, per-class figures, calibration, refusals."""

import json
import os

import numpy as np
import pytest

from logreg_tf import metrics
from helpers import invoke, run_command


@pytest.fixture
def trained(small_runs):
  """(idx dir, model dirs) of a softmax and a binomial run on small data."""
  return small_runs.idx, {"softmax": small_runs.softmax,
                          "binomial": small_runs.binomial}


@pytest.mark.parametrize("kind", ["softmax", "binomial"])
def test_equals_the_runs_final_metrics(trained, tmp_path, kind):
  idx, dirs = trained
  out = tmp_path / "eval.json"
  result = invoke("evaluate", f"--model_dir={dirs[kind]}", f"--idx_dir={idx}",
                  f"--output_json={out}")
  assert result.returncode == 0, result.stderr[-2000:]
  got = json.loads(out.read_text())
  with open(os.path.join(dirs[kind], "run.json")) as f:
    final = json.load(f)["final_metrics"]
  assert got["loss"] == final["test_loss"]  # exactly: the same computation
  assert got["accuracy"] == final["test_accuracy"]
  confusion = np.array(got["confusion_matrix"])
  assert confusion.sum() == got["examples"]
  assert np.trace(confusion) == round(got["accuracy"] * got["examples"])
  assert [r["support"] for r in got["per_class"]] == list(confusion.sum(1))
  assert 0 <= got["ece"] <= 1
  expected_classes = ["3", "8"] if kind == "binomial" else list("0123456789")
  assert got["class_names"] == expected_classes
  assert f"loss {got['loss']:.4f}  accuracy {got['accuracy']:.4f}" in (
      result.stdout)
  assert "confusion matrix" in result.stdout


def _one_line(result):
  lines = [l for l in result.stderr.splitlines()
           if l.startswith("logreg-evaluate:")]
  assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
  return lines[0]


def test_refusals(trained, tmp_path):
  idx, dirs = trained
  empty = tmp_path / "empty"
  empty.mkdir()
  cases = [
      ([f"--model_dir={empty}", f"--idx_dir={idx}"], "holds no checkpoint"),
      ([f"--idx_dir={idx}"], "give --model_dir=DIR or --checkpoint=PATH"),
      ([f"--model_dir={dirs['softmax']}", f"--idx_dir={idx}",
        "--dataset=fashion_mnist"],
       "is of dataset 'mnist', not --dataset='fashion_mnist'"),
      ([f"--checkpoint={empty}/ckpt-9", f"--idx_dir={idx}"],
       f"checkpoint {empty}/ckpt-9 cannot be read"),
  ]
  for args, text in cases:
    result = invoke("evaluate", *args)
    assert result.returncode == 1, (args, result.stderr[-1000:])
    assert text in _one_line(result), args


def _damaged_copy(dirs, tmp_path):
  damaged = tmp_path / "run"
  os.makedirs(damaged / "checkpoints")
  for name in os.listdir(os.path.join(dirs["softmax"], "checkpoints")):
    data = open(os.path.join(dirs["softmax"], "checkpoints", name), "rb").read()
    if ".data-" in name:
      data = data[:len(data) // 2]
    (damaged / "checkpoints" / name).write_bytes(data)
  return damaged


def test_a_damaged_checkpoint_is_named(trained, tmp_path):
  idx, dirs = trained
  damaged = _damaged_copy(dirs, tmp_path)
  result = invoke("evaluate", f"--model_dir={damaged}", f"--idx_dir={idx}")
  assert result.returncode == 1
  assert "no intact checkpoint in" in _one_line(result)


@pytest.mark.process
def test_a_damaged_checkpoint_is_named_by_the_program(trained, tmp_path):
  # The status and the one line cross the process boundary.
  idx, dirs = trained
  damaged = _damaged_copy(dirs, tmp_path)
  result = run_command("evaluate", f"--model_dir={damaged}",
                       f"--idx_dir={idx}")
  assert result.returncode == 1
  assert "no intact checkpoint in" in _one_line(result)


def test_metrics_on_known_numbers():
  labels = np.array([0, 0, 1, 1, 2])
  predicted = np.array([0, 1, 1, 1, 0])
  confusion = metrics.confusion_matrix(labels, predicted, 3)
  np.testing.assert_array_equal(confusion, [[1, 1, 0], [0, 2, 0], [1, 0, 0]])
  rows = metrics.per_class(confusion, ["a", "b", "c"])
  assert rows[0] == {"class": "a", "precision": 0.5, "recall": 0.5,
                     "f1": 0.5, "support": 2}
  assert rows[1]["precision"] == pytest.approx(2 / 3)
  assert rows[1]["recall"] == 1.0 and rows[1]["f1"] == pytest.approx(0.8)
  assert rows[2] == {"class": "c", "precision": 0.0, "recall": 0.0,
                     "f1": 0.0, "support": 1}
  # Calibration: two examples at confidence 0.9 (one right), two at 0.6
  # (both right): ECE = (2 * |0.5 - 0.9| + 2 * |1.0 - 0.6|) / 4 = 0.4.
  probs = np.array([[0.9, 0.1], [0.9, 0.1], [0.4, 0.6], [0.4, 0.6]])
  ece, table = metrics.calibration(probs, [0, 1, 1, 1], bins=10)
  assert ece == pytest.approx(0.4)
  assert [b["count"] for b in table if b["count"]] == [2, 2]
  # Softmax and sigmoid logits give probabilities that sum to one.
  p = metrics.probabilities(np.array([[0.0, np.log(3.0)]]))
  np.testing.assert_allclose(p, [[0.25, 0.75]])
  p = metrics.probabilities(np.array([[0.0], [np.log(3.0)]]))
  np.testing.assert_allclose(p, [[0.5, 0.5], [0.25, 0.75]])


def test_reports_how_far_the_checkpoint_is_from_the_optimum(trained, tmp_path):
  # An SGD checkpoint: the objective, the gradient norm and, with its l2
  # (0 here: none), the bound; a solver's checkpoint: its certified bound.
  idx, dirs = trained
  out = tmp_path / "eval.json"
  result = invoke("evaluate", f"--model_dir={dirs['softmax']}",
                  f"--idx_dir={idx}", f"--output_json={out}")
  assert result.returncode == 0, result.stderr[-2000:]
  opt = json.loads(out.read_text())["optimization"]
  with open(os.path.join(dirs["softmax"], "run.json")) as f:
    assert opt == {"split": "train", "l2": 0.0,
                   **{k: v for k, v in json.load(f)["optimization"].items()
                      if k in ("objective", "gradient_norm",
                               "suboptimality_bound")}}
  assert opt["suboptimality_bound"] is None
  assert "suboptimality_bound none (l2 = 0)" in result.stdout
  solved = tmp_path / "solved"
  run = invoke("train", f"--idx_dir={idx}", f"--model_dir={solved}",
               "--solver=newton_cg", "--l2=0.01", "--tol=1e-9")
  assert run.returncode == 0, run.stderr[-2000:]
  result = invoke("evaluate", f"--model_dir={solved}", f"--idx_dir={idx}",
                  f"--output_json={out}")
  assert result.returncode == 0, result.stderr[-2000:]
  opt = json.loads(out.read_text())["optimization"]
  with open(solved / "run.json") as f:
    solver = json.load(f)["optimization"]
  # The checkpoint holds float32 weights: within float32's rounding of the
  # solver's float64 point, still certified near the optimum.
  assert opt["objective"] == pytest.approx(solver["objective"], abs=1e-6)
  assert opt["suboptimality_bound"] < 1e-6
  assert "training objective " in result.stdout
