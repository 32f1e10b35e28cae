"""`python -m logreg_tf.sweep`: the path solved exactly and warm-started
(from extrapolated optima), the choice on validation, the refit and its
one test evaluation, what it writes, and its refusals. In this process, on
small IDX files."""

import csv
import json
import os

import numpy as np
import pytest
import tensorflow as tf

from helpers import error_lines, invoke, read_hparams, shared_idx_dir
from logreg_tf.model import head_for
from logreg_tf.solvers import NewtonCG
from logreg_tf.solvers.objective import Objective
from logreg_tf.solvers.path import extrapolated

SPLITS = ["--train_split=train[:70]", "--validation_split=train[70:]"]
GRID = "--l2=1e-3:1e-1:5"


def test_each_start_is_the_quadratic_through_the_last_optima():
  # Exact on a quadratic in log l2, whatever the spacing; one point gives
  # itself (a warm start); none, nothing (a cold start).
  def weights(l2):
    t = np.log(l2)
    return np.array([[2 + 3 * t - 0.5 * t * t, -t]])
  done = [(l2, weights(l2)) for l2 in (1e-1, 2e-2, 1e-3)]
  np.testing.assert_allclose(extrapolated(done, 1e-5), weights(1e-5),
                             rtol=1e-12)
  np.testing.assert_array_equal(extrapolated(done[:1], 1e-5), weights(1e-1))
  assert extrapolated([], 1e-5) is None


@pytest.fixture(scope="module")
def idx(tmp_path_factory):
  return shared_idx_dir(tmp_path_factory, 100, 30)


@pytest.fixture(scope="module")
def swept(idx, tmp_path_factory):
  sweep_dir = tmp_path_factory.mktemp("sweep")
  result = invoke("sweep", f"--idx_dir={idx}", f"--sweep_dir={sweep_dir}",
                  *SPLITS, GRID, "--tol=1e-10")
  assert result.returncode == 0, result.stderr[-3000:]
  with open(sweep_dir / "sweep.json") as f:
    return sweep_dir, json.load(f), result


def test_every_l2_is_solved_to_its_certified_optimum(idx, swept):
  _, record, _ = swept
  trials = record["trials"]
  assert [t["l2"] for t in trials] == pytest.approx(np.geomspace(1e-3, 0.1, 5))
  for t in trials:
    assert t["converged"] and t["suboptimality_bound"] <= 1e-10
  # Warm-started along the path = solved cold: the middle point again.
  from logreg_tf import data
  from logreg_tf.config import DataSpec, Storage
  tuning = data.load(DataSpec(train_split="train[:70]"), Storage(idx_dir=idx))
  x, y = data.to_features(tuning.train_images), tuning.train_labels
  l2 = trials[2]["l2"]
  objective = Objective(head_for(10), x, tf.constant(y), l2, True)
  cold = NewtonCG(tf.zeros([784, 10]), True, l2, tol=1e-12)
  cold.solve(objective)
  assert abs(float(cold.value) - trials[2]["objective"]) <= 1e-10
  # Later (weaker) points start near their optimum: fewer iterations.
  assert trials[0]["iterations"] <= trials[-1]["iterations"]


def test_the_choice_is_the_best_validation_loss_then_refit(idx, swept):
  sweep_dir, record, result = swept
  best = min(record["trials"], key=lambda t: t["validation_loss"])
  assert record["chosen"]["l2"] == best["l2"]
  assert record["chosen"]["by"] == "validation loss"
  refit = record["refit"]
  assert refit["train_split"] == "train[:70]+train[70:]"
  with open(sweep_dir / "refit" / "run.json") as f:
    run = json.load(f)
  assert run["config"]["l2"] == best["l2"] and run["config"]["solver"] == (
      "newton_cg")
  assert run["dataset"]["train_examples"] == 100  # train + validation
  assert run["final_metrics"] == refit["final_metrics"]
  assert run["optimization"]["converged"]
  # The test split was evaluated once in the refit run: one logged line.
  assert sum(" test_accuracy " in l for l in result.stderr.splitlines()) == 1
  # The refit is an ordinary run: evaluate reads it.
  evaluated = invoke("evaluate", f"--model_dir={sweep_dir / 'refit'}",
                     f"--idx_dir={idx}")
  assert evaluated.returncode == 0, evaluated.stderr[-2000:]
  assert f"accuracy {refit['final_metrics']['test_accuracy']:.4f}" in (
      evaluated.stdout)
  # export and predict take it too; predict through the export gives the
  # refit model's probabilities.
  exported = invoke("export", f"--model_dir={sweep_dir / 'refit'}",
                    f"--export_dir={sweep_dir / 'export'}")
  assert exported.returncode == 0, exported.stderr[-2000:]
  from PIL import Image
  from logreg_tf import data, metrics
  from logreg_tf.rundir import trained as trained_lib
  image = np.arange(784, dtype=np.uint8).reshape(28, 28)
  Image.fromarray(image).save(sweep_dir / "digit.png")
  out = sweep_dir / "predicted.json"
  predicted = invoke("predict", f"--saved_model={sweep_dir / 'export'}",
                     f"--output_json={out}", str(sweep_dir / "digit.png"))
  assert predicted.returncode == 0, predicted.stderr[-2000:]
  (got,) = json.loads(out.read_text())["predictions"]
  model = trained_lib.load(str(sweep_dir / "refit"))
  expected = metrics.probabilities(model.model(
      data.to_features(image.reshape(1, -1))).numpy())[0]
  assert got["probability"] == pytest.approx(expected.max(), abs=1e-6)


