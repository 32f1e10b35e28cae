"""The command line: end to end on mock data, flagfiles, one-line failures."""

import dataclasses
import glob
import json
import os
import re
import subprocess
import sys
import time

import pytest
import tensorflow as tf

from logreg_tf import loop
from logreg_tf.config import RunConfig, Storage

from conftest import REPO
from helpers import (error_lines, parse_train, read_hparams, read_scalars,
                     read_tags, run_cli, train)

LINE = re.compile(
    r"epoch +(\d+)/(\d+)  train_loss (\d+\.\d{4})  test_loss (\d+\.\d{4})  "
    r"test_accuracy (\d\.\d{4})$")


def _log_lines(stderr):
  return [m for m in (LINE.search(l) for l in stderr.splitlines()) if m]


@pytest.mark.process
def test_end_to_end_on_mock_data(tmp_path):
  # The real command line in its own process: exit status, log lines,
  # events (the other tests run the commands in-process).
  model_dir = tmp_path / "run"
  result = run_cli("--num_epochs=4", "--display_step=3", "--batch_size=16",
                   "--learning_rate=0.1", f"--model_dir={model_dir}",
                   mock_examples=40)
  assert result.returncode == 0, result.stderr[-2000:]
  lines = _log_lines(result.stderr)
  # Every 3rd epoch and always the last one.
  assert [int(m.group(1)) for m in lines] == [3, 4]
  assert all(m.group(2) == "4" for m in lines)
  scalars = read_scalars(str(model_dir))
  # The log line's three, and the figures' scalars at the last epoch.
  assert set(scalars) == {"train/loss", "test/loss", "test/accuracy",
                          "test/ece"} | {f"test/accuracy_per_class/{d}"
                                         for d in range(10)}
  for m in lines:
    epoch = int(m.group(1))
    assert scalars["train/loss"][epoch] == pytest.approx(
        float(m.group(3)), abs=5e-5)
    assert scalars["test/loss"][epoch] == pytest.approx(
        float(m.group(4)), abs=5e-5)
    assert scalars["test/accuracy"][epoch] == pytest.approx(
        float(m.group(5)), abs=5e-5)
  assert "_hparams_/session_start_info" in read_tags(str(model_dir))
  # HParams get what the run is, never where it wrote; its table shows the
  # final test accuracy and loss.
  hparams, metrics = read_hparams(str(model_dir))
  assert hparams["dataset"] == "mnist" and hparams["batch_size"] == 16
  assert hparams["learning_rate"] == pytest.approx(0.1)
  assert hparams["classes"] == "all" and hparams["dataset_version"] == "3.0.1"
  assert not {"model_dir", "cache_dir", "data_dir", "fresh"} & set(hparams)
  assert metrics == ["test/accuracy", "test/loss"]


def test_idx_route_returns_final_metrics(idx_dir, tmp_path):
  config = RunConfig(num_epochs=3, learning_rate=0.01)
  metrics = loop.train_and_evaluate(
      config, Storage(idx_dir=idx_dir, model_dir=str(tmp_path)))
  assert metrics["epoch"] == 3
  assert 0.0 <= metrics["test_accuracy"] <= 1.0
  assert metrics["train_loss"] > 0
  scalars = read_scalars(str(tmp_path))
  assert sorted(scalars["test/accuracy"]) == [1, 2, 3]
  assert scalars["test/accuracy"][3] == pytest.approx(
      metrics["test_accuracy"], abs=1e-6)


def test_three_classes_train_a_softmax_over_the_subset(idx_dir, tmp_path):
  config = RunConfig(num_epochs=2, classes=("1", "2", "7"),
                     learning_rate=0.01)
  metrics = loop.train_and_evaluate(
      config, Storage(idx_dir=idx_dir, model_dir=str(tmp_path)))
  with open(tmp_path / "run.json") as f:
    record = json.load(f)
  # The IDX fixture's labels cycle 0-9: 12 of its 40 test examples are 1, 2
  # or 7, and accuracy is counted over those alone.
  assert record["dataset"]["test_examples"] == 12
  assert record["dataset"]["train_examples"] == 36
  assert round(metrics["test_accuracy"] * 12) == metrics["test_accuracy"] * 12
  reader = tf.train.load_checkpoint(str(tmp_path / "checkpoints"))
  shapes = reader.get_variable_to_shape_map()
  assert shapes["model/kernel/.ATTRIBUTES/VARIABLE_VALUE"] == [784, 3]
  assert record["dataset"]["class_names"] == ["1", "2", "7"]
  assert record["dataset"]["class_indices"] == [1, 2, 7]


def _parse(*argv):
  return parse_train(*argv)[0]


