"""Shared set-up and fixtures: small IDX files, mocked TFDS, the offline
MNIST, absl's log lines.

Each test process (one, or one per pytest-xdist worker: `make test` runs
`-n auto`) splits the CPU into two logical devices once, before its first
TensorFlow op, so that the mirrored cases run in-process next to the
one-device ones (which use the first device, as a command without a strategy
does). Like the commands, it makes TensorFlow deterministic. Session
fixtures train once per test process.
"""

import gc
import gzip
import logging
import os
import pathlib
import struct

import numpy as np
import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
LOGICAL_CPUS = 2


def pytest_configure(config):
  del config
  # What the commands under test see: quiet TensorFlow, decoded-data caches
  # kept out of $HOME, and no TF_CONFIG but a test's own.
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
  # One thread per op: the suite keeps both cores busy with its own test
  # processes and their programs, and TensorFlow's op pools, two threads
  # per process, spun waiting for work beside them (the whole suite: 10.9
  # against 10.0 min of CPU, 5:39 against 5:16). Set before xdist starts
  # its workers, so that every test process and program inherits it.
  os.environ.setdefault("TF_NUM_INTRAOP_THREADS", "1")
  os.environ["XDG_CACHE_HOME"] = str(REPO / ".pytest_cache" / "xdg")
  os.environ.pop("TF_CONFIG", None)


@pytest.fixture(scope="session", autouse=True)
def _tensorflow():
  """Before the session's first TensorFlow op (collection runs none): the
  CPU as LOGICAL_CPUS devices, and deterministic kernels. In each process
  that runs tests (each pytest-xdist worker), not in xdist's controller."""
  import tensorflow as tf
  cpu = tf.config.list_physical_devices("CPU")[0]
  tf.config.set_logical_device_configuration(
      cpu, [tf.config.LogicalDeviceConfiguration()] * LOGICAL_CPUS)
  tf.config.experimental.enable_op_determinism()
  # TensorFlow, Keras and the rest imported: millions of objects that live
  # as long as the process. Out of the collector's sight, each of its full
  # collections no longer walks them all again (logreg-serve does the same
  # once its model is loaded).
  gc.collect()
  gc.freeze()


@pytest.fixture
def info_logs(caplog):
  """The absl INFO lines the code logs (absl's own level restored after)."""
  from absl import logging as absl_logging
  before = absl_logging.get_verbosity()
  absl_logging.set_verbosity(absl_logging.INFO)
  with caplog.at_level(logging.INFO):
    yield caplog
  absl_logging.set_verbosity(before)


def write_idx(path, array: np.ndarray, compress: bool = False) -> str:
  """Writes an unsigned-byte IDX file (the MNIST format)."""
  header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim)
  header += struct.pack(f">{array.ndim}I", *array.shape)
  payload = header + np.ascontiguousarray(array, np.uint8).tobytes()
  opener = gzip.open if compress else open
  with opener(path, "wb") as f:
    f.write(payload)
  return str(path)


def idx_arrays(n_train=120, n_test=40, seed=0):
  """The arrays of make_idx_dir's four files, by file name."""
  rng = np.random.default_rng(seed)
  return {
      "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28)),
      "train-labels-idx1-ubyte": np.arange(n_train) % 10,
      "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28)),
      "t10k-labels-idx1-ubyte": np.arange(n_test) % 10,
  }


def make_idx_dir(root, n_train=120, n_test=40, compress=True, seed=0):
  """Four IDX files of random MNIST-shaped data; returns (dir, arrays)."""
  arrays = idx_arrays(n_train, n_test, seed)
  os.makedirs(root, exist_ok=True)
  for name, a in arrays.items():
    write_idx(os.path.join(root, name + (".gz" if compress else "")),
              a.astype(np.uint8), compress)
  return str(root), arrays


@pytest.fixture
def idx_dir(tmp_path):
  return make_idx_dir(tmp_path / "idx")[0]


