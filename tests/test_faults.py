"""Faults of real machines: damaged checkpoints, a full or read-only disk, two
runs in one directory, a stale lock, a damaged data cache, replayed events.

Each case asserts the exit status, the one line (and no traceback) and what
survived; runs resumed after a fault end bitwise-equal to one-go runs. The
runs are in this process (helpers.train); a run is a subprocess only where
it is killed or must hold the directory's lock while this process tries. The
damaged-checkpoint cases damage copies of one finished run. The full-disk
case mounts a small tmpfs and needs root (CI runs as root); elsewhere it
skips, and injected faults (ENOSPC, EROFS, EIO) cover the same code
everywhere.
"""

import collections
import contextlib
import errno
import glob
import json
import os
import shutil
import signal
import subprocess
import uuid

import pytest
import tensorflow as tf

from logreg_tf import loop

from logreg_tf.rundir import files as ckpt_files
from logreg_tf.config import RunConfig, Storage
from logreg_tf.errors import StorageError

from helpers import (assert_same_run, error_lines, made_once, shared_idx_dir,
                     start_cli, summary_values, train, wait_for)

FLAGS = ["--num_epochs=30", "--batch_size=16", "--learning_rate=0.01",
         "--checkpoint_every=10", "--keep_checkpoints=3", "--display_step=5",
         "--seed=3"]


@pytest.fixture(scope="module")
def idx(tmp_path_factory):
  return shared_idx_dir(tmp_path_factory, 100, 30)


def _args(idx_dir, model_dir, *extra):
  return [f"--idx_dir={idx_dir}", f"--model_dir={model_dir}", *FLAGS, *extra]


def _trained(model_dir, *args):
  result = train(*args)
  assert result.returncode == 0, result.stderr[-2000:]
  return str(model_dir)


@pytest.fixture(scope="module")
def one_go(idx, tmp_path_factory):
  return made_once(tmp_path_factory, "faults", lambda _, d: _trained(
      d, *_args(idx, d)))("one_go")


def _copy(run_dir, tmp_path):
  """A copy of a finished run's directory to damage."""
  return shutil.copytree(run_dir, tmp_path / "run", symlinks=True)


def _files(directory):
  """{name: size} of every file below directory."""
  return {os.path.relpath(p, directory): os.path.getsize(p)
          for p in glob.glob(os.path.join(directory, "**"), recursive=True)
          if os.path.isfile(p)}


def _data_file(ckpts, n):
  (path,) = glob.glob(os.path.join(ckpts, f"ckpt-{n}.data-*"))
  return path


