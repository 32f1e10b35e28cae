"""Running the commands in this process or (where the process boundary is
the point) in a subprocess, and reading what runs wrote."""

import contextlib
import fcntl
import glob
import importlib
import io
import json
import logging
import os
import pathlib
import shutil
import subprocess
import sys
import time
from typing import NamedTuple

from absl import logging as absl_logging
import numpy as np
import tensorflow as tf

from conftest import REPO
from logreg_tf import cli
import zygote


class Result(NamedTuple):
  """What a command run in this process did, as a subprocess shows it."""
  returncode: int
  stdout: str
  stderr: str  # the one-line errors and the absl log messages, in order


class _Lines(logging.Handler):
  def __init__(self, stream):
    super().__init__(logging.DEBUG)
    self._stream = stream

  def emit(self, record):
    self._stream.write(record.getMessage() + "\n")


def invoke(command, *args) -> Result:
  """`python -m logreg_tf.COMMAND ARGS`, run in this process (cli.invoke):
  its exit status, stdout, and stderr with the INFO log lines."""
  module = importlib.import_module(f"logreg_tf.{command}")
  out, err = io.StringIO(), io.StringIO()
  handler = _Lines(err)
  logger = logging.getLogger("absl")
  verbosity = absl_logging.get_verbosity()
  absl_logging.set_verbosity(absl_logging.INFO)
  logger.addHandler(handler)
  try:
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
      code = cli.invoke(module.COMMAND, [str(a) for a in args])
  finally:
    logger.removeHandler(handler)
    absl_logging.set_verbosity(verbosity)
  return Result(code, out.getvalue(), err.getvalue())


def train(*args) -> Result:
  return invoke("train", *args)


# Flags that keep real data and the decoded-data cache from standing in for
# tfds.testing.mock_data in a command run in this process (TFDS reads
# TFDS_DATA_DIR once, when it is imported).
NO_REAL_DATA = ("--data_dir=/nonexistent/tfds", "--cache_dir=")


def mocked_train(num_examples, *args) -> Result:
  """`logreg-train ARGS` in this process on TFDS's mock data."""
  import tensorflow_datasets as tfds
  with tfds.testing.mock_data(num_examples=num_examples):
    return train(*args, *NO_REAL_DATA)


def parse_train(*argv):
  """(RunConfig, Storage) of `logreg-train ARGV`, parsed on fresh flags."""
  from logreg_tf import train as train_lib
  return train_lib.configs_from_argv(list(argv))

# The real command line, inside tfds.testing.mock_data (which only patches
# the process it runs in).
MOCKED_MAIN = (
    "import sys, tensorflow_datasets as tfds\n"
    "from logreg_tf import train\n"
    "with tfds.testing.mock_data(num_examples=int(sys.argv.pop(1))):\n"
    "  train.run()\n")


def _env(**extra):
  """The environment of a command under test: quiet TensorFlow, caches
  (decoded data) kept out of $HOME, and no TF_CONFIG but the test's."""
  env = {k: v for k, v in os.environ.items() if k != "TF_CONFIG"}
  return {**env, "TF_CPP_MIN_LOG_LEVEL": "3",
          "XDG_CACHE_HOME": os.path.join(REPO, ".pytest_cache", "xdg"),
          **extra}


_ZYGOTES = []


def _zygote() -> zygote.Zygote:
  """This test process's zygote (tests/zygote.py), started on first use."""
  if not _ZYGOTES:
    _ZYGOTES.append(zygote.Zygote(_env()))
  return _ZYGOTES[0]


def start_python(argv, env=None, cwd=REPO, stdout=subprocess.PIPE,
                 stderr=subprocess.PIPE):
  """`python ARGV` as a process of its own, as subprocess.Popen(...,
  text=True) shows it: forked from the zygote when exec would start the
  same process, else exec'd."""
  env = _env() if env is None else env
  if _zygote().can_fork(env):
    return _zygote().start(list(argv), cwd, env, stdout, stderr)
  return subprocess.Popen([sys.executable, *argv], cwd=cwd, env=env,
                          stdin=subprocess.DEVNULL, stdout=stdout,
                          stderr=stderr, text=True)


