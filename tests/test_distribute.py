"""tf.distribute: mirrored devices and workers give the one-device numbers,
only the chief writes, and a cluster survives stops and lost workers.

The mirrored runs use the 2 logical CPU devices that conftest.py makes for
the whole session, in this process, next to the one-device runs; the
multi-worker runs are 2 worker processes on 127.0.0.1
(scripts/launch_local.py).
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import weakref

import numpy as np
import pytest

from conftest import REPO
from helpers import (assert_same_run, error_lines, final_state, made_once,
                     run_cli, run_launcher, shared_idx_dir, start_launcher,
                     train, wait_for, worker_pids)
from logreg_tf import loop
from logreg_tf.distributed import tf_config
from logreg_tf.errors import UserError
from logreg_tf.distributed.replicated import ReplicatedSteps, shard_bounds

sys.path.insert(0, os.path.join(REPO, "scripts"))
import launch_local  # noqa: E402

# Full batch and mini-batch, softmax and sigmoid. 999 training rows: every
# full batch splits 499/500 over 2 replicas; batch 100 leaves a last batch
# of 99, and batch 37 over the 200 rows of classes 3 and 8 a last one of 15
# (7/8 rows).
CASES = {
    "softmax-full": [],
    "softmax-mini": ["--batch_size=100"],
    "sigmoid-full": ["--classes=3,8"],
    "sigmoid-mini": ["--classes=3,8", "--batch_size=37"],
}


@pytest.fixture(scope="module")
def idx(tmp_path_factory):
  return shared_idx_dir(tmp_path_factory, 999, 101)


def _flags(idx, model_dir, case, *extra):
  return [f"--idx_dir={idx}", f"--model_dir={model_dir}", "--cache_dir=",
          "--num_epochs=4", "--learning_rate=0.05", "--l2=0.01",
          "--init=normal", *CASES[case], *extra]


def _succeeded(result, model_dir):
  """model_dir, once its run (a CompletedProcess) exited 0."""
  assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
  return model_dir


@pytest.fixture(scope="module")
def one_device(idx, tmp_path_factory):
  """The one-device run of each case (made once, on first use)."""
  return made_once(tmp_path_factory, "one", lambda case, d: _succeeded(
      train(*_flags(idx, d, case)), d))


def assert_matches(reference_dir, model_dir):
  """Weights to 1e-6, the same step count, accuracy and (to 1e-6) loss."""
  (ref_w, ref_json), (w, run_json) = (final_state(reference_dir),
                                      final_state(model_dir))
  assert sorted(ref_w) == sorted(w) and w
  for key in ref_w:
    np.testing.assert_allclose(w[key], ref_w[key], rtol=0, atol=1e-6,
                               err_msg=key)
  ref_m, m = ref_json["final_metrics"], run_json["final_metrics"]
  assert m["epoch"] == ref_m["epoch"]
  assert m["test_accuracy"] == ref_m["test_accuracy"]
  for key in ("train_loss", "test_loss"):
    assert m[key] == pytest.approx(ref_m[key], rel=1e-6, abs=1e-6), key


def test_shards_cover_each_batch_once_in_order():
  for rows in (0, 1, 7, 99, 500):
    for replicas in (1, 2, 3, 8):
      bounds = shard_bounds(rows, replicas)
      assert bounds[0][0] == 0 and bounds[-1][1] == rows
      assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:]))
      sizes = [end - start for start, end in bounds]
      assert max(sizes) - min(sizes) <= 1


@pytest.mark.parametrize("case", CASES)
def test_mirrored_on_two_cpu_devices_equals_one_device(idx, one_device,
                                                       tmp_path, case):
  result = train(*_flags(idx, tmp_path, case), "--strategy=mirrored",
                 "--cpu_devices=2")
  assert result.returncode == 0, result.stderr[-2000:]
  assert "mirrored over 2 devices" in result.stderr
  assert_matches(one_device(case), tmp_path)
  with open(tmp_path / "run.json") as f:
    assert json.load(f)["placement"] == {"strategy": "mirrored",
                                         "replicas": 2}


@pytest.mark.parametrize("case", ["softmax-full", "sigmoid-mini"])
def test_mirrored_streamed_input_equals_one_device(idx, one_device, tmp_path,
                                                  case, monkeypatch):
  # Blocks of 256 rows: each replica's 499 or 500 rows stream in two; the
  # mini-batches are read 5 steps (of 37 rows) at a time, the last group
  # partial.
  from logreg_tf import streamed_steps
  from logreg_tf.data import streamed
  monkeypatch.setattr(streamed, "BLOCK_BYTES", 784 * 256)
  monkeypatch.setattr(streamed_steps, "GROUP_BYTES", 784 * 37 * 5)
  result = train(*_flags(idx, tmp_path, case), "--strategy=mirrored",
                 "--cpu_devices=2", "--input=stream")
  assert result.returncode == 0, result.stderr[-2000:]
  assert "input: stream (--input=stream" in result.stderr
  assert_matches(one_device(case), tmp_path)


@pytest.mark.process
@pytest.mark.parametrize("case", ["softmax-full", "sigmoid-mini"])
def test_two_workers_on_streamed_input_equal_one_device(idx, one_device,
                                                        tmp_path, case):
  result = run_launcher(*_flags(idx, tmp_path, case), "--input=stream")
  assert result.returncode == 0, result.stdout[-3000:]
  assert "input: stream (--input=stream" in result.stdout
  assert_matches(one_device(case), tmp_path)


@pytest.mark.process
@pytest.mark.real_data
def test_the_chief_decodes_once_for_workers_sharing_its_cache(
    shared_tfds_dir, tmp_path):
  result = run_launcher(f"--data_dir={shared_tfds_dir}",
                        f"--cache_dir={tmp_path / 'cache'}",
                        "--input=stream", "--num_epochs=1",
                        "--train_split=train[:3000]", "--test_split=test[:500]")
  assert result.returncode == 0, result.stdout[-3000:]
  lines = result.stdout.splitlines()
  by = lambda worker, text: [l for l in lines
                             if l.startswith(worker) and text in l]
  # Worker 1 waited, then mapped what the chief decoded: TFDS read each
  # split once, in the chief.
  assert by("[w1]", "waiting for the chief to load the data first")
  assert len(by("[w1]", "split from the cache")) == 2
  assert not by("[w0]", "split from the cache")
  assert len(by("[w0]", "Constructing tf.data.Dataset mnist")) == 2
  assert not by("[w1]", "Constructing tf.data.Dataset")


@pytest.mark.process
@pytest.mark.parametrize("case", CASES)
def test_two_workers_equal_one_device(idx, one_device, tmp_path, case):
  result = run_launcher(*_flags(idx, tmp_path, case))
  assert result.returncode == 0, result.stdout[-3000:]
  assert_matches(one_device(case), tmp_path)
  # Only the chief wrote: one event file, its run.json, nothing else.
  events = [f for f in os.listdir(tmp_path) if f.startswith("events.")]
  assert len(events) == 1
  assert sorted(os.listdir(tmp_path)) == sorted(
      ["checkpoints", "figures", "run.json", ".lock"] + events)
  assert "worker 0 of 2" in result.stdout
  with open(tmp_path / "run.json") as f:
    placement = json.load(f)["placement"]
  assert placement["strategy"] == "multi_worker"
  assert placement["replicas"] == 2 and len(placement["workers"]) == 2
  # The chief logs the epochs; worker 1 only its start and its end.
  assert "[w0]" in result.stdout and " epoch 4/4 " in result.stdout
  assert not [l for l in result.stdout.splitlines()
              if l.startswith("[w1]") and " epoch " in l]


def test_uneven_batches_are_named_in_the_log(idx, tmp_path):
  result = train(*_flags(idx, tmp_path, "sigmoid-mini"),
                 "--strategy=mirrored", "--cpu_devices=2")
  assert result.returncode == 0, result.stderr[-2000:]
  assert ("--batch_size=37 does not split evenly over 2 replicas: they take"
          " 18/19 rows") in result.stderr


def _long_flags(idx, model_dir, epochs=400):
  return [f"--idx_dir={idx}", f"--model_dir={model_dir}", "--cache_dir=",
          f"--num_epochs={epochs}", "--checkpoint_every=20",
          "--learning_rate=0.05", "--init=normal"]


# Stopped runs: (epochs, flags) in full batch, and in mini-batch (10 steps
# an epoch, the last of 99 rows, shards of 49/50). The stop follows ckpt-40
# within an epoch or two: mini-batch has 200 steps to spare.
STOP_MODES = {"full": (240, []), "mini": (60, ["--batch_size=100"])}


@pytest.fixture(scope="module")
def uninterrupted(idx, tmp_path_factory):
  """The uninterrupted two-worker run of each mode (made on first use)."""
  def make(mode, model_dir):
    epochs, extra = STOP_MODES[mode]
    return _succeeded(run_launcher(*_long_flags(idx, model_dir, epochs),
                                   *extra), model_dir)
  return made_once(tmp_path_factory, "uninterrupted", make)


def _saved(log, epoch):
  with open(log) as f:
    return f"ckpt-{epoch}\n" in f.read()


FROZEN_TIMEOUT = 4  # --worker_timeout of the runs a worker freezes in


def _error_line(log, index):
  lines = [l for l in log.read_text().splitlines()
           if l.startswith(f"[w{index}] logreg-train: error:")]
  return lines[0] if lines else None


def _stop(proc, log, how):
  """Stops the cluster `how`; checks what it said and its exit codes."""
  if how == "SIGTERM to the launcher":
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=60)
    text = log.read_text()
    # Both stopped after the same epoch, the chief saving it.
    assert proc.returncode == 128 + signal.SIGTERM, text[-3000:]
    assert "exit codes [143, 143]" in text
    stopped = [l for l in text.splitlines() if "stopped by SIGTERM" in l]
    assert len(stopped) == 2 and "ckpt-" in stopped[0] + stopped[1]
  elif how == "SIGKILL to every worker":
    for pid in worker_pids(log):
      os.kill(pid, signal.SIGKILL)
    proc.wait(timeout=60)
    assert "exit codes [-9, -9]" in log.read_text()
  elif how.startswith("a step of worker"):
    # The hook (_hang) holds worker 1's step after its checkpoint; its
    # process answers, so only the collective's bound finds it.
    wait_for(lambda: "never returns" in log.read_text(), proc, "the hang")
    hung = time.monotonic()
    wait_for(lambda: _error_line(log, 0), proc, "worker 0's line",
             timeout=3 * FROZEN_TIMEOUT + 30)
    elapsed = time.monotonic() - hung
    try:
      proc.wait(timeout=6 * FROZEN_TIMEOUT)  # worker 1 ends itself
    finally:
      if proc.poll() is None:
        for pid in worker_pids(log):
          _kill(pid)
        proc.wait(timeout=60)
    text = log.read_text()
    print(f"a step of worker 1 never returns: the line came after "
          f"{elapsed:.1f} s")
    assert elapsed <= 3 * FROZEN_TIMEOUT, (elapsed, text[-3000:])
    line = _error_line(log, 0)
    assert "worker 0: no progress from worker 1 at 127.0.0.1:" in line, (
        text[-3000:])
    assert "/ckpt-" in line and "start every worker again to resume" in line
    own = _error_line(log, 1)
    assert own and "no progress from worker 1 (this worker)" in own, (
        text[-3000:])
    assert "exit codes [5, 5]" in text, text[-3000:]
  else:  # SIGSTOP of worker N
    frozen = int(how.rsplit(" ", 1)[1])
    survivor, pid = 1 - frozen, worker_pids(log)[frozen]
    os.kill(pid, signal.SIGSTOP)
    stopped = time.monotonic()
    try:
      wait_for(lambda: _error_line(log, survivor), proc,
               "the survivor's line", timeout=3 * FROZEN_TIMEOUT + 30)
      elapsed = time.monotonic() - stopped
    finally:
      os.kill(pid, signal.SIGKILL)  # the test cleans up
      proc.wait(timeout=60)
    text = log.read_text()
    print(f"worker {frozen} frozen: the line came after {elapsed:.1f} s")
    assert elapsed <= 3 * FROZEN_TIMEOUT, (elapsed, text[-3000:])
    line = _error_line(log, survivor)
    assert (f"worker {survivor}: no progress from worker {frozen} at "
            "127.0.0.1:") in line, text[-3000:]
    assert " s during epoch " in line and "last good checkpoint: " in line
    assert "/ckpt-" in line and "start every worker again to resume" in line
    codes = [5, -9] if frozen == 1 else [-9, 5]
    assert f"exit codes {codes}" in text


STOPS = ("SIGTERM to the launcher", "SIGKILL to every worker",
         "SIGSTOP of worker 1", "SIGSTOP of worker 0",
         "a step of worker 1 that never returns")


def _kill(pid):
  try:
    os.kill(pid, signal.SIGKILL)
  except ProcessLookupError:
    pass


def _hang(tmp_path, after_epoch):
  """Environment whose hook holds worker 1's step after `after_epoch`
  without end (its threads still answer). The hook goes in once the command
  has loaded TensorFlow its own way, so that worker 1 starts as fast as
  worker 0 (importing logreg_tf.loop at start-up imported TensorFlow before
  the flags, the plain way: about a second slower, enough to miss a 4 s
  cluster formation on a loaded machine)."""
  hook = tmp_path / "hang"
  hook.mkdir(exist_ok=True)
  (hook / "sitecustomize.py").write_text(
      "import json, os, threading\n"
      "if json.loads(os.environ.get('TF_CONFIG', '{}')).get('task', {})"
      ".get('index') == 1:\n"
      "  from logreg_tf import cli\n"
      "  load_tensorflow = cli.load_tensorflow\n"
      "  def load_then_hook():\n"
      "    load_tensorflow()\n"
      "    from logreg_tf import loop\n"
      "    run_epoch = loop.run_epoch\n"
      "    def held(steps, tensors, epoch, display):\n"
      f"      if epoch > {after_epoch}:\n"
      "        print(f'hook: the step of epoch {epoch} never returns',"
      " flush=True)\n"
      "        threading.Event().wait()\n"
      "      return run_epoch(steps, tensors, epoch, display)\n"
      "    loop.run_epoch = held\n"
      "  cli.load_tensorflow = load_then_hook\n")
  return {"PYTHONPATH": str(hook)}


@pytest.mark.process
def test_stopped_killed_and_frozen_workers_resume_bitwise(idx, uninterrupted,
                                                          tmp_path):
  # One run stopped each way in turn, 40 epochs apart, each restart resuming
  # from the chief's checkpoint; it ends as the uninterrupted run, bitwise.
  model_dir = tmp_path / "run"
  epochs, extra = STOP_MODES["full"]
  flags = [*_long_flags(idx, model_dir, epochs), *extra,
           f"--worker_timeout={FROZEN_TIMEOUT}"]
  for i, how in enumerate(STOPS):
    log = tmp_path / f"launch-{i}.log"
    at = 40 * (i + 1)
    proc = start_launcher(log, *flags, env=_hang(tmp_path, at)
                          if how.startswith("a step") else None)
    wait_for(lambda: _saved(log, at), proc, f"ckpt-{at}")
    _stop(proc, log, how)
    assert not _saved(log, epochs), f"{how}: stopped too late"
    assert i == 0 or "resuming from" in log.read_text()
  again = run_launcher(*flags)
  assert again.returncode == 0, again.stdout[-3000:]
  assert "resuming from" in again.stdout
  assert_same_run(uninterrupted("full"), model_dir)


@pytest.mark.process
def test_stopped_workers_resume_bitwise_in_minibatch(idx, uninterrupted,
                                                     tmp_path):
  model_dir, log = tmp_path / "run", tmp_path / "launch.log"
  epochs, extra = STOP_MODES["mini"]
  flags = [*_long_flags(idx, model_dir, epochs), *extra]
  proc = start_launcher(log, *flags)
  wait_for(lambda: _saved(log, 40), proc, "ckpt-40")
  _stop(proc, log, "SIGTERM to the launcher")
  assert not _saved(log, epochs), "stopped too late to test anything"
  again = run_launcher(*flags)
  assert again.returncode == 0, again.stdout[-3000:]
  assert "resuming from" in again.stdout
  assert_same_run(uninterrupted("mini"), model_dir)


@pytest.mark.process
@pytest.mark.parametrize("lost", [1, 0])
def test_a_lost_worker_stops_the_other_within_a_minute(idx, tmp_path, lost):
  model_dir, log = tmp_path / "run", tmp_path / "launch.log"
  # A silent worker counts as lost after --worker_timeout; a killed one is
  # usually found at once (its connections reset).
  proc = start_launcher(log, *_long_flags(idx, model_dir, epochs=10 ** 6),
                        "--worker_timeout=10")
  wait_for(lambda: _saved(log, 40), proc, "ckpt-40")
  killed = time.monotonic()
  os.kill(worker_pids(log)[lost], signal.SIGKILL)
  proc.wait(timeout=90)
  elapsed = time.monotonic() - killed
  text = log.read_text()
  assert elapsed < 60, text[-3000:]
  survivor = 1 - lost
  lines = [l for l in text.splitlines()
           if l.startswith(f"[w{survivor}] logreg-train: error:")]
  assert len(lines) == 1, text[-3000:]
  assert f"worker {survivor}: lost worker {lost} at 127.0.0.1:" in lines[0]
  assert "last good checkpoint: " in lines[0] and "/ckpt-" in lines[0]
  codes = [5, -9] if lost == 1 else [-9, 5]
  assert f"exit codes {codes}" in text
  assert proc.returncode == 128 + signal.SIGKILL
  # Started again, the workers resume from the chief's checkpoint.
  with open(model_dir / "run.json") as f:
    status = json.load(f)["status"]
  assert status in ("worker lost", "running")
  again = run_launcher(*_long_flags(idx, model_dir, epochs=60))
  assert again.returncode == 0, again.stdout[-3000:]
  assert "resuming from" in again.stdout


@pytest.mark.process
def test_slow_phases_are_not_taken_for_a_stuck_worker(idx, tmp_path):
  # Worker 1 takes three --worker_timeout to load its data (as a first
  # decode would) while worker 0 waits for it in the first collective, and
  # the chief's save at epoch 20 takes as long (a slow disk) while worker 1
  # waits for it: both longer than the steps' bound (2 x --worker_timeout),
  # within their own.
  hook = tmp_path / "hook"
  hook.mkdir()
  (hook / "sitecustomize.py").write_text(
      "import json, os, time\n"
      "index = json.loads(os.environ.get('TF_CONFIG', '{}')).get('task', {})"
      ".get('index')\n"
      "if index == 1:\n"
      "  from logreg_tf import data\n"
      "  load = data.load_selected\n"
      "  def slow(*a, **k):\n"
      "    print('hook: worker 1 loads its data late', flush=True)\n"
      f"    time.sleep({3 * FROZEN_TIMEOUT})\n"
      "    return load(*a, **k)\n"
      "  data.load_selected = slow\n"
      "if index == 0:\n"
      "  from logreg_tf.rundir import outputs\n"
      "  save = outputs.ChiefOutputs.save\n"
      "  def slow_save(self, epoch):\n"
      "    if epoch == 20:\n"
      "      print('hook: the chief saves slowly', flush=True)\n"
      f"      time.sleep({3 * FROZEN_TIMEOUT})\n"
      "    return save(self, epoch)\n"
      "  outputs.ChiefOutputs.save = slow_save\n")
  result = run_launcher(*_long_flags(idx, tmp_path / "run", epochs=40),
                        f"--worker_timeout={FROZEN_TIMEOUT}",
                        env={"PYTHONPATH": str(hook)})
  assert result.returncode == 0, result.stdout[-3000:]
  assert "[w1] hook: worker 1 loads its data late" in result.stdout
  assert "[w0] hook: the chief saves slowly" in result.stdout
  assert "exit codes [0, 0]" in result.stdout
  assert "has not answered" not in result.stdout


def _free_port():
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


@pytest.mark.process
@pytest.mark.parametrize("index", [0, 1])
def test_a_worker_that_cannot_reach_the_others_fails_in_a_minute(
    idx, tmp_path, index):
  addresses = [f"127.0.0.1:{_free_port()}" for _ in range(2)]
  started = time.monotonic()
  result = run_cli(*_long_flags(idx, tmp_path / "run"),
                   "--strategy=multi_worker", "--worker_timeout=5",
                   env={"TF_CONFIG": launch_local.tf_config(addresses,
                                                           index)})
  assert time.monotonic() - started < 60
  assert result.returncode == 5, result.stderr[-2000:]
  lines = error_lines(result.stderr)
  assert len(lines) == 1, result.stderr[-2000:]
  other = 1 - index
  assert (f"worker {index}: the cluster did not form within 5 s: no answer "
          f"from worker {other} at {addresses[other]}") in lines[0]
  assert not (tmp_path / "run").exists()


TF_CONFIG_CASES = [
    (None, "--strategy=multi_worker needs the TF_CONFIG environment"),
    ("{not json", "TF_CONFIG is not valid (JSONDecodeError"),
    ('{"cluster": {"worker": ["a:1"]}}', "TF_CONFIG is not valid (KeyError"),
    ('{"cluster": {"worker": ["a:1"]}, "task": {"type": "worker", '
     '"index": 2}}', "TF_CONFIG's task worker 2 is not in its cluster "
     "(worker 0)"),
    ('{"cluster": {"worker": ["nohost"]}, "task": {"type": "worker", '
     '"index": 0}}', "TF_CONFIG's worker 0 address 'nohost' is not host:port"),
    ('{"cluster": {"worker": ["a:1"], "ps": ["b:2"]}, "task": {"type": '
     '"worker", "index": 0}}', "TF_CONFIG's cluster has jobs ps"),
]


@pytest.mark.parametrize("text,quoted", TF_CONFIG_CASES)
def test_bad_tf_config_is_one_line(text, quoted):
  with pytest.raises(UserError, match=None) as e:
    tf_config.read_tf_config(text)
  assert quoted in str(e.value)


def test_bad_tf_config_from_the_command_line(tmp_path, monkeypatch):
  monkeypatch.setenv("TF_CONFIG", "[]")
  result = train("--strategy=multi_worker", f"--model_dir={tmp_path}/out")
  assert result.returncode == 1
  lines = error_lines(result.stderr)
  assert len(lines) == 1 and "TF_CONFIG is not valid" in lines[0]
  assert not (tmp_path / "out").exists()


def test_chief_task_comes_first():
  cluster = tf_config.read_tf_config(json.dumps({
      "cluster": {"worker": ["w0:1", "w1:1"], "chief": ["c:1"]},
      "task": {"type": "worker", "index": 1}}))
  assert [name for name, _ in cluster.tasks] == ["chief 0", "worker 0",
                                                 "worker 1"]
  assert cluster.name == "worker 1" and cluster.index == 2


def test_the_launcher_exits_with_the_worst_status():
  assert launch_local.exit_status([0, 0]) == 0
  assert launch_local.exit_status([0, 5]) == 5
  assert launch_local.exit_status([5, -9]) == 137
  assert launch_local.exit_status([143, 143]) == 143


@pytest.mark.process
def test_the_launcher_gives_each_worker_its_own_port():
  ports = launch_local.free_ports(4)
  assert len(set(ports)) == 4
  config = json.loads(launch_local.tf_config(["127.0.0.1:1", "127.0.0.1:2"],
                                             1))
  assert config["task"] == {"type": "worker", "index": 1}
  assert subprocess.run([sys.executable, launch_local.__file__, "--help"],
                        capture_output=True, check=False).returncode == 0


def test_a_run_lets_go_of_its_input_pipeline_when_it_ends(idx, tmp_path,
                                                          monkeypatch):
  # Left to Python's collector, a mirrored run's input iterator was freed
  # in a later test, and its destructor waited there 10 to 140 s for
  # tf.data's autotuning thread (ReplicatedSteps.close). It must be gone
  # as the run ends, diverged or not, while the Run itself still exists.
  made, alive = [], []
  iterator_of, train_of = ReplicatedSteps._iterator, loop.Run.train

  def recording(self, *args):
    iterator = iterator_of(self, *args)
    made.append(weakref.ref(iterator))
    return iterator

  def train_then_look(self):
    try:
      return train_of(self)
    finally:
      alive.append(any(ref() is not None for ref in made))
  monkeypatch.setattr(ReplicatedSteps, "_iterator", recording)
  monkeypatch.setattr(loop.Run, "train", train_then_look)
  for rate, status in (("0.05", 0), ("1e38", 3)):
    result = train(*_flags(idx, tmp_path / rate, "softmax-mini"),
                   f"--learning_rate={rate}", "--strategy=mirrored",
                   "--cpu_devices=2")
    assert result.returncode == status, result.stderr[-2000:]
  assert made and alive == [False, False]


@pytest.mark.parametrize("case", ["softmax-full", "softmax-mini"])
def test_divergence_on_mirrored_devices_is_one_line(idx, tmp_path, case):
  result = train(*_flags(idx, tmp_path, case), "--learning_rate=1e38",
                 "--strategy=mirrored", "--cpu_devices=2")
  assert result.returncode == 3, result.stderr[-2000:]
  lines = error_lines(result.stderr)
  assert len(lines) == 1 and "training diverged at epoch " in lines[0]
