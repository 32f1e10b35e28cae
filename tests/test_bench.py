"""The benchmark runs: `make bench ARGS=--quick`, every section once on small
budgets, exits 0 and writes its table (its figures are not measurements)."""

import json
import os
import subprocess
import sys

import pytest

from conftest import REPO

pytestmark = [pytest.mark.process, pytest.mark.real_data]


def test_the_quick_benchmark_runs_every_section(shared_tfds_dir, tmp_path):
  out = tmp_path / "bench.json"
  done = subprocess.run(
      [sys.executable, str(REPO / "scripts" / "benchmark.py"), "--quick",
       f"--json={out}"], cwd=REPO, capture_output=True, text=True,
      timeout=300, check=False,
      env={**os.environ, "TFDS_DATA_DIR": shared_tfds_dir})
  assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
  results = json.loads(out.read_text())
  assert results["quick"] is True
  for section in ("target_1", "target_2", "target_3", "target_4", "target_5",
                  "checkpoint_save", "itemized", "whole_command", "predict",
                  "distribute", "optimum", "serve", "scale"):
    assert section in results, section
  # The loop's own epochs were timed (the Run built as the command builds it).
  assert results["itemized"]["whole displayed epoch in the loop"]["median"] > 0
  assert results["target_4"]["status"] == 0
  assert "logreg_tf" in results["table"]
  # The server answered every request of the 8 clients, then drained.
  for kind in ("single digits", "batches of 100"):
    assert results["serve"][kind]["failed"] == 0
    assert results["serve"][kind]["requests_per_second"] > 0
  assert results["serve"]["exit status on SIGTERM"] == 0
  # The scale section trained streamed, and measured it.
  run = results["scale"]["sizes"]["6000"]["runs"]["stream/full"]
  assert run["peak_rss"] > 0 and run["rows_per_s"] > 0
  # The exact solvers reached the optimum scikit-learn's lbfgs finds.
  optimum = results["optimum"]
  for solver in ("lbfgs", "newton_cg"):
    assert optimum[solver]["converged"] is True
    assert abs(optimum[solver]["objective"]
               - optimum["sklearn lbfgs tol=1e-8"]["objective"]) < 1e-6