def run_python(argv, env=None, cwd=REPO, timeout=120,
               stderr=subprocess.PIPE):
  """start_python, waited for: a CompletedProcess as subprocess.run gives
  it (the process killed if it outlives `timeout`)."""
  proc = start_python(argv, env, cwd, subprocess.PIPE, stderr)
  try:
    out, err = proc.communicate(timeout=timeout)
  except subprocess.TimeoutExpired:
    proc.kill()
    proc.communicate()
    raise
  return subprocess.CompletedProcess(argv, proc.returncode, out, err)


def run_command(module, *args, timeout=120):
  """Runs `python -m logreg_tf.MODULE ARGS`; returns CompletedProcess."""
  return run_python(["-m", f"logreg_tf.{module}", *args], timeout=timeout)


def run_cli(*args, mock_examples=None, env=None, timeout=120):
  """Runs `python -m logreg_tf.train ARGS`; returns CompletedProcess."""
  full_env = _env(**(env or {}))
  if mock_examples is None:
    argv = ["-m", "logreg_tf.train", *args]
  else:
    # No real data and no cache may stand in for the mock.
    full_env["TFDS_DATA_DIR"] = "/nonexistent/tfds"
    argv = ["-c", MOCKED_MAIN, str(mock_examples), *args, "--cache_dir="]
  return run_python(argv, full_env, timeout=timeout)


def start_cli(*args):
  """Starts `python -m logreg_tf.train ARGS` without waiting (stderr piped)."""
  return start_python(["-m", "logreg_tf.train", *args])


def wait_for(ready, proc, what, timeout=120):
  """Polls ready() while proc runs; fails the test if it never comes, with
  the end of the program's stderr (or of its log: start_launcher's)."""
  deadline = time.monotonic() + timeout
  while not ready():
    if proc.poll() is not None:
      log = getattr(proc, "log_path", None)
      said = (proc.stderr.read() if proc.stderr is not None
              else pathlib.Path(log).read_text() if log else "")
      raise AssertionError(f"ended before {what} (status {proc.returncode})"
                           f": {said[-3000:]}")
    assert time.monotonic() < deadline, f"no {what} within {timeout} s"
    time.sleep(0.01)


def _shared_root(tmp_path_factory) -> pathlib.Path:
  """A directory that every test process of this pytest run sees: the
  parent of pytest-xdist's per-worker base directories, or this process's
  own base directory."""
  base = tmp_path_factory.getbasetemp()
  return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


