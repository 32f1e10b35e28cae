"""Datasets other than MNIST: shapes and class counts from the data's own
description, unknown builders read from their files, refusals."""

import os
import textwrap

import numpy as np
import pytest
import tensorflow_datasets as tfds

from logreg_tf import data, loop
from logreg_tf.config import DataSpec, RunConfig, Storage
from logreg_tf.errors import DataError

from helpers import error_lines, mocked_train, run_python, train


@pytest.mark.parametrize("name,shape,classes", [
    ("mnist", (28, 28, 1), 10),
    ("cifar10", (32, 32, 3), 10),
    ("emnist/balanced", (28, 28, 1), 47),
])
def test_shapes_and_classes_come_from_the_dataset(name, shape, classes,
                                                  info_logs):
  # A rate so small that the weights stay near zero, where the loss is
  # ln(number of classes): the run's loss then counts the model's outputs.
  config = RunConfig(dataset=name, num_epochs=1, batch_size=8,
                     learning_rate=1e-7)
  with tfds.testing.mock_data(num_examples=30):
    loaded = data.load_selected(config.data, Storage(data_dir="/nonexistent"))
    assert loaded.info.image_shape == shape
    assert loaded.info.num_classes == classes
    steps = loop.build(config, loaded.info, len(loaded.train_labels))
    assert steps.model.kernel.shape == (int(np.prod(shape)), classes)
    metrics = loop.train_and_evaluate(config, Storage(data_dir="/nonexistent"))
  assert metrics["epoch"] == 1 and 0 <= metrics["test_accuracy"] <= 1
  assert metrics["train_loss"] == pytest.approx(np.log(classes), rel=1e-3)
  text = info_logs.text
  assert f"data: {name} " in text and "x".join(map(str, shape)) in text
  assert f"{classes} classes" in text
  assert "epoch 1/1  train_loss " in text


@pytest.mark.parametrize("name,missing", [("imdb_reviews", "no image feature"),
                                          ("div2k", "no ClassLabel feature")])
def test_a_dataset_without_an_image_or_a_class_label_is_refused(name,
                                                               missing):
  with tfds.testing.mock_data(num_examples=4):
    with pytest.raises(DataError) as e:
      data.load_selected(DataSpec(dataset=name), Storage(data_dir="/nonexistent"))
  assert f"dataset {name!r} has {missing}" in str(e.value)
  assert "needs an image feature" in str(e.value)


def test_classes_by_name_on_mocked_fashion_mnist(tmp_path):
  result = mocked_train(60, "--dataset=fashion_mnist",
                        "--classes=Sandal,Sneaker", "--num_epochs=1",
                        f"--model_dir={tmp_path}")
  assert result.returncode == 0, result.stderr[-2000:]
  assert "of classes Sandal, Sneaker" in result.stderr
  bad = mocked_train(60, "--dataset=fashion_mnist", "--classes=Sandal,Boot",
                     "--num_epochs=1")
  assert bad.returncode == 1
  (line,) = error_lines(bad.stderr)
  assert "'Boot' is not a class of fashion_mnist" in line
  assert "7 'Sneaker'" in line


def test_resuming_with_another_dataset_is_refused(tmp_path):
  first = mocked_train(30, "--dataset=mnist", "--num_epochs=1",
                       "--batch_size=10", f"--model_dir={tmp_path}")
  assert first.returncode == 0, first.stderr[-2000:]
  other = mocked_train(30, "--dataset=kmnist", "--num_epochs=2",
                       "--batch_size=10", f"--model_dir={tmp_path}")
  assert other.returncode == 1
  (line,) = error_lines(other.stderr)
  assert "checkpoint of another dataset" in line
  assert "mnist (28x28x1 images)" in line and "trains on kmnist" in line
  assert "--fresh" in line


BUILDER = '''
import numpy as np
import tensorflow_datasets as tfds


class ThrowawayGlyphs(tfds.core.GeneratorBasedBuilder):
  """Small coloured glyphs of three kinds; exists only inside one test."""

  VERSION = tfds.core.Version("1.0.0")

  def _info(self):
    return self.dataset_info_from_configs(
        features=tfds.features.FeaturesDict({
            "picture": tfds.features.Image(shape=(8, 6, 3)),
            "kind": tfds.features.ClassLabel(
                names=["round", "square", "star"]),
        }),
        supervised_keys=("picture", "kind"))

  def _split_generators(self, dl_manager):
    del dl_manager
    return {"train": self._generate_examples(90, 0),
            "validation": self._generate_examples(30, 1)}

  def _generate_examples(self, n, seed):
    rng = np.random.default_rng(seed)
    for i in range(n):
      kind = i % 3
      # Each kind lights its own colour channel: a linear model separates
      # them at once.
      picture = rng.integers(0, 40, (8, 6, 3))
      picture[..., kind] += 200
      yield i, {"picture": picture.astype(np.uint8), "kind": kind}
'''

MAKE = '''
import sys
import tensorflow_datasets as tfds
from throwaway_glyphs import ThrowawayGlyphs
ThrowawayGlyphs(data_dir=sys.argv[1]).download_and_prepare(
    download_config=tfds.download.DownloadConfig(try_download_gcs=False))
'''


@pytest.mark.process
def test_a_dataset_whose_builder_tfds_does_not_know(tmp_path):
  # TFDS looks for a builder's metadata in its package: give it its own.
  code = tmp_path / "code"
  (code / "throwaway_glyphs").mkdir(parents=True)
  (code / "throwaway_glyphs" / "__init__.py").write_text(
      textwrap.dedent(BUILDER))
  (code / "make.py").write_text(textwrap.dedent(MAKE))
  data_dir = tmp_path / "tfds"
  made = run_python([str(code / "make.py"), str(data_dir)], cwd=code,
                    timeout=300)
  assert made.returncode == 0, made.stderr[-2000:]
  assert os.path.isdir(data_dir / "throwaway_glyphs" / "1.0.0")
  # This process never imports the builder: it reads it from its files.
  result = train("--dataset=throwaway_glyphs", f"--data_dir={data_dir}",
                 "--test_split=validation", "--classes=square,star",
                 "--num_epochs=20", "--learning_rate=0.1", "--cache_dir=",
                 f"--model_dir={tmp_path / 'run'}")
  assert result.returncode == 0, result.stderr[-3000:]
  assert ("throwaway_glyphs 1.0.0 from tfds:" in result.stderr
          and "8x6x3 images, 3 classes (round, square, star)" in result.stderr)
  assert "60 train and 20 test examples of classes square, star" in (
      result.stderr)
  final = result.stderr.strip().splitlines()[-1]
  assert "'test_accuracy': 1.0" in final, final
  bad_split = train("--dataset=throwaway_glyphs", f"--data_dir={data_dir}",
                    "--num_epochs=1", "--cache_dir=")
  assert bad_split.returncode == 1
  (line,) = error_lines(bad_split.stderr)
  assert "--test_split='test' is not a split of throwaway_glyphs" in line
  assert "validation" in line
