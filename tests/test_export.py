"""`python -m logreg_tf.export`: a SavedModel that serves without logreg_tf,
with the trainer's probabilities."""

import os

import numpy as np
import pytest
import tensorflow as tf

from logreg_tf import data, metrics

from logreg_tf.data import idx

from logreg_tf.rundir import trained as trained_lib
from conftest import SmallRuns, make_idx_dir
from helpers import invoke, run_python, train

# Runs in a fresh process in which logreg_tf cannot be imported: for each
# (export, images, output) triple of its arguments, what the export serves.
SERVE = """
import sys
sys.modules["logreg_tf"] = None  # any import of it fails
import numpy as np, tensorflow as tf
try:
  import logreg_tf
  raise SystemExit("logreg_tf was importable")
except ImportError:
  pass
args = sys.argv[1:]
for export, images, output in zip(args[::3], args[1::3], args[2::3]):
  model = tf.saved_model.load(export)
  images = np.load(images)
  out = model.signatures["serving_default"](images=tf.constant(images))
  flat = images.reshape(len(images), -1).astype(np.float32) / np.float32(255)
  out2 = model.signatures["features"](features=tf.constant(flat))
  np.savez(output, probabilities=out["probabilities"].numpy(),
           ids=out["class_ids"].numpy(),
           names=np.array([n.decode() for n in out["class_names"].numpy()]),
           probabilities2=out2["probabilities"].numpy())
"""


@pytest.mark.process
def test_served_probabilities_equal_the_trainers(small_runs, tmp_path):
  # The binomial run is exported here; the softmax one by the fixture.
  binomial_export = tmp_path / "export"
  result = invoke("export", f"--model_dir={small_runs.binomial}",
                  f"--export_dir={binomial_export}")
  assert result.returncode == 0, result.stderr[-2000:]
  version = str(SmallRuns.EPOCHS)  # the checkpoint's epoch
  expected, args = {}, []
  for kind, model_dir, export in (
      ("softmax", small_runs.softmax, small_runs.export),
      ("binomial", small_runs.binomial, str(binomial_export))):
    assert sorted(os.listdir(export)) == [version]
    # The trainer's model on the test split (its classes selected).
    model = trained_lib.load(model_dir)
    test_images, test_labels, _ = idx.load_split(small_runs.idx, "test")
    names = model.spec["classes"]
    keep = np.isin(test_labels, [int(n) for n in names])
    images = test_images[keep][..., None]
    expected[kind] = names, metrics.probabilities(model.model(
        data.to_features(images.reshape(len(images), -1))).numpy())
    np.save(tmp_path / f"{kind}.npy", images)
    args += [os.path.join(export, version), tmp_path / f"{kind}.npy",
             tmp_path / f"{kind}-served.npz"]
  served = run_python(["-c", SERVE, *map(str, args)], cwd=tmp_path)
  assert served.returncode == 0, served.stderr[-2000:]
  for kind, (names, probabilities) in expected.items():
    got = np.load(tmp_path / f"{kind}-served.npz")
    np.testing.assert_allclose(got["probabilities"], probabilities, atol=1e-6)
    np.testing.assert_allclose(got["probabilities2"], probabilities,
                               atol=1e-6)
    np.testing.assert_array_equal(got["ids"], probabilities.argmax(axis=1))
    assert list(got["names"]) == [
        names[i] for i in probabilities.argmax(axis=1)]


def test_an_existing_export_is_kept_unless_overwrite(tmp_path):
  idx_dir = make_idx_dir(tmp_path / "idx", n_train=50, n_test=20)[0]
  model_dir = tmp_path / "run"
  assert train(f"--idx_dir={idx_dir}", f"--model_dir={model_dir}",
               "--num_epochs=1").returncode == 0
  out = tmp_path / "export"
  assert invoke("export", f"--model_dir={model_dir}",
                    f"--export_dir={out}").returncode == 0
  before = os.path.getmtime(out / "1" / "saved_model.pb")
  again = invoke("export", f"--model_dir={model_dir}", f"--export_dir={out}")
  assert again.returncode == 1 and "Traceback" not in again.stderr
  (line,) = [l for l in again.stderr.splitlines()
             if l.startswith("logreg-export:")]
  assert f"{out}/1 exists; pass --overwrite" in line
  assert os.path.getmtime(out / "1" / "saved_model.pb") == before
  assert sorted(os.listdir(out)) == ["1"]  # nothing half-written beside it
  forced = invoke("export", f"--model_dir={model_dir}", f"--export_dir={out}",
                      "--overwrite")
  assert forced.returncode == 0, forced.stderr[-2000:]
  assert tf.saved_model.contains_saved_model(str(out / "1"))
  empty = tmp_path / "empty"
  empty.mkdir()
  nothing = invoke("export", f"--model_dir={empty}", f"--export_dir={tmp_path}/x")
  assert nothing.returncode == 1 and "holds no checkpoint" in nothing.stderr
  assert not (tmp_path / "x").exists()
