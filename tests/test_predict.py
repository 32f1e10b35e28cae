"""`python -m logreg_tf.predict`: image files of any format, size and colour,
a checkpoint or an export, MNIST's preprocessing, files it cannot read."""

import json
import os

import numpy as np
from PIL import Image
import pytest

from logreg_tf import data, metrics, serving

from logreg_tf.data import images

from logreg_tf.rundir import trained as trained_lib
from conftest import SmallRuns
from helpers import invoke, run_command


@pytest.fixture
def model(small_runs):
  """(model_dir, export version dir, test images [N, 28, 28]) of a run."""
  return (small_runs.softmax,
          os.path.join(small_runs.export, str(SmallRuns.EPOCHS)),
          small_runs.arrays["t10k-images-idx3-ubyte"].astype(np.uint8))


def test_native_pngs_get_the_trainers_probabilities(model, tmp_path):
  model_dir, _, test = model
  for i in range(5):
    Image.fromarray(test[i]).save(tmp_path / f"{i}.png")
  out = tmp_path / "out.json"
  result = invoke("predict", f"--model_dir={model_dir}",
                    f"--output_json={out}", str(tmp_path))
  assert result.returncode == 0, result.stderr[-2000:]
  got = json.loads(out.read_text())["predictions"]
  assert [os.path.basename(p["file"]) for p in got] == [f"{i}.png"
                                                        for i in range(5)]
  trained = trained_lib.load(model_dir)
  probs = metrics.probabilities(trained.model(
      data.to_features(test[:5].reshape(5, -1))).numpy())
  for p, expected in zip(got, probs):
    assert p["probability"] == pytest.approx(expected.max(), abs=1e-6)
    assert p["class"] == trained.spec["classes"][expected.argmax()]
    assert [name for name, _ in p["top3"]][0] == p["class"]
  assert len(result.stdout.strip().splitlines()) == 5


def test_any_format_size_and_colour_and_the_export_agree(model, tmp_path):
  model_dir, saved_model, test = model
  digit = Image.fromarray(test[0])
  digit.resize((56, 56)).convert("RGB").save(tmp_path / "a.jpg")
  digit.convert("RGBA").save(tmp_path / "b.png")
  digit.save(tmp_path / "c.gif")
  digit.resize((40, 30)).convert("RGB").save(tmp_path / "d.bmp")
  by_checkpoint = invoke("predict", f"--model_dir={model_dir}",
                           str(tmp_path))
  by_export = invoke("predict", f"--saved_model={saved_model}",
                       str(tmp_path))
  # The directory export wrote, as TensorFlow Serving takes it.
  by_base = invoke("predict", f"--saved_model={os.path.dirname(saved_model)}",
                   str(tmp_path))
  assert by_checkpoint.returncode == 0, by_checkpoint.stderr[-2000:]
  assert by_export.returncode == 0, by_export.stderr[-2000:]
  assert len(by_checkpoint.stdout.splitlines()) == 4
  assert by_checkpoint.stdout == by_export.stdout == by_base.stdout


def test_the_newest_numeric_version_is_the_one_loaded(tmp_path):
  for version in ("2", "10", "9"):
    (tmp_path / version).mkdir()
    (tmp_path / version / "saved_model.pb").write_bytes(b"")
  (tmp_path / "11").mkdir()  # no SavedModel in it
  (tmp_path / "tmp-99").mkdir()
  assert serving.version_dir(str(tmp_path)) == str(tmp_path / "10")
  assert serving.version_dir(str(tmp_path / "9")) == str(tmp_path / "9")
  assert serving.version_dir(str(tmp_path / "11")) == str(tmp_path / "11")
  assert serving.version_dir(str(tmp_path / "none")) == str(tmp_path / "none")


