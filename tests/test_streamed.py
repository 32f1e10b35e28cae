"""Streamed input (--input=stream): the in-memory run's numbers, read block
by block from the decoded files, in bounded memory."""

import dataclasses
import json
import os
import sys
import textwrap
import time

import numpy as np
import pytest
import tensorflow as tf

from logreg_tf import blocks, data, loop, streamed_steps
from logreg_tf.config import RunConfig
from logreg_tf.data import streamed
from logreg_tf.data.dataset import Rows
from logreg_tf.errors import UserError
from logreg_tf.model import SigmoidHead, SoftmaxHead
from logreg_tf.solvers import objective as objective_lib
from logreg_tf.solvers.objective import certify

from helpers import error_lines, run_python, start_python, train


def _weights_of(config, storage):
  """(kernel, bias, final metrics, steps, training rows) of an in-process
  run."""
  built = {}
  build = loop.build

  def keep(*args, **kwargs):
    built["steps"], built["rows"] = build(*args, **kwargs), args[2]
    return built["steps"]

  loop.build = keep
  try:
    metrics = loop.train_and_evaluate(config, storage)
  finally:
    loop.build = build
  model = built["steps"].model
  return (model.kernel.numpy(), model.bias.numpy(), metrics, built["steps"],
          built["rows"])


@pytest.mark.real_data
@pytest.mark.parametrize("batch_size", [None, 1000], ids=["full", "mini"])
@pytest.mark.parametrize("classes", [None, ("3", "8")],
                         ids=["softmax", "sigmoid"])