def test_it_writes_json_csv_figure_and_tensorboard(swept):
  sweep_dir, record, _ = swept
  with open(sweep_dir / "sweep.csv") as f:
    rows = list(csv.DictReader(f))
  assert len(rows) == 5
  assert [float(r["l2"]) for r in rows] == [t["l2"] for t in record["trials"]]
  assert all(0 <= float(r["test_accuracy"]) <= 1 for r in rows)
  assert (sweep_dir / "sweep.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
  board = sweep_dir / "tensorboard"
  _, metrics = read_hparams(str(board))
  assert {"validation/loss", "validation/accuracy", "test/accuracy"} <= set(
      metrics)
  trial_dirs = sorted(p for p in board.iterdir() if p.is_dir())
  assert len(trial_dirs) == 5
  for trial_dir in trial_dirs:
    hparams, _ = read_hparams(str(trial_dir))
    assert trial_dir.name == f"l2={hparams['l2']:.3e}"


def test_choosing_by_accuracy(idx, tmp_path):
  result = invoke("sweep", f"--idx_dir={idx}", f"--sweep_dir={tmp_path}",
                  *SPLITS, "--l2=0.01,0.1", "--select_by=accuracy")
  assert result.returncode == 0, result.stderr[-2000:]
  with open(tmp_path / "sweep.json") as f:
    record = json.load(f)
  best = max(t["validation_accuracy"] for t in record["trials"])
  chosen = [t for t in record["trials"] if t["l2"] == record["chosen"]["l2"]]
  assert chosen[0]["validation_accuracy"] == best
  assert record["chosen"]["by"] == "validation accuracy"


@pytest.mark.parametrize("args,quoted", [
    (["--train_split=train[:70]", "--validation_split=train[60:]"],
     "--validation_split='train[60:]' shares 10 rows with "
     "--train_split='train[:70]'"),
    (["--validation_split=train", "--train_split=train[:10%]"],
     "shares 10 rows"),
    (["--l2=1e-3:1e-1"], "--l2=1e-3:1e-1: give low:high:count"),
    (["--l2=1e-1:1e-3:5"], "give low:high:count with 0 < low < high"),
    (["--l2=0.1,-1"], "every l2 of a sweep must be a finite number > 0"),
    (["--l2=a,b"], "--l2=a,b"),
    (["--tol=0"], "--tol=0.0"),
    (["--max_iter=0"], "--max_iter=0"),
    (["--solver=sgd"], "--solver=sgd"),
    (["--validation_split=train[70:"], "is not a split"),
])
def test_bad_input_of_the_sweep(idx, tmp_path, args, quoted):
  result = invoke("sweep", f"--idx_dir={idx}",
                  f"--sweep_dir={tmp_path / 'out'}", *args)
  assert result.returncode == 1, result.stderr[-2000:]
  (line,) = error_lines(result.stderr, "logreg-sweep")
  assert quoted in line
  assert not (tmp_path / "out" / "sweep.json").exists()


def test_a_directory_holding_another_sweep_is_refused(idx, swept):
  sweep_dir, _, _ = swept
  before = os.path.getmtime(sweep_dir / "sweep.json")
  result = invoke("sweep", f"--idx_dir={idx}", f"--sweep_dir={sweep_dir}",
                  *SPLITS, "--l2=1e-3:1e-1:4", "--tol=1e-10")
  assert result.returncode == 1
  (line,) = error_lines(result.stderr, "logreg-sweep")
  assert f"--sweep_dir={sweep_dir} holds another sweep (l2 " in line
  assert os.path.getmtime(sweep_dir / "sweep.json") == before


def test_train_scores_a_validation_split_at_every_display_step(idx, tmp_path):
  from helpers import read_scalars
  result = invoke("train", f"--idx_dir={idx}", f"--model_dir={tmp_path}",
                  *SPLITS, "--num_epochs=4", "--display_step=2")
  assert result.returncode == 0, result.stderr[-2000:]
  lines = [l for l in result.stderr.splitlines() if " validation_loss " in l]
  assert len(lines) == 2 and " validation_accuracy " in lines[-1]
  scalars = read_scalars(str(tmp_path))
  assert sorted(scalars["validation/accuracy"]) == [2, 4]
  # The validation rows are rows 70 to 99 of the training file: the same
  # numbers as a model evaluated on them.
  with open(tmp_path / "run.json") as f:
    record = json.load(f)
  assert record["config"]["validation_split"] == "train[70:]"
  assert record["dataset"]["train_examples"] == 70
  evaluated = invoke("evaluate", f"--model_dir={tmp_path}", f"--idx_dir={idx}",
                     "--split=train[70:]", f"--output_json={tmp_path}/e.json")
  assert evaluated.returncode == 0, evaluated.stderr[-2000:]
  with open(tmp_path / "e.json") as f:
    assert json.load(f)["accuracy"] == pytest.approx(
        scalars["validation/accuracy"][4], abs=1e-6)


def test_train_refuses_a_validation_split_that_is_not_held_out(idx, tmp_path):
  result = invoke("train", f"--idx_dir={idx}", f"--model_dir={tmp_path}/o",
                  "--train_split=train[:80]", "--validation_split=train[70:]")
  assert result.returncode == 1
  (line,) = error_lines(result.stderr)
  assert "--validation_split='train[70:]' shares 10 rows" in line
  assert not (tmp_path / "o").exists()


def test_the_same_sweep_runs_again_in_its_directory(idx, tmp_path):
  args = [f"--idx_dir={idx}", f"--sweep_dir={tmp_path}", *SPLITS,
          "--l2=0.01,0.1"]
  for _ in range(2):
    result = invoke("sweep", *args)
    assert result.returncode == 0, result.stderr[-2000:]
  for trial in (tmp_path / "tensorboard").iterdir():
    if trial.is_dir():  # one event file per trial, not one per run
      assert len(list(trial.glob("events.out.tfevents.*"))) == 1, trial
