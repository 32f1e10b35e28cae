"""Every user error: one line quoting the bad value, status 1, nothing left.

The tables run each command in this process (helpers.invoke: the same
parser, main and one-line path as the program); a few rows run again as
programs, where the process boundary (status, no traceback) is the point.
"""

import os
import shutil

import pytest

from conftest import SmallRuns, make_idx_dir
from helpers import error_lines, invoke, run_cli, run_command, train

# (flags, text the one line must quote). {tmp} is a fresh directory, {file}
# a file in it, {idx} a directory without IDX files, {mnist} one with small
# MNIST-shaped IDX files.
CASES = [
    (["--learning_rate=0"], "--learning_rate=0.0"),
    (["--learning_rate=-1"], "--learning_rate=-1.0"),
    (["--learning_rate=nan"], "--learning_rate=nan"),
    (["--learning_rate=fast"], "'fast'"),
    (["--num_epochs=0"], "--num_epochs=0"),
    (["--display_step=0"], "--display_step=0"),
    (["--checkpoint_every=-3"], "--checkpoint_every=-3"),
    (["--keep_checkpoints=0"], "--keep_checkpoints=0"),
    (["--batch_size=0"], "--batch_size=0"),
    (["--l2=-0.5"], "--l2=-0.5"),
    (["--seed=-1"], "--seed=-1"),
    (["--init=uniform"], "--init=uniform"),
    (["--lr_schedule=cosine"], "--lr_schedule=cosine"),
    (["--classes=3,3"], "--classes=3,3: a class is repeated"),
    (["--classes=7"], "--classes=7: give at least two"),
    (["--classes=1,"], "--classes=1,: an empty class name"),
    (["--classes=1,12", "--idx_dir={mnist}"],
     "--classes=1,12: '12' is not a class of mnist; its classes are 0, 1"),
    (["--classes=a,b", "--idx_dir={mnist}"], "'a' is not a class of mnist"),
    (["--idx_dir={mnist}", "--data_dir={tmp}"],
     "--idx_dir and --data_dir name two sources of data; give one"),
    (["--dataset="], "--dataset=: give a TFDS dataset name"),
    (["--train_split="], "--train_split=: give a TFDS split"),
    (["--no_such_flag=1"], "no_such_flag"),
    (["positional"], "'positional'"),
    (["--flagfile={tmp}/missing.cfg"], "missing.cfg"),
    (["--model_dir={file}"], "--model_dir={file}: it is a file"),
    (["--model_dir=/proc"], "cannot write in '/proc'"),
    (["--model_dir=/proc/logreg_tf/run"], "cannot write in '/proc'"),
    (["--idx_dir={tmp}/nowhere"], "nowhere' is not a directory"),
    (["--idx_dir={idx}"], "train-images-idx3-ubyte[.gz] not found"),
    (["--data_dir={idx}"], "dataset 'mnist' not found"),
    (["--strategy=gpu"], "--strategy=gpu"),
    (["--cpu_devices=2"], "cpu_devices=2: --cpu_devices splits the CPU for "
     "--strategy=mirrored; the chosen --strategy does not use it"),
    (["--strategy=multi_worker", "--cpu_devices=2"],
     "strategy=multi_worker, cpu_devices=2: --cpu_devices splits the CPU"),
    (["--strategy=mirrored", "--cpu_devices=0"], "--cpu_devices=0"),
    (["--worker_timeout=0"], "--worker_timeout=0.0"),
    (["--strategy=multi_worker"], "--strategy=multi_worker needs the "
     "TF_CONFIG environment variable"),
    (["--solver=newton", "--l2=1e-4"], "--solver=newton"),
    (["--solver=lbfgs", "--batch_size=100"], "--solver=lbfgs and newton_cg "
     "are full-batch solvers; drop --batch_size"),
    (["--solver=lbfgs", "--tol=0"], "--tol=0.0: must be a finite number > 0"),
    (["--solver=newton_cg", "--tol=-1e-6"], "--tol=-1e-06"),
    (["--solver=lbfgs", "--max_iter=0"], "--max_iter=0"),
    (["--solver=lbfgs", "--strategy=mirrored"], "--solver=lbfgs and "
     "newton_cg run on one device"),
    (["--input=disk"], "--input=disk"),
    (["--data_dir={idx}", "--dataset=no_such_set"],
     "dataset 'no_such_set' not found: no prepared TFDS 'no_such_set' in "
     "{idx}"),
]


@pytest.mark.parametrize("args,quoted", CASES, ids=lambda v: str(v)[:40])
def test_bad_input(tmp_path, monkeypatch, args, quoted):
  monkeypatch.delenv("TF_CONFIG", raising=False)
  afile = tmp_path / "a_file"
  afile.write_text("x")
  empty = tmp_path / "empty"
  empty.mkdir()
  out = tmp_path / "out"
  subs = {"tmp": tmp_path, "file": afile, "idx": empty,
          "mnist": tmp_path / "mnist"}
  if any("{mnist}" in a for a in args):
    make_idx_dir(tmp_path / "mnist", n_train=20, n_test=10)
  args = [a.format(**subs) for a in args]
  if not any(a.startswith("--model_dir") for a in args):
    args.append(f"--model_dir={out}")  # must not appear after a failure
  result = train(*args, "--num_epochs=1" if "num_epochs" not in str(args)
                 else "--seed=0")
  assert result.returncode == 1, result.stderr[-2000:]
  assert "Traceback" not in result.stderr
  lines = error_lines(result.stderr)
  assert len(lines) == 1, result.stderr[-2000:]
  assert quoted.format(**subs) in lines[0]
  assert not out.exists()
  assert sorted(os.listdir(empty)) == []


