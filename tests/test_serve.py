"""The model server: TensorFlow Serving's REST API on the real MNIST model,
bad input answered in one response while it keeps serving, idle clients
timed out, new versions picked up under load, a drain on SIGTERM/SIGINT, and
the LiteRT file export --tflite writes."""

import asyncio
import concurrent.futures
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from helpers import _env, invoke
from conftest import REPO
from serving_helpers import (Running, add_version, call, export_of,
                             mnist_test_digits)

pytestmark = pytest.mark.real_data
LIMIT = 4 << 20  # --max_request_bytes of the served fixture


@pytest.fixture(scope="module")
def exported(config_runs, tmp_path_factory):
  return export_of(config_runs, tmp_path_factory.mktemp("export"))


@pytest.fixture(scope="module")
def served(exported):
  with Running(saved_model=exported[1], max_request_bytes=LIMIT,
               idle_timeout=1.0, poll_seconds=0) as running:
    yield running


def _expected(exported, images):
  """The trained checkpoint's probabilities, computed without the server."""
  from logreg_tf import data, metrics
  from logreg_tf.rundir import trained as trained_lib
  model = trained_lib.load(exported[0])
  return metrics.probabilities(model.model(data.to_features(
      images.reshape(len(images), -1))).numpy())


def test_status_metadata_and_predict_in_both_formats(served, exported):
  name, version = served.name, os.path.basename(exported[2])
  assert name == "mnist"  # the export directory's name
  status, body = call(served.port, "GET", f"/v1/models/{name}")
  assert status == 200
  assert body["model_version_status"] == [{
      "version": version, "state": "AVAILABLE",
      "status": {"error_code": "OK", "error_message": ""}}]
  status, body = call(served.port, "GET", f"/v1/models/{name}/metadata")
  assert status == 200 and body["model_spec"]["version"] == version
  signatures = body["metadata"]["signature_def"]["signature_def"]
  assert set(signatures) == {"serving_default", "features", "explain"}
  images_in = signatures["serving_default"]["inputs"]["images"]
  assert images_in["dtype"] == "DT_UINT8"
  assert [d["size"] for d in images_in["tensor_shape"]["dim"]] == [
      "-1", "28", "28", "1"]

  images, _ = mnist_test_digits(100)
  expected = _expected(exported, images)
  # Row format, with and without the input's name, and a version's path.
  for path, instances in (
      (f"/v1/models/{name}:predict", images.tolist()),
      (f"/v1/models/{name}/versions/{version}:predict",
       [{"images": i} for i in images.tolist()])):
    status, body = call(served.port, "POST", path, {"instances": instances})
    assert status == 200, body
    rows = body["predictions"]
    np.testing.assert_allclose([r["probabilities"] for r in rows], expected,
                               atol=1e-6)
    assert [r["class_ids"] for r in rows] == list(expected.argmax(axis=1))
    assert [r["class_names"] for r in rows] == [
        str(i) for i in expected.argmax(axis=1)]
  # Columnar format; the float features signature gives the same numbers.
  flat = (images.reshape(100, -1) / np.float32(255)).astype(np.float32)
  for request in ({"inputs": {"images": images.tolist()}},
                  {"signature_name": "features", "inputs": flat.tolist()}):
    status, body = call(served.port, "POST", f"/v1/models/{name}:predict",
                        request)
    assert status == 200, body
    np.testing.assert_allclose(body["outputs"]["probabilities"], expected,
                               atol=1e-6)
  # curl -d sends application/x-www-form-urlencoded: still JSON here.
  status, body = call(served.port, "POST", f"/v1/models/{name}:predict",
                      {"instances": images[:1].tolist()},
                      content_type="application/x-www-form-urlencoded")
  assert status == 200 and len(body["predictions"]) == 1


def test_the_explain_signature_adds_up_to_the_logit(served, exported):
  from logreg_tf.rundir import trained as trained_lib
  images, _ = mnist_test_digits(5)
  status, body = call(served.port, "POST", f"/v1/models/{served.name}:predict",
                      {"signature_name": "explain",
                       "instances": images.tolist()})
  assert status == 200, body
  model = trained_lib.load(exported[0]).model
  kernel, bias = model.kernel.numpy(), model.bias.numpy()
  x = images.reshape(5, -1).astype(np.float32) / 255
  for row, features in zip(body["predictions"], x):
    c = row["class_ids"]
    np.testing.assert_allclose(np.ravel(row["template"]), kernel[:, c],
                               atol=1e-7)
    np.testing.assert_allclose(np.ravel(row["evidence"]),
                               features * kernel[:, c], atol=1e-7)
    assert row["bias"] == pytest.approx(bias[c], abs=1e-7)
    assert row["class_names"] == str(c)