def _truncate(path):
  os.truncate(path, os.path.getsize(path) // 2)


def _zero(path):
  size = os.path.getsize(path)
  with open(path, "r+b") as f:
    f.write(b"\0" * size)


def _remove_checkpoint(ckpts, n):
  for path in glob.glob(os.path.join(ckpts, f"ckpt-{n}.*")):
    os.remove(path)


# (name, damage done to a finished run's checkpoints dir, text of the warning
# line, the checkpoint it resumes from)
DAMAGE = [
    ("torn data file", lambda d: _truncate(_data_file(d, 30)),
     "checkpoint {d}/ckpt-30 is damaged", 20),
    ("zeroed data file", lambda d: _zero(_data_file(d, 30)),
     "checkpoint {d}/ckpt-30 is damaged", 20),
    ("torn index", lambda d: _truncate(os.path.join(d, "ckpt-30.index")),
     "checkpoint {d}/ckpt-30 is damaged", 20),
    ("empty state file",
     lambda d: open(os.path.join(d, "checkpoint"), "w").close(),
     "the checkpoint state file {d}/checkpoint is damaged", 30),
    ("state names a missing file", lambda d: _remove_checkpoint(d, 30),
     "checkpoint {d}/ckpt-30 is damaged", 20),
]


@pytest.mark.parametrize("name,damage,warning,resumed", DAMAGE,
                         ids=[d[0] for d in DAMAGE])
def test_damaged_checkpoint_falls_back_and_ends_as_one_go(
    idx, one_go, tmp_path, name, damage, warning, resumed):
  del name
  model_dir = _copy(one_go, tmp_path)
  ckpts = str(model_dir / "checkpoints")
  damage(ckpts)
  again = train(*_args(idx, model_dir))
  assert again.returncode == 0, again.stderr[-2000:]
  assert "Traceback" not in again.stderr
  assert warning.format(d=ckpts) in again.stderr
  assert f"resuming from {ckpts}/ckpt-{resumed} at epoch {resumed}" in (
      again.stderr)
  assert_same_run(one_go, str(model_dir))


def test_no_intact_checkpoint_fails_and_deletes_nothing(idx, one_go,
                                                        tmp_path):
  model_dir = _copy(one_go, tmp_path)
  ckpts = str(model_dir / "checkpoints")
  for n in (10, 20, 30):
    _truncate(_data_file(ckpts, n))
  before = _files(model_dir)
  result = train(*_args(idx, model_dir))
  assert result.returncode == 1
  assert "Traceback" not in result.stderr
  (line,) = error_lines(result.stderr)
  assert f"no intact checkpoint in {ckpts}: ckpt-30 (" in line
  assert "ckpt-10 (" in line and "--fresh" in line
  after = _files(model_dir)
  assert {k: v for k, v in after.items() if k != ".lock"} == {
      k: v for k, v in before.items() if k != ".lock"}


@pytest.mark.process
def test_a_second_run_in_the_directory_is_refused(idx, tmp_path):
  model_dir = tmp_path / "run"
  first = start_cli(*_args(idx, model_dir, "--num_epochs=3000"))
  try:
    lock = model_dir / ".lock"
    wait_for(lambda: lock.exists() and lock.read_text().strip(), first,
             "the lock")
    second = train(*_args(idx, model_dir, "--num_epochs=3000"))
    assert second.returncode == 1
    assert "Traceback" not in second.stderr
    (line,) = error_lines(second.stderr)
    assert f"--model_dir='{model_dir}' is in use by another run" in line
    assert f"process {first.pid} on " in line
  finally:
    first.kill()
    first.communicate()


@pytest.mark.process
def test_a_killed_run_leaves_no_stale_lock(idx, one_go, tmp_path):
  model_dir = tmp_path / "run"
  proc = start_cli(*_args(idx, model_dir))
  state = model_dir / "checkpoints" / "checkpoint"
  wait_for(state.exists, proc, "a checkpoint")
  proc.send_signal(signal.SIGKILL)
  proc.communicate()
  assert (model_dir / ".lock").exists()  # the file stays; its lock does not
  again = train(*_args(idx, model_dir))
  assert again.returncode == 0, again.stderr[-2000:]
  assert "resuming from" in again.stderr
  assert_same_run(one_go, str(model_dir))


def _event_counts(model_dir, still_writing=False):
  """{(tag, step): how many events} over every event file."""
  return collections.Counter(
      (value.tag, step)
      for step, value in summary_values(model_dir, still_writing))


@pytest.mark.process
def test_tensorboard_shows_each_step_once_after_a_resume(idx, tmp_path):
  model_dir = tmp_path / "run"
  args = _args(idx, model_dir, "--num_epochs=600", "--display_step=1",
               "--checkpoint_every=200")
  proc = start_cli(*args)
  # Killed once epochs after the first checkpoint were written to events.
  def past_checkpoint():
    steps = [s for (tag, s) in _event_counts(str(model_dir), True)
             if tag == "test/accuracy"]
    return (model_dir / "checkpoints" / "checkpoint").exists() and (
        max(steps, default=0) > 210)
  wait_for(past_checkpoint, proc, "events past the checkpoint")
  proc.send_signal(signal.SIGKILL)
  proc.communicate()
  again = train(*args)
  assert again.returncode == 0, again.stderr[-2000:]
  assert "dropped" in again.stderr
  counts = _event_counts(str(model_dir))
  for tag in ("train/loss", "test/loss", "test/accuracy"):
    steps = sorted(s for (t, s) in counts if t == tag)
    assert steps == list(range(1, 601)), tag
    assert all(counts[(tag, s)] == 1 for s in steps), tag


def _failing_second_save(kind):
  """A CheckpointManager.save whose second call fails as `kind` does."""
  original = tf.train.CheckpointManager.save
  calls = []

  def save(self, checkpoint_number=None, **kwargs):
    calls.append(checkpoint_number)
    if len(calls) == 1:
      return original(self, checkpoint_number=checkpoint_number, **kwargs)
    temp = os.path.join(self.directory, f"ckpt-{checkpoint_number}_temp")
    os.makedirs(temp)  # what an unfinished save leaves
    if kind == "ENOSPC":  # TensorFlow's own words for a full disk
      raise tf.errors.ResourceExhaustedError(
          None, None, f"{temp}/part-00000-of-00001.data-00000-of-00001."
          "tempstate1; No space left on device")
    # A file system that turned read-only, or a failing disk.
    code = getattr(errno, kind)
    raise OSError(code, os.strerror(code), temp)
  return save


# A file system cannot be remounted read-only while a process holds files
# open for writing (mount answers "busy"), and a disk cannot be made to fail
# on demand: those faults are injected as the errors they raise.
@pytest.mark.parametrize("kind,words", [
    ("ENOSPC", "No space left on device"),
    ("EROFS", "Read-only file system (EROFS)"),
    ("EIO", "Input/output error (EIO)")])
def test_injected_fault_during_a_save(idx, tmp_path, monkeypatch, kind,
                                      words):
  monkeypatch.setattr(tf.train.CheckpointManager, "save",
                      _failing_second_save(kind))
  model_dir = tmp_path / "run"
  with pytest.raises(StorageError) as e:
    loop.train_and_evaluate(
        RunConfig(num_epochs=5, batch_size=16, learning_rate=0.01),
        Storage(idx_dir=idx, model_dir=str(model_dir), checkpoint_every=1))
  message = str(e.value)
  assert f"could not save checkpoint {model_dir}/checkpoints/ckpt-2" in message
  assert words in message
  assert f"last good checkpoint: {model_dir}/checkpoints/ckpt-1" in message
  assert e.value.exit_code == 4
  assert not glob.glob(str(model_dir / "checkpoints" / "*_temp*"))
  assert ckpt_files.verify(str(model_dir / "checkpoints" / "ckpt-1"))[1] is None
  record = json.loads((model_dir / "run.json").read_text())
  assert record["status"] == "failed" and words in record["error"]


@contextlib.contextmanager
def _small_fs(root, size):
  """A tmpfs of `size` at root, unmounted at the end; skips without root."""
  root.mkdir()
  mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}",
                            f"logreg_test_{uuid.uuid4().hex[:6]}", str(root)],
                           capture_output=True, text=True, check=False)
  if mounted.returncode != 0:
    pytest.skip(f"cannot mount a tmpfs here ({mounted.stderr.strip()}); "
                "the injected-ENOSPC test covers the same code")
  try:
    yield root
  finally:
    subprocess.run(["umount", "-l", str(root)], check=False)


