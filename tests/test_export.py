"""`python -m logreg_tf.export`: a SavedModel that serves without logreg_tf,
with the trainer's probabilities."""

import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from logreg_tf import data, metrics

from logreg_tf.data import idx

from logreg_tf.rundir import trained as trained_lib
from conftest import make_idx_dir
from helpers import run_cli, run_command

# Runs in a fresh process in which logreg_tf cannot be imported.
SERVE = """
import sys
sys.modules["logreg_tf"] = None  # any import of it fails
import numpy as np, tensorflow as tf
try:
  import logreg_tf
  raise SystemExit("logreg_tf was importable")
except ImportError:
  pass
model = tf.saved_model.load(sys.argv[1])
images = np.load(sys.argv[2])
out = model.signatures["serving_default"](images=tf.constant(images))
flat = images.reshape(len(images), -1).astype(np.float32) / np.float32(255)
out2 = model.signatures["features"](features=tf.constant(flat))
np.savez(sys.argv[3], probabilities=out["probabilities"].numpy(),
         ids=out["class_ids"].numpy(),
         names=np.array([n.decode() for n in out["class_names"].numpy()]),
         probabilities2=out2["probabilities"].numpy())
"""


@pytest.mark.parametrize("extra", [[], ["--classes=3,8"]],
                         ids=["softmax", "binomial"])
def test_served_probabilities_equal_the_trainers(tmp_path, extra):
  idx_dir = make_idx_dir(tmp_path / "idx", n_train=200, n_test=60)[0]
  model_dir = tmp_path / "run"
  trained_run = run_cli(f"--idx_dir={idx_dir}", f"--model_dir={model_dir}",
                        "--num_epochs=4", "--batch_size=32", *extra)
  assert trained_run.returncode == 0, trained_run.stderr[-2000:]
  out = tmp_path / "export"
  result = run_command("export", f"--model_dir={model_dir}", f"--export_dir={out}")
  assert result.returncode == 0, result.stderr[-2000:]
  assert sorted(os.listdir(out)) == ["4"]  # the checkpoint's epoch

  # The trainer's model on the test split (its classes selected).
  model = trained_lib.load(str(model_dir))
  test_images, test_labels, _ = idx.load_split(idx_dir, "test")
  names = model.spec["classes"]
  keep = np.isin(test_labels, [int(n) for n in names])
  images = test_images[keep][..., None]
  expected = metrics.probabilities(
      model.model(data.to_features(images.reshape(len(images), -1))).numpy())
  np.save(tmp_path / "images.npy", images)
  served = subprocess.run(
      [sys.executable, "-c", SERVE, str(out / "4"), str(tmp_path / "images.npy"),
       str(tmp_path / "served.npz")], cwd=tmp_path, capture_output=True,
      text=True, timeout=120, check=False,
      env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
  assert served.returncode == 0, served.stderr[-2000:]
  got = np.load(tmp_path / "served.npz")
  np.testing.assert_allclose(got["probabilities"], expected, atol=1e-6)
  np.testing.assert_allclose(got["probabilities2"], expected, atol=1e-6)
  np.testing.assert_array_equal(got["ids"], expected.argmax(axis=1))
  assert list(got["names"]) == [
      names[i] for i in expected.argmax(axis=1)]


def test_an_existing_export_is_kept_unless_overwrite(tmp_path):
  idx_dir = make_idx_dir(tmp_path / "idx", n_train=50, n_test=20)[0]
  model_dir = tmp_path / "run"
  assert run_cli(f"--idx_dir={idx_dir}", f"--model_dir={model_dir}",
                 "--num_epochs=1").returncode == 0
  out = tmp_path / "export"
  assert run_command("export", f"--model_dir={model_dir}",
                    f"--export_dir={out}").returncode == 0
  before = os.path.getmtime(out / "1" / "saved_model.pb")
  again = run_command("export", f"--model_dir={model_dir}", f"--export_dir={out}")
  assert again.returncode == 1 and "Traceback" not in again.stderr
  (line,) = [l for l in again.stderr.splitlines()
             if l.startswith("logreg-export:")]
  assert f"{out}/1 exists; pass --overwrite" in line
  assert os.path.getmtime(out / "1" / "saved_model.pb") == before
  assert sorted(os.listdir(out)) == ["1"]  # nothing half-written beside it
  forced = run_command("export", f"--model_dir={model_dir}", f"--export_dir={out}",
                      "--overwrite")
  assert forced.returncode == 0, forced.stderr[-2000:]
  assert tf.saved_model.contains_saved_model(str(out / "1"))
  empty = tmp_path / "empty"
  empty.mkdir()
  nothing = run_command("export", f"--model_dir={empty}", f"--export_dir={tmp_path}/x")
  assert nothing.returncode == 1 and "holds no checkpoint" in nothing.stderr
  assert not (tmp_path / "x").exists()