def made_once(tmp_path_factory, prefix, make):
  """get(key): what make(key, directory) returned (JSON data: paths,
  figures), made in a new directory on the first get(key) of the whole
  pytest run. Under pytest-xdist the test processes share it: the first to
  ask makes it under a file lock while the others wait, then all read what
  it returned. Tests that change what was made work on a copy."""
  root = _shared_root(tmp_path_factory) / "made_once"
  results = {}

  def get(key):
    if key not in results:
      name = f"{prefix}-{key}"
      root.mkdir(exist_ok=True)
      with open(root / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        done = root / f"{name}.json"
        if not done.exists():
          directory = root / name
          shutil.rmtree(directory, ignore_errors=True)  # a failed make's
          directory.mkdir()
          done.write_text(json.dumps(make(key, directory), default=str))
        results[key] = json.loads(done.read_text())
    return results[key]
  return get


def shared_idx_dir(tmp_path_factory, n_train: int, n_test: int) -> str:
  """conftest.make_idx_dir's files of that size, made once per pytest run
  (one path for every test process: runs made once are compared with runs
  made elsewhere)."""
  from conftest import make_idx_dir
  return made_once(tmp_path_factory, "idx", lambda _, d: make_idx_dir(
      d, n_train=n_train, n_test=n_test)[0])(f"{n_train}x{n_test}")


def error_lines(stderr: str, prog: str = "logreg-train"):
  """The lines our command wrote as errors (absl/TF logging filtered out)."""
  return [l for l in stderr.splitlines() if l.startswith(f"{prog}:")]


def summary_values(model_dir, still_writing=False):
  """(step, summary value) of every event file under model_dir. With
  still_writing, a file's last record may be half written (a run writes it
  as we read): its records up to there, as TensorBoard reads them."""
  for path in glob.glob(os.path.join(model_dir, "events.out.tfevents.*")):
    try:
      for event in tf.compat.v1.train.summary_iterator(path):
        for value in event.summary.value:
          yield event.step, value
    except tf.errors.DataLossError:
      if not still_writing:
        raise


def read_scalars(model_dir):
  """{tag: {step: value}} from every event file under model_dir."""
  out = {}
  for step, value in summary_values(model_dir):
    if value.metadata.plugin_data.plugin_name == "scalars":
      out.setdefault(value.tag, {})[step] = float(
          tf.make_ndarray(value.tensor))
  return out


def read_tags(model_dir):
  return {value.tag for _, value in summary_values(model_dir)}


def read_hparams(model_dir):
  """(hparams of the session, metric tags of the experiment) from events."""
  from tensorboard.plugins.hparams import plugin_data_pb2
  hparams, metrics = {}, []
  for path in glob.glob(os.path.join(model_dir, "events.out.tfevents.*")):
    for event in tf.compat.v1.train.summary_iterator(path):
      for value in event.summary.value:
        if value.metadata.plugin_data.plugin_name != "hparams":
          continue
        data = plugin_data_pb2.HParamsPluginData.FromString(
            value.metadata.plugin_data.content)
        if data.HasField("session_start_info"):
          for key, v in data.session_start_info.hparams.items():
            hparams[key] = getattr(v, v.WhichOneof("kind"))
        if data.HasField("experiment"):
          metrics = [m.name.tag for m in data.experiment.metric_infos]
  return hparams, metrics


def final_state(model_dir):
  """(weights of the newest checkpoint, run.json) of a finished run."""
  reader = tf.train.load_checkpoint(os.path.join(model_dir, "checkpoints"))
  weights = {k: reader.get_tensor(k)
             for k in reader.get_variable_to_shape_map()
             if k.startswith("model/") or k.startswith("optimizer/")}
  with open(os.path.join(model_dir, "run.json")) as f:
    return weights, json.load(f)


def assert_same_run(a_dir, b_dir):
  (wa, ja), (wb, jb) = final_state(a_dir), final_state(b_dir)
  assert sorted(wa) == sorted(wb) and wa
  for key in wa:
    np.testing.assert_array_equal(wa[key], wb[key], err_msg=key)  # bitwise
  assert ja["final_metrics"] == jb["final_metrics"]
  assert ja["dataset"]["fingerprint_sha256"] == jb["dataset"][
      "fingerprint_sha256"]


def read_image_steps(model_dir):
  """{tag: sorted steps} of the image summaries under model_dir."""
  out = {}
  for step, value in summary_values(model_dir):
    if value.metadata.plugin_data.plugin_name == "images":
      out.setdefault(value.tag, []).append(step)
  return {k: sorted(v) for k, v in out.items()}


LAUNCHER = os.path.join(REPO, "scripts", "launch_local.py")
# The launcher in a child of the zygote, forking its workers from itself.
FORKING_LAUNCHER = (
    "import sys\n"
    f"sys.path[:0] = [{os.path.dirname(LAUNCHER)!r}, "
    f"{os.path.join(REPO, 'tests')!r}]\n"
    "import launch_local, zygote\n"
    "sys.exit(launch_local.main(sys.argv[1:], start=zygote.fork_worker))\n")


def _launcher_argv(workers, args, env):
  flags = [f"--workers={workers}", "--", *args]
  if _zygote().can_fork(env):
    return ["-c", FORKING_LAUNCHER, *flags]
  return [LAUNCHER, *flags]  # e.g. a sitecustomize: every worker exec'd


def run_launcher(*args, workers=2, timeout=240, env=None):
  """scripts/launch_local.py --workers=N -- ARGS; returns CompletedProcess
  (every worker's lines on stdout, prefixed [wI])."""
  env = _env(**(env or {}))
  return run_python(_launcher_argv(workers, args, env), env,
                    timeout=timeout, stderr=subprocess.STDOUT)


def start_launcher(log_path, *args, workers=2, env=None):
  """The launcher without waiting; its output goes to `log_path` (kept as
  the process's `log_path`, for wait_for)."""
  env = _env(**(env or {}))
  with open(log_path, "w") as log:
    proc = start_python(_launcher_argv(workers, args, env), env,
                        stdout=log, stderr=subprocess.STDOUT)
  proc.log_path = log_path
  return proc


def worker_pids(log_path):
  """The worker pids the launcher printed, or None before it did."""
  with open(log_path) as f:
    for line in f:
      if line.startswith("[launch]") and "pids" in line:
        return [int(p) for p in line.split("pids")[1].split()]
  return None