def test_defaults_are_the_tutorials_protocol():
  config = _parse()
  assert config.learning_rate == 0.05 and config.num_epochs == 500
  assert config.display_step == 1 and config.batch_size is None
  assert config.init == "zeros" and config.use_bias and config.classes is None
  assert config.dataset == "mnist"
  assert (config.train_split, config.test_split) == ("train", "test")


def test_what_a_run_is_and_where_it_goes_are_apart(tmp_path):
  argv = ("--dataset=fashion_mnist", "--learning_rate=0.5",
          f"--model_dir={tmp_path}", "--cache_dir=", "--checkpoint_every=4",
          "--fresh")
  config, storage = parse_train(*argv)
  assert config.dataset == "fashion_mnist" and config.learning_rate == 0.5
  assert storage.model_dir == str(tmp_path) and storage.cache_dir is None
  assert storage.checkpoint_every == 4 and storage.fresh
  assert not {f.name for f in dataclasses.fields(config)} & {
      f.name for f in dataclasses.fields(storage)}


def test_tutorial_flagfile_reproduces_the_tutorial():
  config = _parse(f"--flagfile={REPO}/configs/tutorial.cfg")
  assert config.learning_rate == 0.05 and config.num_epochs == 500
  assert config.batch_size is None and config.display_step == 1
  assert config.init == "normal" and not config.use_bias


@pytest.mark.parametrize("path", sorted(glob.glob(str(REPO / "configs/*.cfg"))))
def test_every_flagfile_parses_and_says_what_it_reaches(path):
  _parse(f"--flagfile={path}")
  with open(path) as f:
    head = f.readline()
  assert head.startswith("#") and "logreg_tf.train" in head


def test_classes_flag():
  assert _parse("--classes=3,8").classes == ("3", "8")
  assert _parse("--classes=1, 2,7").classes == ("1", "2", "7")
  assert _parse("--classes=Sandal,Ankle boot").classes == ("Sandal",
                                                           "Ankle boot")


def test_missing_data_fails_fast_in_one_line(tmp_path):
  start = time.monotonic()
  result = train("--num_epochs=1", f"--data_dir={tmp_path}")
  assert time.monotonic() - start < 30
  assert result.returncode == 1
  assert "Traceback" not in result.stderr
  (line,) = error_lines(result.stderr)
  assert "dataset 'mnist' not found" in line and str(tmp_path) in line


def test_broken_idx_file_fails_in_one_line(idx_dir):
  path = os.path.join(idx_dir, "train-images-idx3-ubyte.gz")
  with open(path, "r+b") as f:
    f.truncate(100)
  result = train(f"--idx_dir={idx_dir}", "--num_epochs=1")
  assert result.returncode == 1
  assert "Traceback" not in result.stderr
  (line,) = error_lines(result.stderr)
  assert path in line


@pytest.mark.parametrize("args,quoted", [
    (["--learning_rate=-1"], "--learning_rate=-1.0"),
    (["--classes=3,3"], "--classes=3,3"),
    (["--bogus=1"], "bogus"),
    (["stray"], "'stray'"),
])
@pytest.mark.process
def test_usage_errors_are_one_line(args, quoted):
  # In its own process: a usage error is one line, no traceback, status 1.
  result = run_cli(*args)
  assert result.returncode == 1
  (line,) = error_lines(result.stderr)
  assert quoted in line
  assert "Traceback" not in result.stderr


@pytest.mark.process
def test_commands_load_tensorflow_without_what_keras_would_import_then_freeze_it():
  # A fresh interpreter (the import state is the point): Keras would import
  # scikit-learn and matplotlib (its pyplot, its patches) with TensorFlow,
  # and TensorFlow's legacy Keras SciPy; the commands' loader hides them
  # meanwhile, and they import as usual afterwards. What it loaded is left
  # out of the collector's walks (frozen), and the collector is back on.
  code = ("import gc, sys\n"
          "from logreg_tf import cli\n"
          "cli.load_tensorflow()\n"
          "assert 'tensorflow' in sys.modules\n"
          "assert gc.isenabled()\n"
          "assert gc.get_freeze_count() > 100_000, gc.get_freeze_count()\n"
          "for name in ('sklearn', 'matplotlib', 'scipy')"
          " + cli.HIDDEN_WHILE_LOADING:\n"
          "  assert name not in sys.modules, name + ' was imported'\n"
          "import sklearn.linear_model\n"
          "import matplotlib.pyplot\n"
          "import scipy.sparse\n"
          "print('ok')\n")
  result = subprocess.run([sys.executable, "-c", code], cwd=REPO,
                          capture_output=True, text=True, check=False,
                          timeout=120)
  assert result.returncode == 0, result.stderr[-2000:]
  assert result.stdout.strip() == "ok"
