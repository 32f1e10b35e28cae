"""`make bench` section "serve": logreg-serve under load on 127.0.0.1.

The server is its own process (as a user runs it); 8 client threads here
each keep one connection and send their share of the requests: single
digits, then batches of 100 MNIST test digits. Reported: requests and
digits per second, p50 and p99 latency, failures (must be 0), against the
predict command's images per second from the same run's predict section.
"""

import concurrent.futures
import http.client
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

from logreg_tf import serving
from logreg_tf.rundir import trained

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLIENTS = 8


def _load(port, body, n):
  """n requests of `body` from CLIENTS connections: latencies, failures."""
  def client(k):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    latencies, failed = [], 0
    for _ in range(k, n, CLIENTS):
      start = time.perf_counter()
      conn.request("POST", "/v1/models/mnist:predict", body=body,
                   headers={"Content-Type": "application/json"})
      response = conn.getresponse()
      answer = response.read()
      latencies.append(time.perf_counter() - start)
      if response.status != 200 or b'"predictions"' not in answer:
        failed += 1
        print("failed:", response.status, answer[:200], file=sys.stderr)
    conn.close()
    return latencies, failed
  start = time.perf_counter()
  with concurrent.futures.ThreadPoolExecutor(CLIENTS) as pool:
    parts = list(pool.map(client, range(CLIENTS)))
  wall = time.perf_counter() - start
  latencies = np.concatenate([p[0] for p in parts])
  return {"requests": n, "seconds": wall, "requests_per_second": n / wall,
          "p50_ms": float(np.percentile(latencies, 50) * 1e3),
          "p99_ms": float(np.percentile(latencies, 99) * 1e3),
          "failed": int(sum(p[1] for p in parts))}


def serve_load(test_images, train_smoke, quick=False):
  """Exports configs/smoke.cfg's model, serves it, loads it."""
  n = (200, 20) if quick else (5000, 5000)
  with tempfile.TemporaryDirectory() as tmp:
    train_smoke(os.path.join(tmp, "run"))
    export = os.path.join(tmp, "mnist")
    serving.export(trained.load(os.path.join(tmp, "run")), export)
    proc = subprocess.Popen(
        [sys.executable, "-m", "logreg_tf.serve", f"--saved_model={export}",
         "--port=0", "--poll_seconds=0"], cwd=REPO, stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL, text=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    try:
      line = proc.stdout.readline()
      port = int(line.split("http://127.0.0.1:")[1].split("/")[0])
      digits = np.asarray(test_images[:100]).reshape(100, 28, 28, 1).tolist()
      single = json.dumps({"instances": digits[:1]})
      batch = json.dumps({"instances": digits})
      out = {"single digits": _load(port, single, n[0]),
             "batches of 100": _load(port, batch, n[1])}
    finally:
      proc.terminate()
      out["exit status on SIGTERM"] = proc.wait(60)
  return out


def table(serve: dict, predict: dict = None) -> str:
  rows = ["logreg-serve on 127.0.0.1, 8 clients with one connection each "
          "(its own process; clients in the benchmark's):", "",
          "| requests | count | requests/s | digits/s | p50 ms | p99 ms | "
          "failed |", "| --- | --- | --- | --- | --- | --- | --- |"]
  for kind, per in (("single digits", 1), ("batches of 100", 100)):
    r = serve[kind]
    rows.append(f"| {kind} | {r['requests']:,} | "
                f"{r['requests_per_second']:,.0f} | "
                f"{r['requests_per_second'] * per:,.0f} | {r['p50_ms']:.1f} | "
                f"{r['p99_ms']:.1f} | {r['failed']} |")
  if predict:
    rows.append(f"| predict command on PNG files (same run) | | | "
                f"{predict['images_per_second']:,.0f} | | | |")
  rows.append(f"\nExit status on SIGTERM: {serve['exit status on SIGTERM']}")
  return "\n".join(rows) + "\n"