@pytest.fixture
def mock_tfds():
  import tensorflow_datasets as tfds
  with tfds.testing.mock_data(num_examples=50):
    yield


def _shared_or_skip(sub: str) -> pathlib.Path:
  path = SHARED / sub
  if path.is_dir():
    return path
  reason = f"offline MNIST not found at {path}"
  if os.environ.get("CI") == "true":
    pytest.fail(f"{reason}: CI must provide ../shared")
  pytest.skip(reason)


@pytest.fixture
def shared_tfds_dir() -> str:
  return str(_shared_or_skip("tensorflow_datasets"))


@pytest.fixture
def decoded(shared_tfds_dir):
  """Storage of the offline data through the decoded-data cache that the
  commands use by default (under .pytest_cache, see pytest_configure):
  decoding MNIST from TFDS takes 4 to 8 s here, so the first test of a
  checkout decodes and the others read the cache. The tests of decoding
  itself read TFDS without it."""
  from logreg_tf.config import Storage
  from logreg_tf.data import cache
  return Storage(data_dir=shared_tfds_dir, cache_dir=cache.default_dir())


@pytest.fixture
def shared_idx_dir() -> str:
  return str(_shared_or_skip("mnist-idx"))


def mnist_info(**overrides):
  """The description of MNIST, for tests that build a model without data."""
  from logreg_tf.data.dataset import DatasetInfo
  fields = dict(name="mnist", version="3.0.1", source="test",
                image_shape=(28, 28, 1),
                class_names=tuple(str(i) for i in range(10)))
  return DatasetInfo(**{**fields, **overrides})


class SmallRuns:
  """Runs trained once per pytest run on small IDX data (in the first test
  process that asks; see helpers.made_once): `softmax` (10 classes) and
  `binomial` (3 vs 8) model directories, `export`, the SavedModel base
  directory of the softmax run, and `idx` with its `arrays`. Tests that
  change a run work on a copy."""

  EPOCHS = 6
  ROWS = (200, 60)  # training and test images

  def __init__(self, paths: dict):
    self.__dict__.update(paths)
    self.arrays = idx_arrays(*self.ROWS)

  @classmethod
  def make(cls, root: pathlib.Path) -> dict:
    from helpers import invoke
    paths = {"idx": make_idx_dir(root / "idx", *cls.ROWS)[0],
             "export": str(root / "export")}
    common = [f"--idx_dir={paths['idx']}", f"--num_epochs={cls.EPOCHS}",
              "--batch_size=32", "--learning_rate=0.05"]
    for name, extra in (("softmax", []), ("binomial", ["--classes=3,8"])):
      paths[name] = str(root / name)
      result = invoke("train", *common, f"--model_dir={paths[name]}", *extra)
      assert result.returncode == 0, result.stderr[-3000:]
    result = invoke("export", f"--model_dir={paths['softmax']}",
                    f"--export_dir={paths['export']}")
    assert result.returncode == 0, result.stderr[-3000:]
    return paths


@pytest.fixture(scope="session")
def small_runs(tmp_path_factory) -> SmallRuns:
  from helpers import made_once
  return SmallRuns(made_once(tmp_path_factory, "small_runs",
                             lambda _, root: SmallRuns.make(root))("all"))


@pytest.fixture(scope="session")
def config_runs(tmp_path_factory):
  """get(name): (final metrics, model_dir) of configs/NAME.cfg trained on
  the offline data in this process, once per session (several tests hold
  the same run to different figures)."""
  from helpers import made_once, parse_train
  from logreg_tf import loop
  from logreg_tf.config import Storage
  from logreg_tf.data import cache

  def make(name, model_dir):
    data_dir = str(_shared_or_skip("tensorflow_datasets"))
    config, _ = parse_train(f"--flagfile={REPO / 'configs' / name}.cfg")
    metrics = loop.train_and_evaluate(config, Storage(
        data_dir=data_dir, model_dir=str(model_dir),
        cache_dir=cache.default_dir()))
    return metrics, str(model_dir)
  return made_once(tmp_path_factory, "config", make)