def test_streamed_run_equals_the_in_memory_run(decoded, monkeypatch,
                                               batch_size, classes):
  # Blocks of 2 x 2,674 rows: MNIST's 60,000 rows stream in 12 blocks, and
  # the mini-batches in groups of 7 batches, with a partial last group.
  monkeypatch.setattr(streamed, "BLOCK_BYTES", 784 * 6000)
  monkeypatch.setattr(streamed_steps, "GROUP_BYTES", 784 * 7000)
  config = RunConfig(num_epochs=2, learning_rate=0.1, batch_size=batch_size,
                     classes=classes, seed=3)
  memory = _weights_of(config, dataclasses.replace(decoded, input="memory"))
  ahead, run_epoch = [], loop.run_epoch

  def noting_ahead(steps, *args, **kwargs):  # the epoch read ahead, if any
    out = run_epoch(steps, *args, **kwargs)
    ahead.append(steps._ahead[1] if steps._ahead else None)
    return out

  monkeypatch.setattr(loop, "run_epoch", noting_ahead)
  stream = _weights_of(config, dataclasses.replace(decoded, input="stream"))
  assert type(stream[3]).__name__ == "StreamedSteps"
  assert type(memory[3]).__name__ == "Steps"
  np.testing.assert_allclose(stream[0], memory[0], rtol=0, atol=1e-6)
  np.testing.assert_allclose(stream[1], memory[1], rtol=0, atol=1e-6)
  if batch_size:  # the same steps on the same rows: the same bits
    np.testing.assert_array_equal(stream[0], memory[0])
    # Epoch 2's first group was read while epoch 1 trained, and used;
    # nothing was read ahead past the last epoch.
    assert ahead == [2, None]
    groups = -(-(stream[4] // batch_size) // 7)
    assert stream[3]._reads == 2 * groups  # two epochs' groups, no more
  for key in ("train_loss", "test_loss", "test_accuracy"):
    assert stream[2][key] == pytest.approx(memory[2][key], abs=1e-6), key


@pytest.mark.real_data
def test_stopped_streamed_run_resumes_bitwise(decoded, tmp_path,
                                              monkeypatch):
  monkeypatch.setattr(streamed, "BLOCK_BYTES", 784 * 6000)
  monkeypatch.setattr(streamed_steps, "GROUP_BYTES", 784 * 6000)
  storage = dataclasses.replace(decoded, input="stream",
                                checkpoint_every=1)
  config = RunConfig(num_epochs=3, learning_rate=0.1, batch_size=700,
                     classes=("3", "8"))
  whole = _weights_of(config, storage)  # in one go, nothing written
  # Stopped after its first epoch (a stop request, as SIGTERM makes one),
  # then started again.
  from logreg_tf.errors import Interrupted
  from logreg_tf.interrupts import StopRequest
  stop = StopRequest()
  stop.signum = 15
  parts = dataclasses.replace(storage, model_dir=str(tmp_path / "parts"))
  with pytest.raises(Interrupted):
    loop.train_and_evaluate(config, parts, stop)
  with open(tmp_path / "parts" / "run.json") as f:
    assert json.load(f)["status"] == "interrupted"
  again = _weights_of(config, parts)
  np.testing.assert_array_equal(again[0], whole[0])
  np.testing.assert_array_equal(again[1], whole[1])
  # The figures of a streamed run were drawn from its test split too.
  assert os.listdir(tmp_path / "parts" / "figures")


def test_blocks_hold_the_in_memory_values_in_order():
  rng = np.random.default_rng(0)
  images = rng.integers(0, 256, (1000, 12), dtype=np.uint8)
  split = streamed.StreamedSplit(images, block_rows=300, multiple=64)
  assert split.block_rows == 256  # a whole number of the steps' blocks
  got = [(s, e, streamed.to_float(b).numpy()) for s, e, b in split.blocks()]
  assert [(s, e) for s, e, _ in got] == [(0, 256), (256, 512), (512, 768),
                                         (768, 1000)]
  whole = np.concatenate([b for _, _, b in got])
  np.testing.assert_array_equal(whole, data.to_features(images).numpy())
  positions = np.array([999, 3, 500, 3])
  np.testing.assert_array_equal(split.take(positions), images[positions])


@pytest.mark.parametrize("mode", ["eager", "graph", "xla"])
def test_pixels_become_the_in_memory_floats_in_every_mode(mode):
  # Every uint8 value, in the three ways TensorFlow may run the conversion
  # (a constant 255 would be folded into a product by 1/255 in the last
  # two, which rounds some values differently).
  pixels = np.tile(np.arange(256, dtype=np.uint8), (3, 1))
  convert = streamed.to_float
  if mode != "eager":
    convert = tf.function(convert, jit_compile=mode == "xla",
                          autograph=False)
  np.testing.assert_array_equal(convert(tf.constant(pixels)).numpy(),
                                data.to_features(pixels).numpy())


@pytest.mark.parametrize("kernel", ["populates", "refuses"])
def test_rows_of_a_mapped_file_by_pread_and_by_window(tmp_path, monkeypatch,
                                                      kernel):
  # A window's pages are mapped in one madvise where the kernel can; one
  # that refuses the advice (older than Linux 5.14) reads the same rows.
  rng = np.random.default_rng(3)
  path = tmp_path / "images"
  whole = rng.integers(0, 256, (3000, 10), dtype=np.uint8)
  whole.tofile(path)
  mapped = np.memmap(path, np.uint8, "r", shape=(3000, 10))
  monkeypatch.setattr(streamed, "WINDOW_BYTES", 4096)  # 409 rows a window
  monkeypatch.setattr(streamed, "_can_populate", streamed._can_populate)
  if kernel == "refuses":
    monkeypatch.setattr(streamed, "_POPULATE_READ", 12345)  # EINVAL
  split = streamed.StreamedSplit(mapped)
  np.testing.assert_array_equal(split.rows(17, 2999), whole[17:2999])
  positions = rng.permutation(3000)[:700]
  np.testing.assert_array_equal(split.take(positions), whole[positions])
  assert streamed._can_populate == (
      kernel == "populates" and sys.platform.startswith("linux"))
  split.close()
  # Windows whose rows are all asked for (the first 818 rows and the last
  # 364, with random others between) are read by pread (its file opened).
  split = streamed.StreamedSplit(mapped)
  positions = rng.permutation(np.concatenate([
      np.arange(818), rng.permutation(np.arange(818, 2636))[:500],
      np.arange(2636, 3000)]))
  np.testing.assert_array_equal(split.take(positions), whole[positions])
  assert split._fd is not None
  split.close()


def test_a_class_selection_of_a_mapped_file_is_read_in_place(tmp_path):
  rng = np.random.default_rng(1)
  path = tmp_path / "images"
  rng.integers(0, 256, (50, 6), dtype=np.uint8).tofile(path)
  mapped = np.memmap(path, np.uint8, "r", shape=(50, 6))
  index = np.array([1, 4, 9, 30, 49])
  rows = Rows(mapped, index)
  assert rows.shape == (5, 6) and len(rows) == 5
  np.testing.assert_array_equal(np.asarray(rows), mapped[index])
  split = streamed.StreamedSplit(rows, block_rows=2)
  assert split.num_examples == 5
  np.testing.assert_array_equal(split.rows(1, 4), mapped[index[1:4]])
  np.testing.assert_array_equal(split.take(np.array([4, 0])),
                                mapped[index[[4, 0]]])


@pytest.mark.parametrize("head", [SoftmaxHead(), SigmoidHead()],
                         ids=["softmax", "sigmoid"])
def test_streamed_certificate_equals_the_in_memory_one(head):
  rng = np.random.default_rng(2)
  images = rng.integers(0, 256, (700, 20), dtype=np.uint8)
  outputs = 1 if isinstance(head, SigmoidHead) else 3
  labels = tf.constant(rng.integers(0, 2 if outputs == 1 else 3, 700))
  from logreg_tf.model import linear_model
  model = linear_model(20, outputs, use_bias=True, init="normal", seed=1)
  model.bias.assign(rng.normal(size=outputs).astype(np.float32))
  in_memory = certify(model, head, data.to_features(images), labels, 1e-3)
  split = streamed.StreamedSplit(images, block_rows=128)
  from_file = certify(model, head, split, labels, 1e-3)
  assert from_file.objective == pytest.approx(in_memory.objective, rel=1e-12)
  assert from_file.gradient_norm == pytest.approx(in_memory.gradient_norm,
                                                  rel=1e-9)
  assert from_file.suboptimality_bound == pytest.approx(
      in_memory.suboptimality_bound, rel=1e-9)


def test_auto_streams_what_does_not_fit_and_memory_says_what_it_needs():
  assert streamed.choose("auto", 10, 100) == "memory"
  assert streamed.choose("auto", 1000, 100) == "stream"
  assert streamed.choose("auto", 1000, None) == "memory"  # budget unknown
  assert streamed.choose("stream", 10, 100) == "stream"
  with pytest.raises(UserError, match=r"--input=memory: the data needs 2\.00 "
                     r"GB as float32, more than the budget of 1\.00 GB.*"
                     r"--input=stream"):
    streamed.choose("memory", 2 * 10**9, 10**9)


def test_budget_is_half_of_what_the_cgroup_leaves(monkeypatch):
  monkeypatch.setattr(streamed, "_meminfo_available", lambda: 8 * 10**9)
  monkeypatch.setattr(streamed, "_cgroup_room", lambda: 3 * 10**9)
  assert streamed.memory_budget() == 1.5 * 10**9
  monkeypatch.setattr(streamed, "_cgroup_room", lambda: None)
  assert streamed.memory_budget() == 4 * 10**9


@pytest.mark.real_data
def test_memory_input_that_does_not_fit_is_one_line(shared_tfds_dir,
                                                    monkeypatch, tmp_path):
  monkeypatch.setattr(streamed, "memory_budget", lambda: 10**8)
  result = train(f"--data_dir={shared_tfds_dir}", "--input=memory",
                 "--num_epochs=1", f"--model_dir={tmp_path / 'run'}")
  assert result.returncode == 1
  (line,) = error_lines(result.stderr)
  assert ("--input=memory: the data needs 0.22 GB as float32, more than the "
          "budget of 0.10 GB") in line
  assert not (tmp_path / "run").exists()


@pytest.mark.real_data
def test_streaming_without_a_cache_is_one_line(shared_tfds_dir, tmp_path):
  result = train(f"--data_dir={shared_tfds_dir}", "--input=stream",
                 "--cache_dir=", "--num_epochs=1")
  assert result.returncode == 4
  (line,) = error_lines(result.stderr)
  assert "there is no cache to hold them" in line and "--cache_dir" in line


# A dataset whose float32 training split (16,000 x 128 x 128: 1.05 GB) is
# larger than the memory cgroup the run gets (900 MB); its uint8 file is a
# quarter of that.
BIG_BUILDER = '''
import numpy as np
import tensorflow_datasets as tfds


class ThrowawayQuadrants(tfds.core.GeneratorBasedBuilder):
  """128x128 images, one bright quadrant each; exists only in one test."""

  VERSION = tfds.core.Version("1.0.0")

  def _info(self):
    return self.dataset_info_from_configs(
        features=tfds.features.FeaturesDict({
            "image": tfds.features.Image(shape=(128, 128, 1)),
            "label": tfds.features.ClassLabel(num_classes=4)}),
        supervised_keys=("image", "label"))

  def _split_generators(self, dl_manager):
    del dl_manager
    return {"train": self._generate_examples(16000, 0),
            "test": self._generate_examples(2000, 1)}

  def _generate_examples(self, n, seed):
    rng = np.random.default_rng(seed)
    for i in range(n):
      label = i % 4
      image = np.zeros((128, 128, 1), np.uint8)
      row, col = divmod(label, 2)
      image[row * 64:row * 64 + 64, col * 64:col * 64 + 64] = rng.integers(
          100, 200)
      yield i, {"image": image, "label": label}
'''

MAKE = '''
import sys
import tensorflow_datasets as tfds
from throwaway_quadrants import ThrowawayQuadrants
ThrowawayQuadrants(data_dir=sys.argv[1]).download_and_prepare(
    download_config=tfds.download.DownloadConfig(try_download_gcs=False))
'''

CGROUPS = "/sys/fs/cgroup/memory"
LIMIT = 900 << 20


def _memory_cgroup(tmp_path):
  """A fresh cgroup v1 memory group limited to LIMIT, or a skip."""
  name = os.path.join(CGROUPS, f"logreg_tf_test_{os.getpid()}")
  try:
    os.mkdir(name)
    with open(os.path.join(name, "memory.limit_in_bytes"), "w") as f:
      f.write(str(LIMIT))
  except OSError as e:
    pytest.skip(f"no cgroup v1 memory limit here ({e}): needs root and "
                f"{CGROUPS}")
  return name


def _train_in_group(group, tmp_path, *args):
  """(exit status, stderr, peak RSS) of `logreg-train ARGS` in its own
  process, which joins the memory group before it reads or allocates
  anything, so that every page it touches from then on is charged there
  (decoding included, when the cache is empty). Forked from this test
  process's zygote: TensorFlow's import, done there, is not what is
  measured."""
  join_then_train = (
      "import os, runpy, sys\n"
      f"with open({group + '/cgroup.procs'!r}, 'w') as f:\n"
      "  f.write(str(os.getpid()))\n"
      "sys.argv[0] = 'logreg-train'\n"
      "runpy.run_module('logreg_tf.train', run_name='__main__')\n")
  log = tmp_path / "stderr"
  with open(log, "w") as err, open(os.devnull, "w") as out:
    run = start_python(["-c", join_then_train, *args], stdout=out,
                       stderr=err)
  # Its peak RSS, read from its own VmHWM until it ends (what it shares
  # with the zygote included).
  peak, deadline = 0, time.monotonic() + 300
  while run.poll() is None:
    if time.monotonic() > deadline:
      run.kill()
    try:
      with open(f"/proc/{run.pid}/status") as f:
        peak = max([peak] + [int(line.split()[1]) << 10 for line in f
                             if line.startswith("VmHWM:")])
    except (OSError, ValueError):
      pass
    time.sleep(0.05)
  return run.returncode, log.read_text(), peak


@pytest.mark.process
def test_trains_on_data_larger_than_its_memory_limit(tmp_path,
                                                     record_property):
  group = _memory_cgroup(tmp_path)
  try:
    code = tmp_path / "code"
    (code / "throwaway_quadrants").mkdir(parents=True)
    (code / "throwaway_quadrants" / "__init__.py").write_text(
        textwrap.dedent(BIG_BUILDER))
    (code / "make.py").write_text(textwrap.dedent(MAKE))
    made = run_python([str(code / "make.py"), str(tmp_path / "tfds")],
                      cwd=code, timeout=300)
    assert made.returncode == 0, made.stderr[-2000:]
    args = ["--dataset=throwaway_quadrants",
            f"--data_dir={tmp_path / 'tfds'}",
            f"--cache_dir={tmp_path / 'cache'}", "--num_epochs=2",
            "--learning_rate=0.5"]
    code, stderr, peak = _train_in_group(
        group, tmp_path, *args, f"--model_dir={tmp_path / 'run'}")
    with open(os.path.join(group, "memory.max_usage_in_bytes")) as f:
      charged = int(f.read())
    record_property("peak_rss_bytes", peak)
    print(f"peak RSS {peak / 2**20:.0f} MiB; the group's peak charge "
          f"{charged / 2**20:.0f} MiB of {LIMIT >> 20} MiB")
    assert code == 0, stderr[-3000:]
    assert "input: stream (--input=auto; the splits are 1.18 GB" in stderr
    assert "'test_accuracy': 1.0" in stderr.strip().splitlines()[-1]
    # The in-memory path does not fit the group: refused in one line.
    code, stderr, _ = _train_in_group(group, tmp_path, *args,
                                      "--input=memory")
    assert code == 1
    (line,) = error_lines(stderr)
    assert "--input=memory: the data needs 1.18 GB as float32" in line
  finally:
    os.rmdir(group)


@pytest.mark.real_data
def test_evaluate_streams_a_split_that_does_not_fit(decoded, tmp_path,
                                                    monkeypatch):
  from logreg_tf import evaluate
  from logreg_tf.rundir import trained as trained_lib
  config = RunConfig(num_epochs=2, learning_rate=0.1, classes=("3", "8"),
                     l2=1e-3)
  loop.train_and_evaluate(config, dataclasses.replace(
      decoded, model_dir=str(tmp_path / "run")))
  trained = trained_lib.load(str(tmp_path / "run"), None, None)
  in_memory = evaluate.evaluate(trained, decoded)
  monkeypatch.setattr(streamed, "memory_budget", lambda: 10**6)
  monkeypatch.setattr(streamed, "BLOCK_BYTES", 784 * 3000)
  from_file = evaluate.evaluate(trained, decoded)
  assert from_file["accuracy"] == in_memory["accuracy"]
  assert from_file["confusion_matrix"] == in_memory["confusion_matrix"]
  assert from_file["loss"] == pytest.approx(in_memory["loss"], abs=1e-6)
  for key in ("objective", "gradient_norm", "suboptimality_bound"):
    assert from_file["optimization"][key] == pytest.approx(
        in_memory["optimization"][key], rel=1e-9), key


@pytest.mark.real_data
def test_a_disk_too_small_for_the_decoded_file_is_one_line(
    shared_tfds_dir, tmp_path, monkeypatch):
  from logreg_tf.data import cache
  usage = cache.shutil.disk_usage(tmp_path)
  monkeypatch.setattr(cache.shutil, "disk_usage",
                      lambda path: usage._replace(free=10**7))
  result = train(f"--data_dir={shared_tfds_dir}", "--input=stream",
                 f"--cache_dir={tmp_path / 'cache'}", "--num_epochs=1",
                 f"--model_dir={tmp_path / 'run'}")
  assert result.returncode == 4
  (line,) = error_lines(result.stderr)
  assert "no room for the decoded mnist" in line
  assert "it needs 47.5 MB, 10.0 MB are free" in line
  assert not [p for p in (tmp_path / "cache").rglob("*") if p.is_file()]
  assert not (tmp_path / "run").exists()


@pytest.mark.real_data
@pytest.mark.parametrize("solver", ["lbfgs", "newton_cg"])
def test_exact_solvers_on_a_streamed_training_set(decoded, monkeypatch,
                                                  solver):
  # The 1,166 images of 3, 8 and 5 among the first 4,000, in blocks of 400
  # rows: each solver iteration streams the file in three blocks for its
  # products (Newton-CG's Hessian products and preconditioner included);
  # the preconditioner samples every 3rd row, across the blocks' bounds.
  monkeypatch.setattr(streamed, "BLOCK_BYTES", 784 * 400)
  monkeypatch.setattr(blocks, "block_rows", lambda *_, **__: 200)
  monkeypatch.setattr(objective_lib, "PRECONDITIONER_SAMPLE", 400)
  config = RunConfig(solver=solver, l2=1e-2, tol=1e-9, max_iter=200,
                     train_split="train[:4000]", classes=("3", "8", "5"))
  memory = _weights_of(config, dataclasses.replace(decoded, input="memory"))
  stream = _weights_of(config, dataclasses.replace(decoded, input="stream"))
  assert stream[3].finished and memory[3].finished
  record = stream[3].solver.record()
  assert record["converged"] and record["suboptimality_bound"] <= 1e-9
  assert record["objective"] == pytest.approx(
      memory[3].solver.record()["objective"], abs=1e-9)
  # Both are certified: l2-strong convexity puts each within
  # sqrt(2 bound / l2) of the optimum's weights, so within twice that of
  # each other.
  radius = np.sqrt(2 * 1e-9 / 1e-2)
  assert np.linalg.norm(stream[0] - memory[0]) <= 2 * radius
  assert stream[2]["test_accuracy"] == memory[2]["test_accuracy"]
  if solver == "newton_cg":
    rows = [steps._objective[1]._sample_rows().numpy()
            for steps in (stream[3], memory[3])]
    assert [b for b, _, _ in stream[3]._objective[1].stream.blocks()] == [
        0, 400, 800]
    assert rows[0].shape == (389, 784)  # every 3rd of 1,166
    np.testing.assert_array_equal(rows[0], rows[1])
