"""A real TensorBoard on 127.0.0.1 reads what a run wrote: scalars, the
figures, and the hparams with the final test metrics."""

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from logreg_tf import loop
from logreg_tf.config import RunConfig, Storage

from helpers import read_scalars


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _get(url, body=None):
  data = json.dumps(body).encode() if body is not None else None
  request = urllib.request.Request(
      url, data=data, headers={"Content-Type": "application/json"})
  with urllib.request.urlopen(request, timeout=10) as response:
    raw = response.read()
  return raw if raw.startswith(b"\x89PNG") else json.loads(raw)


@contextlib.contextmanager
def tensorboard(logdir):
  port = _free_port()
  binary = os.path.join(os.path.dirname(sys.executable), "tensorboard")
  proc = subprocess.Popen([binary, f"--logdir={logdir}", "--host=127.0.0.1",
                           f"--port={port}", "--reload_interval=1"],
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
  base = f"http://127.0.0.1:{port}"
  try:
    deadline = time.monotonic() + 90
    while True:
      assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
      try:
        if _get(f"{base}/data/plugin/scalars/tags"):
          break
      except OSError:
        pass
      assert time.monotonic() < deadline, "TensorBoard did not answer"
      time.sleep(0.5)
    yield base
  finally:
    proc.terminate()
    try:
      proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
      proc.kill()
      proc.wait()


@pytest.mark.process
def test_tensorboard_serves_the_runs_scalars_figures_and_hparams(idx_dir,
                                                                 tmp_path):
  metrics = loop.train_and_evaluate(
      RunConfig(num_epochs=4, display_step=2, batch_size=20,
                learning_rate=0.05),
      Storage(idx_dir=idx_dir, model_dir=str(tmp_path)))
  written = read_scalars(str(tmp_path))
  with tensorboard(tmp_path) as base:
    accuracy = _get(f"{base}/data/plugin/scalars/scalars?run=.&tag="
                    "test/accuracy")
    assert [(step, value) for _, step, value in accuracy] == [
        (step, pytest.approx(value)) for step, value in
        sorted(written["test/accuracy"].items())]
    tags = _get(f"{base}/data/plugin/images/tags")["."]
    for name in ("templates", "confusion", "reliability", "mistakes"):
      (entry,) = _get(f"{base}/data/plugin/images/images?run=.&tag=figures/"
                      f"{name}&sample=0")
      assert f"figures/{name}" in tags and entry["step"] == 4
      png = _get(f"{base}/data/plugin/images/individualImage?"
                 f"{entry['query']}")
      # The figure's own PNG, as written to disk: not decoded and encoded
      # again on its way into the events.
      assert png == (tmp_path / "figures" / f"{name}.png").read_bytes()
    experiment = _get(f"{base}/data/plugin/hparams/experiment",
                      {"experimentName": ""})
    names = {h["name"] for h in experiment["hparamInfos"]}
    assert {"dataset", "learning_rate", "batch_size", "classes"} <= names
    assert not {"model_dir", "cache_dir"} & names
    assert {m["name"]["tag"] for m in experiment["metricInfos"]} == {
        "test/accuracy", "test/loss"}
    groups = _get(f"{base}/data/plugin/hparams/session_groups", {
        "experimentName": "", "startIndex": 0, "sliceSize": 10,
        "allowedStatuses": ["STATUS_UNKNOWN", "STATUS_SUCCESS",
                            "STATUS_FAILURE", "STATUS_RUNNING"],
        "colParams": []})
    (group,) = groups["sessionGroups"]
    final = {m["name"]["tag"]: m["value"] for m in group["metricValues"]}
    assert final["test/accuracy"] == pytest.approx(metrics["test_accuracy"])
    assert final["test/loss"] == pytest.approx(metrics["test_loss"])
