"""A model server running in this test process, and an HTTP client that
sends exactly what a test says (raw paths, any content type)."""

import asyncio
import http.client
import json
import os
import shutil
import threading

from conftest import SHARED
from helpers import invoke


class Running:
  """logreg_tf.server's Server on 127.0.0.1:<free port>, on its own event
  loop in a thread; `close` drains and stops it."""

  def __init__(self, saved_model=None, model_dir=None, **settings):
    from logreg_tf.serve import open_models
    from logreg_tf.server.app import Settings
    from logreg_tf.server.running import Server
    self.models = open_models(saved_model, model_dir)
    self.loop = asyncio.new_event_loop()
    self.server = Server(self.models, Settings(port=0, **settings))
    self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
    self.thread.start()
    self._wait(self.server.start())
    self.port = self.server.port
    self.name = self.models.name

  def _wait(self, coroutine, timeout=60):
    return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(
        timeout)

  def close(self):
    self._wait(self.server.stop())
    self.loop.call_soon_threadsafe(self.loop.stop)
    self.thread.join(10)
    self.loop.close()

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    self.close()


def call(port, method, path, body=None, content_type="application/json",
         timeout=60, connection=None):
  """(status, decoded JSON or text) of one request."""
  conn = connection or http.client.HTTPConnection("127.0.0.1", port,
                                                  timeout=timeout)
  headers = {}
  if body is not None:
    if not isinstance(body, (bytes, str)):
      body = json.dumps(body)
    if content_type:
      headers["Content-Type"] = content_type
  conn.request(method, path, body=body, headers=headers)
  response = conn.getresponse()
  raw = response.read()
  if connection is None:
    conn.close()
  kind = response.getheader("Content-Type", "")
  return response.status, (json.loads(raw) if "json" in kind
                           else raw.decode("utf-8", "replace"))


def mnist_test_digits(n):
  """(uint8 [n, 28, 28, 1], labels) from the offline IDX files."""
  from logreg_tf.data import idx
  images, labels, _ = idx.load_split(str(SHARED / "mnist-idx"), "test")
  return images[:n, ..., None], labels[:n]


def export_of(config_runs, root, name="mnist", tflite=True):
  """The smoke config's real-MNIST run (trained once per pytest run),
  exported into root/name; returns (model_dir, base dir, version dir)."""
  _, model_dir = config_runs("smoke")
  base = os.path.join(root, name)
  result = invoke("export", f"--model_dir={model_dir}",
                  f"--export_dir={base}", *(["--tflite"] if tflite else []))
  assert result.returncode == 0, result.stderr[-2000:]
  (version,) = os.listdir(base)
  return model_dir, base, os.path.join(base, version)


def add_version(base, version, new_version):
  """A copy of one version as another, renamed into place whole (as export
  writes)."""
  tmp = os.path.join(base, f".{new_version}.tmp")
  shutil.copytree(os.path.join(base, str(version)), tmp)
  os.rename(tmp, os.path.join(base, str(new_version)))
