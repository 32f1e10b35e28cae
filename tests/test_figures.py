"""The pictures: PNG files in MODEL_DIR/figures, the same in TensorBoard with
their scalars (per-class accuracy, ECE), at the end or every N displays."""


import numpy as np
import pytest
import tensorflow as tf

from logreg_tf import figures, loop
from logreg_tf.config import RunConfig, Storage

from helpers import read_image_steps, read_scalars

PNG = b"\x89PNG\r\n\x1a\n"


def test_a_run_draws_its_figures_at_the_end(idx_dir, tmp_path):
  metrics = loop.train_and_evaluate(
      RunConfig(num_epochs=3, batch_size=20, learning_rate=0.05),
      Storage(idx_dir=idx_dir, model_dir=str(tmp_path)))
  for name in figures.NAMES:
    png = (tmp_path / "figures" / f"{name}.png").read_bytes()
    assert png.startswith(PNG)
    image = tf.image.decode_png(png)
    assert image.shape[0] > 100 and image.shape[1] > 100
  assert read_image_steps(str(tmp_path)) == {f"figures/{n}": [3]
                                    for n in figures.NAMES}
  scalars = read_scalars(str(tmp_path))
  per_class = {t: v[3] for t, v in scalars.items()
               if t.startswith("test/accuracy_per_class/")}
  assert sorted(per_class) == [f"test/accuracy_per_class/{d}"
                               for d in "0123456789"]
  # Every class's accuracy, weighted by its examples (the IDX fixture's 40
  # test labels cycle 0-9: 4 each), is the overall accuracy.
  assert np.mean(list(per_class.values())) == pytest.approx(
      metrics["test_accuracy"], abs=1e-6)
  assert 0 <= scalars["test/ece"][3] <= 1


def test_figure_every_counts_displayed_epochs(idx_dir, tmp_path):
  loop.train_and_evaluate(
      RunConfig(num_epochs=8, display_step=2, learning_rate=0.05),
      Storage(idx_dir=idx_dir, model_dir=str(tmp_path), figure_every=2))
  # Displays at 2, 4, 6, 8; figures every second display and at the end.
  assert read_image_steps(str(tmp_path))["figures/templates"] == [4, 8]


def test_templates_of_a_binomial_and_a_colour_model():
  rng = np.random.default_rng(0)
  one = figures.templates(rng.normal(size=(28 * 28, 1)), (28, 28, 1),
                          ["3", "8"])
  colour = figures.templates(rng.normal(size=(32 * 32 * 3, 10)),
                             (32, 32, 3), [f"c{i}" for i in range(10)])
  for png in (one, colour):
    assert png.startswith(PNG)
  # The binomial picture holds one template: it is narrower.
  assert (tf.image.decode_png(one).shape[1]
          < tf.image.decode_png(colour).shape[1])


def test_fresh_removes_the_figures(idx_dir, tmp_path):
  storage = Storage(idx_dir=idx_dir, model_dir=str(tmp_path))
  loop.train_and_evaluate(RunConfig(num_epochs=1), storage)
  assert (tmp_path / "figures").is_dir()
  from logreg_tf.rundir.workdir import ModelDir
  ModelDir(str(tmp_path)).clear()
  assert not (tmp_path / "figures").exists()
  assert not (tmp_path / "run.json").exists()
