"""The Checkpointer on its own: fallbacks, partial files, refusals."""

import os

import numpy as np
import pytest
import tensorflow as tf

from logreg_tf import loop

from logreg_tf.rundir import checkpoints
from logreg_tf.config import RunConfig, describe
from logreg_tf.errors import UserError
from logreg_tf.rundir.workdir import ModelDir

from conftest import mnist_info


def _checkpointer(model_dir, keep=3, info=None, **overrides):
  config = RunConfig(**overrides)
  info = info or mnist_info()
  steps = loop.build(config, info, num_train=100)
  spec = describe(config, info)
  ckpt = checkpoints.Checkpointer(ModelDir(str(model_dir)), steps.model,
                                  steps.optimizer, spec, keep)
  return ckpt, steps.model, steps.optimizer


def _saved(ckpt, epoch):
  """Saves and waits for the background write, as the loop does at the end."""
  path = ckpt.save(epoch)
  ckpt.wait()
  return path


def test_round_trip_restores_weights_step_and_epoch(tmp_path):
  ckpt, model, optimizer = _checkpointer(tmp_path, keep=2)
  for epoch in (1, 2, 3):
    model.kernel.assign(tf.fill(model.kernel.shape, float(epoch)))
    optimizer.iterations.assign(epoch * 10)
    _saved(ckpt, epoch)
  names = sorted(os.listdir(tmp_path / "checkpoints"))
  assert not any(n.startswith("ckpt-1.") for n in names)  # only 2 kept
  again, model2, optimizer2 = _checkpointer(tmp_path, keep=2)
  assert again.restore() == 3
  np.testing.assert_array_equal(model2.kernel.numpy(), 3.0)
  assert int(optimizer2.iterations.numpy()) == 30


def test_unreadable_latest_falls_back_to_the_previous(tmp_path):
  ckpt, model, _ = _checkpointer(tmp_path)
  for epoch in (1, 2):
    model.kernel.assign(tf.fill(model.kernel.shape, float(epoch)))
    _saved(ckpt, epoch)
  with open(tmp_path / "checkpoints" / "ckpt-2.index", "wb") as f:
    f.write(b"garbage")
  again, model2, _ = _checkpointer(tmp_path)
  assert again.restore() == 1
  np.testing.assert_array_equal(model2.kernel.numpy(), 1.0)


def test_files_of_an_unfinished_save_are_ignored(tmp_path):
  ckpt, model, _ = _checkpointer(tmp_path)
  _saved(ckpt, 4)
  # What a crash mid-save leaves: files that the state file never named.
  for name in ("ckpt-5.index", "ckpt-5.data-00000-of-00001.tempstate1"):
    (tmp_path / "checkpoints" / name).write_bytes(b"\0" * 10)
  again, _, _ = _checkpointer(tmp_path)
  assert again.restore() == 4


def test_nothing_to_restore_starts_at_zero(tmp_path):
  ckpt, _, _ = _checkpointer(tmp_path)
  assert ckpt.restore() == 0


def test_other_model_is_refused(tmp_path):
  pair = lambda a, b: mnist_info(class_names=(a, b))
  ckpt, _, _ = _checkpointer(tmp_path, info=pair("3", "8"))
  _saved(ckpt, 1)
  other, _, _ = _checkpointer(tmp_path, info=pair("4", "9"))
  with pytest.raises(UserError, match="classes 3,8.*classes 4,9"):
    other.restore()
  no_bias, _, _ = _checkpointer(tmp_path, info=pair("3", "8"),
                                use_bias=False)
  with pytest.raises(UserError, match="no bias"):
    no_bias.restore()


def test_other_dataset_is_refused(tmp_path):
  ckpt, _, _ = _checkpointer(tmp_path)
  _saved(ckpt, 1)
  fashion = mnist_info(name="fashion_mnist")
  other, _, _ = _checkpointer(tmp_path, info=fashion)
  with pytest.raises(UserError, match="another dataset .*: mnist \\(28x28x1 "
                     "images\\).* trains on fashion_mnist \\(28x28x1"):
    other.restore()
  # Another version of the same dataset resumes, with a warning.
  newer, _, _ = _checkpointer(tmp_path, info=mnist_info(version="3.0.2"))
  assert newer.restore() == 1


def test_non_finite_weights_are_never_saved(tmp_path):
  ckpt, model, _ = _checkpointer(tmp_path)
  model.kernel.assign(tf.fill(model.kernel.shape, float("nan")))
  with pytest.raises(ValueError, match="non-finite"):
    ckpt.save(1)
  assert ckpt.latest is None


def test_fresh_clears_only_our_files(tmp_path):
  ckpt, _, _ = _checkpointer(tmp_path)
  _saved(ckpt, 1)
  (tmp_path / "run.json").write_text("{}")
  (tmp_path / "events.out.tfevents.1.host").write_text("")
  (tmp_path / "notes.txt").write_text("mine")
  ModelDir(str(tmp_path)).clear()
  assert sorted(os.listdir(tmp_path)) == ["notes.txt"]


def test_a_save_holds_the_values_of_its_moment(tmp_path):
  # The write runs in the background while training goes on: what it
  # writes is the copy taken when save() was called.
  ckpt, model, optimizer = _checkpointer(tmp_path)
  model.kernel.assign(tf.fill(model.kernel.shape, 1.0))
  optimizer.iterations.assign(7)
  ckpt.save(1)
  model.kernel.assign(tf.fill(model.kernel.shape, 2.0))
  optimizer.iterations.assign(8)
  ckpt.wait()
  assert ckpt.latest.endswith("ckpt-1")
  again, model2, optimizer2 = _checkpointer(tmp_path)
  assert again.restore() == 1
  np.testing.assert_array_equal(model2.kernel.numpy(), 1.0)
  assert int(optimizer2.iterations.numpy()) == 7
