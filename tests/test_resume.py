"""Checkpoints: exact resume after SIGKILL/SIGTERM/SIGINT, refusals, repeats.

The signalled runs are subprocesses (the signal and the exit status are the
point); every other run, resumes included, runs in this process.
"""

import json
import os
import signal

import numpy as np
import pytest
import tensorflow as tf

from helpers import (assert_same_run, error_lines, final_state, made_once,
                     read_scalars, shared_idx_dir, start_cli, train,
                     wait_for)

MODES = {
    # Long enough (a few seconds) to be killed mid-run, small enough for CI.
    "full_batch": ["--num_epochs=1500", "--learning_rate=0.01"],
    "minibatch": ["--num_epochs=300", "--batch_size=16",
                  "--learning_rate=0.01", "--lr_schedule=linear"],
}
COMMON = ["--display_step=100", "--checkpoint_every=25", "--seed=7",
          "--keep_checkpoints=2"]


@pytest.fixture(scope="module")
def idx(tmp_path_factory):
  return shared_idx_dir(tmp_path_factory, 100, 30)


def _args(idx_dir, mode, model_dir):
  return [f"--idx_dir={idx_dir}", f"--model_dir={model_dir}", *COMMON,
          *MODES[mode]]


def _one_go(idx_dir, mode, model_dir):
  result = train(*_args(idx_dir, mode, model_dir))
  assert result.returncode == 0, result.stderr[-2000:]
  return str(model_dir)


@pytest.fixture(scope="module")
def one_go(idx, tmp_path_factory):
  """get(mode): the mode run once without interruption (on first use)."""
  return made_once(tmp_path_factory, "one_go",
                   lambda mode, d: _one_go(idx, mode, d))


def _start_and_signal(args, model_dir, signum):
  """Starts the command, waits for its first checkpoint, sends signum."""
  proc = start_cli(*args)
  state = os.path.join(model_dir, "checkpoints", "checkpoint")
  wait_for(lambda: os.path.exists(state), proc, "a checkpoint")
  proc.send_signal(signum)
  _, stderr = proc.communicate(timeout=120)
  return proc.returncode, stderr


@pytest.mark.process
@pytest.mark.parametrize("mode,signum", [
    ("full_batch", signal.SIGKILL), ("minibatch", signal.SIGKILL),
    ("full_batch", signal.SIGINT), ("minibatch", signal.SIGTERM)])
def test_interrupted_then_resumed_equals_one_go(idx, one_go, tmp_path, mode,
                                                signum):
  model_dir = tmp_path / "run"
  code, stderr = _start_and_signal(_args(idx, mode, model_dir), model_dir,
                                   signum)
  if signum == signal.SIGKILL:
    assert code == -signal.SIGKILL
  else:
    assert code == 128 + signum, stderr[-2000:]
    assert "saving a checkpoint" in stderr and "after saving" in stderr
    with open(model_dir / "run.json") as f:
      assert json.load(f)["status"] == "interrupted"
  epochs = int(MODES[mode][0].split("=")[1])
  saved = tf.train.latest_checkpoint(str(model_dir / "checkpoints"))
  assert int(saved.rsplit("-", 1)[1]) < epochs, "was not interrupted mid-run"

  result = train(*_args(idx, mode, model_dir))
  assert result.returncode == 0, result.stderr[-2000:]
  assert "resuming from" in result.stderr
  assert_same_run(one_go(mode), str(model_dir))


def test_same_flags_and_seed_repeat_bitwise(idx, one_go, tmp_path):
  result = train(*_args(idx, "minibatch", tmp_path))
  assert result.returncode == 0, result.stderr[-2000:]
  assert_same_run(one_go("minibatch"), str(tmp_path))
  assert read_scalars(str(tmp_path)) == read_scalars(one_go("minibatch"))


def test_run_json_records_the_run(one_go):
  _, record = final_state(one_go("minibatch"))
  assert record["status"] == "completed"
  assert record["config"]["batch_size"] == 16 and record["config"]["seed"] == 7
  assert record["storage"]["checkpoint_every"] == 25
  assert record["versions"]["tensorflow"] == tf.__version__
  assert {"python", "tensorflow_datasets", "logreg_tf"} <= set(
      record["versions"])
  assert record["dataset"]["name"] == "mnist"
  assert record["dataset"]["image_shape"] == [28, 28, 1]
  assert record["dataset"]["train_examples"] == 100
  assert len(record["dataset"]["fingerprint_sha256"]) == 64
  assert "CPU" in record["device"] or "GPU" in record["device"]
  assert record["start_time"] <= record["end_time"]
  assert record["final_metrics"]["epoch"] == 300
  assert "git_commit" in record


def test_incompatible_checkpoint_is_refused_then_fresh(idx, tmp_path):
  first = train(f"--idx_dir={idx}", f"--model_dir={tmp_path}",
                "--classes=3,8", "--num_epochs=2")
  assert first.returncode == 0, first.stderr[-2000:]
  other = train(f"--idx_dir={idx}", f"--model_dir={tmp_path}",
                "--classes=4,9", "--num_epochs=2")
  assert other.returncode == 1
  (line,) = error_lines(other.stderr)
  assert "classes 3,8" in line and "classes 4,9" in line and "--fresh" in line
  fresh = train(f"--idx_dir={idx}", f"--model_dir={tmp_path}",
                "--classes=4,9", "--num_epochs=2", "--fresh")
  assert fresh.returncode == 0, fresh.stderr[-2000:]
  assert "resuming" not in fresh.stderr
  with open(tmp_path / "run.json") as f:
    record = json.load(f)
  assert record["config"]["classes"] == ["4", "9"]
  assert record["dataset"]["class_names"] == ["4", "9"]


def test_divergence_stops_naming_epoch_step_and_checkpoint(idx, tmp_path):
  good = train(f"--idx_dir={idx}", f"--model_dir={tmp_path}",
               "--num_epochs=2", "--batch_size=10", "--checkpoint_every=1")
  assert good.returncode == 0, good.stderr[-2000:]
  bad = train(f"--idx_dir={idx}", f"--model_dir={tmp_path}",
              "--num_epochs=5", "--batch_size=10", "--checkpoint_every=1",
              "--learning_rate=1e38")
  assert bad.returncode == 3
  assert "Traceback" not in bad.stderr
  (line,) = error_lines(bad.stderr)
  assert "diverged at epoch 3, step " in line
  assert "ckpt-2" in line
  directory = str(tmp_path / "checkpoints")
  for path in tf.train.get_checkpoint_state(directory).all_model_checkpoint_paths:
    reader = tf.train.load_checkpoint(path)
    for key in reader.get_variable_to_shape_map():
      value = reader.get_tensor(key)
      if isinstance(value, np.ndarray) and value.dtype.kind == "f":
        assert np.all(np.isfinite(value)), (path, key)
  assert int(tf.train.latest_checkpoint(directory).rsplit("-", 1)[1]) == 2
  with open(tmp_path / "run.json") as f:
    assert json.load(f)["status"] == "diverged"


def test_divergence_without_a_checkpoint(idx):
  bad = train(f"--idx_dir={idx}", "--num_epochs=3", "--learning_rate=1e38",
              "--init=normal")
  assert bad.returncode == 3
  (line,) = error_lines(bad.stderr)
  # Step 1 leaves weights near 1e37, still finite in float32; the logits of
  # step 2 overflow.
  assert "diverged at epoch 2, step 1" in line and "checkpoint: none" in line