@pytest.mark.process
def test_files_it_cannot_read_are_named_and_the_rest_predicted(model,
                                                              tmp_path):
  model_dir, _, test = model
  Image.fromarray(test[1]).save(tmp_path / "good.png")
  (tmp_path / "notes.png").write_text("not an image")
  # As a program: the exit status after the images it could read.
  result = run_command("predict", f"--model_dir={model_dir}",
                       str(tmp_path / "good.png"),
                       str(tmp_path / "notes.png"),
                       str(tmp_path / "missing.png"))
  assert result.returncode == 1
  assert "Traceback" not in result.stderr
  assert result.stdout.count("good.png") == 1
  errors = [l for l in result.stderr.splitlines()
            if l.startswith("logreg-predict: error:")]
  assert len(errors) == 2
  assert "notes.png: not an image" in errors[0]
  assert "missing.png" in errors[1] and "No such file" in errors[1]


@pytest.mark.parametrize("args,text", [
    (["--model_dir={d}", "--saved_model={s}", "x.png"],
     "give one of --model_dir, --checkpoint or --saved_model"),
    (["--model_dir={d}"], "give image files or directories"),
    (["--saved_model={empty}", "x.png"], "cannot be loaded"),
])
def test_usage_errors(model, tmp_path, args, text):
  model_dir, saved_model, _ = model
  args = [a.format(d=model_dir, s=saved_model, empty=tmp_path) for a in args]
  result = invoke("predict", *args)
  assert result.returncode == 1 and "Traceback" not in result.stderr
  (line,) = [l for l in result.stderr.splitlines()
             if l.startswith("logreg-predict:")]
  assert text in line


def test_mnist_preprocessing_of_a_photo_of_a_digit():
  # A dark stroke on light paper, large and off-centre in a colour photo.
  photo = np.full((120, 90, 3), 230, np.uint8)
  photo[20:100, 50:62] = 30  # a "1", 80 px tall
  photo[20:30, 40:62] = 30
  out = images.mnist(photo)
  assert out.shape == (28, 28, 1) and out.dtype == np.uint8
  ink = out[..., 0] > 0
  rows, cols = np.flatnonzero(ink.any(1)), np.flatnonzero(ink.any(0))
  assert rows[-1] - rows[0] + 1 <= 20 and cols[-1] - cols[0] + 1 <= 20
  assert out[0].max() == 0 and out[:, 0].max() == 0  # black background
  weights = out[..., 0].astype(float)
  cy = (weights.sum(1) * np.arange(28)).sum() / weights.sum()
  cx = (weights.sum(0) * np.arange(28)).sum() / weights.sum()
  assert abs(cy - 13.5) <= 1 and abs(cx - 13.5) <= 1


@pytest.mark.real_data
def test_photos_of_mnist_digits_with_mnist_preprocessing(decoded, config_runs,
                                                        tmp_path):
  _, model_dir = config_runs("fast")  # configs/fast.cfg, trained once
  from logreg_tf.config import DataSpec
  test = data.load_selected(DataSpec(), decoded)
  photos = tmp_path / "photos"
  photos.mkdir()
  for i in range(40):
    # Dark ink on off-white paper, 5x larger, placed off-centre, in colour.
    digit = np.asarray(Image.fromarray(test.test_images[i].reshape(28, 28))
                       .resize((140, 140), Image.BILINEAR), np.float32)
    paper = np.full((220, 180, 3), 225.0, np.float32)
    paper[40:180, 10:150] -= digit[..., None] * 0.8
    Image.fromarray(paper.astype(np.uint8)).save(photos / f"{i:02d}.jpg")
  out = tmp_path / "out.json"
  run = invoke("predict", f"--model_dir={model_dir}", "--preprocess=mnist",
                 f"--output_json={out}", str(photos))
  assert run.returncode == 0, run.stderr[-2000:]
  got = [p["class"] for p in json.loads(out.read_text())["predictions"]]
  right = np.mean([g == str(t) for g, t in zip(got, test.test_labels[:40])])
  # Measured 0.85 (34 of 40) here; the model scores 0.922 on the test split
  # itself, and the same photos without the preprocessing score 0.125 (5
  # of 40), about chance. The bound leaves room for other CPUs' rounding.
  assert right >= 0.75