def _bad_requests(name, version):
  digit = [[[0]] * 28] * 28
  predict = f"/v1/models/{name}:predict"
  return [
      # (what, method, path, body, content type, status, words in the error)
      ("malformed JSON", "POST", predict, b'{"instances": [', None, 400,
       "not JSON"),
      ("not an object", "POST", predict, b"[1, 2]", None, 400,
       "JSON object"),
      ("neither key", "POST", predict, {"examples": [digit]}, None, 400,
       "exactly one of"),
      ("a body over the limit", "POST", predict,
       b'{"instances": [' + b"0, " * (LIMIT // 3) + b"0]}", None, 413,
       "--max_request_bytes"),
      ("wrong shape", "POST", predict, {"instances": [[1, 2, 3]]}, None, 400,
       "takes [batch, 28, 28, 1]"),
      ("ragged examples", "POST", predict,
       {"instances": [digit, digit[:27]]}, None, 400, "rectangular"),
      ("floats where uint8 pixels go", "POST", predict,
       {"instances": [[[[0.5]] * 28] * 28]}, None, 400, "integers 0..255"),
      ("a pixel over 255", "POST", predict,
       {"instances": [[[[256]] * 28] * 28]}, None, 400, "0..255"),
      ("strings", "POST", predict, {"instances": [[[["a"]] * 28] * 28]},
       None, 400, "numbers only"),
      ("NaN in the images", "POST", predict,
       b'{"instances": [' + json.dumps([[[0]] * 28] * 27 + [
           [[0]] * 27 + [["NaN"]]]).replace('"NaN"', "NaN").encode() + b"]}",
       None, 400, "integers 0..255"),
      ("NaN in the features", "POST", predict,
       b'{"signature_name": "features", "inputs": [[NaN' + b", 0" * 783 +
       b"]]}", None, 400, "NaN or infinity"),
      ("empty instances", "POST", predict, {"instances": []}, None, 400,
       "is empty"),
      ("an unknown signature", "POST", predict,
       {"signature_name": "nope", "instances": [digit]}, None, 400,
       "no signature 'nope'"),
      ("an unknown model", "POST", "/v1/models/nope:predict",
       {"instances": [digit]}, None, 404, "no model named 'nope'"),
      ("an unknown version", "POST",
       f"/v1/models/{name}/versions/{int(version) + 1}:predict",
       {"instances": [digit]}, None, 404, "is not served"),
      ("an unknown model's status", "GET", "/v1/models/nope", None, None,
       404, "no model named"),
      ("classify", "POST", f"/v1/models/{name}:classify",
       {"instances": [digit]}, None, 400, "answers :predict"),
      ("a wrong content type", "POST", predict, b"--x\r\n",
       "multipart/form-data; boundary=x", 415, "must be JSON"),
      ("a GET of :predict", "GET", predict, None, None, 405,
       "Method Not Allowed"),
      ("path traversal", "GET", "/page/../../pyproject.toml", None, None,
       404, "Not Found"),
      ("path traversal, encoded", "GET", "/page/..%2f..%2fpyproject.toml",
       None, None, 404, "no file"),
      ("path traversal, encoded dots", "GET",
       "/page/%2e%2e/%2e%2e/pyproject.toml", None, None, 404, "Not Found"),
      ("not an image for the page", "POST", f"/page/{name}/input",
       b"not an image", "image/png", 400, "not an image"),
  ]


def test_bad_input_is_answered_in_one_line_and_serving_goes_on(
    served, exported):
  version = os.path.basename(exported[2])
  images, _ = mnist_test_digits(1)
  good = {"instances": images.tolist()}
  for what, method, path, body, kind, status, words in _bad_requests(
      served.name, version):
    got, answer = call(served.port, method, path, body,
                       content_type=kind or "application/json")
    assert got == status, (what, got, answer)
    assert isinstance(answer, dict) and set(answer) == {"error"}, (what,
                                                                   answer)
    assert words in answer["error"], (what, answer)
    assert call(served.port, "POST", f"/v1/models/{served.name}:predict",
                good)[0] == 200, what


def test_a_silent_client_is_timed_out_and_the_others_are_served(served):
  images, _ = mnist_test_digits(1)
  silent = socket.create_connection(("127.0.0.1", served.port))
  silent.settimeout(10)
  start = time.monotonic()
  try:
    for _ in range(5):  # others are answered while it waits
      status, _ = call(served.port, "POST",
                       f"/v1/models/{served.name}:predict",
                       {"instances": images.tolist()})
      assert status == 200
    assert silent.recv(1) == b""  # closed by the server (idle_timeout 1 s)
    assert time.monotonic() - start < 5
  finally:
    silent.close()


def test_eight_clients_at_once_none_fails(served):
  images, _ = mnist_test_digits(100)
  path = f"/v1/models/{served.name}:predict"
  single = [json.dumps({"instances": images[i % 100:i % 100 + 1].tolist()})
            for i in range(100)]
  batch = json.dumps({"instances": images.tolist()})
  # 8 clients: 2,000 single digits, then 80 batches of 100 (make bench
  # sends 5,000 of each and measures them).
  for bodies, n in ((single, 2000), ([batch], 80)):
    statuses = []
    lock = threading.Lock()

    def client(k):
      import http.client
      conn = http.client.HTTPConnection("127.0.0.1", served.port, timeout=60)
      for i in range(k, n, 8):
        status, answer = call(served.port, "POST", path,
                              bodies[i % len(bodies)], connection=conn)
        with lock:
          statuses.append((status, len(answer.get("predictions", []))))
      conn.close()
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
      list(pool.map(client, range(8)))
    want = 1 if bodies is single else 100
    assert statuses == [(200, want)] * n


def test_a_new_version_is_served_without_dropping_requests(exported,
                                                           tmp_path):
  base = tmp_path / "mnist"
  version = int(os.path.basename(exported[2]))
  shutil.copytree(exported[2], base / str(version))
  images, _ = mnist_test_digits(1)
  body = {"instances": images.tolist()}
  with Running(saved_model=str(base), poll_seconds=0.1) as running:
    path = f"/v1/models/{running.name}:predict"
    stop, statuses = threading.Event(), []

    def hammer():
      while not stop.is_set():
        statuses.append(call(running.port, "POST", path, body)[0])
    clients = [threading.Thread(target=hammer) for _ in range(4)]
    for c in clients:
      c.start()
    time.sleep(0.3)
    add_version(str(base), version, version + 1)
    deadline = time.monotonic() + 30
    while running.models.current.version != version + 1:
      assert time.monotonic() < deadline, "the new version was not loaded"
      time.sleep(0.05)
    time.sleep(0.3)
    stop.set()
    for c in clients:
      c.join()
    assert statuses and set(statuses) == {200}, set(statuses)
    status, answer = call(running.port, "GET", f"/v1/models/{running.name}")
    assert answer["model_version_status"][0]["version"] == str(version + 1)
    # As TensorFlow Serving's "latest" policy: the old version is unloaded.
    assert call(running.port, "POST", f"/v1/models/{running.name}/versions/"
                f"{version}:predict", body)[0] == 404
    assert call(running.port, "POST", f"/v1/models/{running.name}/versions/"
                f"{version + 1}:predict", body)[0] == 200


def test_a_training_runs_newest_intact_checkpoint_is_served(exported,
                                                            tmp_path):
  run = tmp_path / "run"
  shutil.copytree(exported[0], run)
  newest = max(int(p.split("-")[1].split(".")[0]) for p in os.listdir(
      run / "checkpoints") if p.startswith("ckpt-") and p.endswith(".index"))
  images, _ = mnist_test_digits(20)
  with Running(model_dir=str(run), poll_seconds=0) as running:
    assert running.name == "run" and running.models.current.version == newest
    status, body = call(running.port, "POST", "/v1/models/run:predict",
                        {"instances": images.tolist()})
    assert status == 200
    np.testing.assert_allclose([r["probabilities"] for r in body[
        "predictions"]], _expected(exported, images), atol=1e-6)
  # The newest checkpoint damaged: the one before it is served (an older
  # one made here: the smoke run keeps its last only).
  for f in (run / "checkpoints").glob(f"ckpt-{newest}.*"):
    shutil.copy(f, str(f).replace(f"ckpt-{newest}.", f"ckpt-{newest - 1}."))
  for data_file in (run / "checkpoints").glob(f"ckpt-{newest}.data-*"):
    data_file.write_bytes(b"\0" * data_file.stat().st_size)
  with Running(model_dir=str(run), poll_seconds=0) as running:
    assert running.models.current.version == newest - 1


def test_bad_flags_and_a_missing_model_end_in_one_line(tmp_path):
  for args, words in (
      ([], "give --saved_model=EXPORT_DIR or --model_dir=DIR"),
      ([f"--saved_model={tmp_path}"], "holds no SavedModel"),
      ([f"--model_dir={tmp_path}"], "holds no checkpoint"),
      ([f"--saved_model={tmp_path}", "--port=70000"], "port"),
  ):
    result = invoke("serve", *args)
    assert result.returncode != 0
    lines = [l for l in result.stderr.splitlines()
             if l.startswith("logreg-serve: error:")]
    assert len(lines) == 1 and words in lines[0], result.stderr


def test_the_litert_file_gives_the_saved_models_probabilities(exported):
  import tensorflow as tf
  from ai_edge_litert.interpreter import Interpreter
  images, _ = mnist_test_digits(1000)
  saved = tf.saved_model.load(exported[2]).signatures["serving_default"]
  expected = saved(images=tf.constant(images))
  runner = Interpreter(model_path=os.path.join(
      exported[2], "model.tflite")).get_signature_runner("serving_default")
  got = runner(images=images)
  np.testing.assert_allclose(got["probabilities"],
                             expected["probabilities"].numpy(), atol=1e-6)
  np.testing.assert_array_equal(got["class_ids"],
                                expected["class_ids"].numpy())


def _batch(n):
  images, _ = mnist_test_digits(n)
  return json.dumps({"instances": images.tolist()})


def test_sigint_drains_the_request_in_flight(exported):
  # The signal handling in this process (the pytest worker's main thread);
  # the test below checks SIGTERM, the exit status and the port as a program.
  from logreg_tf.serve import open_models
  from logreg_tf.server.app import Settings
  from logreg_tf.server.running import Server
  server = Server(open_models(exported[1]), Settings(port=0, poll_seconds=0))
  body, answers = _batch(2500), []

  async def serve():
    await server.start()
    request = threading.Thread(target=lambda: answers.append(call(
        server.port, "POST", "/v1/models/mnist:predict", body)))
    request.start()
    asyncio.get_running_loop().call_later(0.3, os.kill, os.getpid(),
                                          signal.SIGINT)
    return await server.serve_until_signal(), request
  stopped_by, request = asyncio.run(serve())
  request.join(60)
  assert stopped_by == "SIGINT"
  status, answer = answers[0]
  assert status == 200 and len(answer["predictions"]) == 2500
  with pytest.raises(OSError):
    socket.create_connection(("127.0.0.1", server.port), timeout=5).recv(1)


@pytest.mark.process
def test_sigterm_drains_the_request_in_flight_and_exits_0(exported):
  proc = subprocess.Popen(
      [sys.executable, "-m", "logreg_tf.serve", f"--saved_model={exported[1]}",
       "--port=0", "--poll_seconds=0"], cwd=REPO, env=_env(),
      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
  try:
    line = proc.stdout.readline()
    assert line.startswith("serving mnist version "), proc.stderr.read()
    port = int(line.split("http://127.0.0.1:")[1].split("/")[0])
    # A request in flight: a batch of 2,500 digits (about 0.5 s of work)...
    body, answers = _batch(2500), []
    request = threading.Thread(target=lambda: answers.append(call(
        port, "POST", "/v1/models/mnist:predict", body)))
    request.start()
    time.sleep(0.3)
    proc.send_signal(signal.SIGTERM)
    time.sleep(0.2)
    # ...no new connection is taken once the signal came...
    with pytest.raises(OSError):
      socket.create_connection(("127.0.0.1", port), timeout=5).recv(1)
    # ...and the batch still gets its whole answer.
    request.join(60)
    status, answer = answers[0]
    assert status == 200 and len(answer["predictions"]) == 2500
    assert proc.wait(timeout=30) == 0, proc.stderr.read()
  finally:
    if proc.poll() is None:
      proc.kill()
      proc.wait()