def _remount(root, options):
  subprocess.run(["mount", "-o", f"remount,{options}", str(root)], check=True)


@pytest.mark.process
def test_disk_full_while_saving_then_resume(idx, one_go, tmp_path):
  with _small_fs(tmp_path / "fs", "150k") as fs:
    model_dir = fs / "run"
    args = _args(idx, model_dir, "--checkpoint_every=1",
                 "--keep_checkpoints=30")
    full = train(*args)
    assert full.returncode == 4, full.stderr[-2000:]
    assert "Traceback" not in full.stderr
    (line,) = error_lines(full.stderr)
    assert str(model_dir) in line and "No space left on device" in line
    assert "last good checkpoint: " in line
    assert not glob.glob(str(model_dir / "checkpoints" / "*_temp*"))
    state = tf.train.get_checkpoint_state(str(model_dir / "checkpoints"))
    assert state.all_model_checkpoint_paths
    for path in state.all_model_checkpoint_paths:
      assert ckpt_files.verify(path)[1] is None, path
    record = json.loads((model_dir / "run.json").read_text())
    assert record["status"] in ("failed", "running")  # "when it can"
    _remount(fs, "size=20m")
    again = train(*args)
    assert again.returncode == 0, again.stderr[-2000:]
    assert_same_run(one_go, str(model_dir))


@pytest.mark.real_data
def test_a_damaged_data_cache_is_rebuilt(shared_tfds_dir, tmp_path):
  # Slices of the splits: TFDS decodes 3,000 images instead of 70,000.
  args = [f"--data_dir={shared_tfds_dir}", f"--cache_dir={tmp_path}",
          "--dataset=fashion_mnist", "--train_split=train[:2000]",
          "--test_split=test[:1000]", "--batch_size=100", "--num_epochs=1"]
  first = train(*args)
  assert first.returncode == 0, first.stderr[-2000:]
  (cached,) = glob.glob(str(tmp_path / "fashion_mnist-*" / "train%5B*" /
                           "images"))
  good = os.path.getsize(cached)
  _truncate(cached)
  second = train(*args)
  assert second.returncode == 0 and "Traceback" not in second.stderr
  assert "ignoring the decoded data in" in second.stderr
  assert "truncated or overwritten" in second.stderr
  assert os.path.getsize(cached) == good  # written again, whole
  final = lambda r: r.stderr.strip().splitlines()[-1].split("final: ")[1]
  assert final(first) == final(second)


def test_rerunning_a_finished_run_writes_no_second_step(idx, one_go,
                                                       tmp_path):
  model_dir = _copy(one_go, tmp_path)
  again = train(*_args(idx, model_dir))
  assert again.returncode == 0, again.stderr[-2000:]
  assert "nothing to train" in again.stderr
  assert "epoch 30/30  train_loss" in again.stderr  # the result, logged
  counts = _event_counts(str(model_dir))
  assert counts and max(counts.values()) == 1, counts