@pytest.mark.process
def test_read_only_directory_for_a_normal_user(tmp_path):
  if os.geteuid() == 0:
    pytest.skip("root writes into a mode-555 directory; /proc covers root")
  read_only = tmp_path / "ro"
  read_only.mkdir(mode=0o555)
  result = run_cli(f"--model_dir={read_only}", "--num_epochs=1")
  assert result.returncode == 1
  (line,) = error_lines(result.stderr)
  assert "cannot write in" in line


@pytest.mark.process
def test_bad_input_as_a_program(tmp_path):
  # The process boundary: status 1, the one line, no traceback, nothing
  # written (test_cli.py has more rows as programs).
  result = run_cli("--learning_rate=0", f"--model_dir={tmp_path / 'out'}")
  assert result.returncode == 1, result.stderr[-2000:]
  assert "Traceback" not in result.stderr
  (line,) = error_lines(result.stderr)
  assert "--learning_rate=0.0" in line
  assert not (tmp_path / "out").exists()


@pytest.fixture(scope="module")
def models(tmp_path_factory, small_runs):
  """Model directories: a good MNIST one, a damaged copy, an empty one, one
  of 16x12 images, and a PNG."""
  import numpy as np
  from PIL import Image
  from conftest import write_idx
  root = tmp_path_factory.mktemp("models")
  idx = small_runs.idx
  good = root / "good"
  shutil.copytree(small_runs.softmax, good)
  damaged = root / "damaged"
  shutil.copytree(good, damaged)
  for path in (damaged / "checkpoints").glob("*.data-*"):
    path.write_bytes(path.read_bytes()[:100])
  (root / "empty").mkdir()
  small = root / "small_idx"
  small.mkdir()
  for name, shape in (("train-images-idx3-ubyte", (30, 16, 12)),
                      ("t10k-images-idx3-ubyte", (10, 16, 12))):
    write_idx(small / name, np.zeros(shape, np.uint8))
  write_idx(small / "train-labels-idx1-ubyte", np.arange(30) % 3)
  write_idx(small / "t10k-labels-idx1-ubyte", np.arange(10) % 3)
  assert train(f"--idx_dir={small}", f"--model_dir={root / 'small'}",
               "--dataset=glyphs", "--num_epochs=1").returncode == 0
  Image.fromarray(np.zeros((28, 28), np.uint8)).save(root / "digit.png")
  # An export of the good model's version exists already.
  (root / "exported" / str(SmallRuns.EPOCHS)).mkdir(parents=True)
  return root, idx


# The other commands: (command, flags, text the one line must quote).
# {r} is the fixture's directory, {idx} its IDX files.
COMMAND_CASES = [
    ("evaluate", ["--model_dir={r}/empty", "--idx_dir={idx}"],
     "holds no checkpoint"),
    ("evaluate", ["--model_dir={r}/damaged", "--idx_dir={idx}"],
     "no intact checkpoint in {r}/damaged/checkpoints"),
    ("evaluate", ["--model_dir={r}/good", "--idx_dir={idx}",
                  "--dataset=kmnist"],
     "is of dataset 'mnist', not --dataset='kmnist'"),
    ("export", ["--model_dir={r}/empty", "--export_dir={r}/out"],
     "holds no checkpoint"),
    ("export", ["--model_dir={r}/damaged", "--export_dir={r}/out"],
     "no intact checkpoint"),
    ("export", ["--model_dir={r}/good", "--export_dir={r}/exported"],
     "{r}/exported/{v} exists; pass --overwrite"),
    ("predict", ["--model_dir={r}/empty", "{r}/digit.png"],
     "holds no checkpoint"),
    ("predict", ["--model_dir={r}/damaged", "{r}/digit.png"],
     "no intact checkpoint"),
    ("predict", ["--model_dir={r}/small", "--preprocess=mnist",
                 "{r}/digit.png"],
     "--preprocess=mnist makes 28x28x1 digits; this model takes 16x12x1"),
]


@pytest.mark.parametrize("command,args,quoted", COMMAND_CASES,
                         ids=lambda v: str(v)[:30])
def test_bad_input_of_the_other_commands(models, command, args, quoted):
  root, idx = models
  subs = {"r": root, "idx": idx, "v": SmallRuns.EPOCHS}
  before = sorted(p.name for p in root.iterdir())
  result = invoke(command, *[a.format(**subs) for a in args])
  assert result.returncode == 1, result.stderr[-2000:]
  assert "Traceback" not in result.stderr
  lines = [l for l in result.stderr.splitlines()
           if l.startswith(f"logreg-{command}:")]
  assert len(lines) == 1, result.stderr[-2000:]
  assert quoted.format(**subs) in lines[0]
  assert sorted(p.name for p in root.iterdir()) == before  # nothing written
  assert sorted(p.name for p in (root / "exported").iterdir()) == [
      str(SmallRuns.EPOCHS)]


@pytest.mark.process
@pytest.mark.parametrize("command,args,quoted", [
    case for case in COMMAND_CASES if case[0] != "evaluate"][::3],
    ids=lambda v: str(v)[:30])
def test_bad_input_of_the_other_programs(models, command, args, quoted):
  # As programs: the status, one line and no traceback cross the process
  # boundary (one row per command; evaluate's runs in test_evaluate).
  root, idx = models
  subs = {"r": root, "idx": idx}
  result = run_command(command, *[a.format(**subs) for a in args])
  assert result.returncode == 1, result.stderr[-2000:]
  assert "Traceback" not in result.stderr
  lines = [l for l in result.stderr.splitlines()
           if l.startswith(f"logreg-{command}:")]
  assert len(lines) == 1 and quoted.format(**subs) in lines[0], result.stderr
