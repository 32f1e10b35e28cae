"""run.json: what ran, on what, with which data and code, and how it ended."""

import dataclasses
import datetime
import importlib.metadata
import json
import os
import platform
import subprocess
from typing import Optional

from absl import logging
import tensorflow as tf

import logreg_tf
from logreg_tf.rundir import durable
from logreg_tf.errors import StorageError

def _now() -> str:
  return datetime.datetime.now(datetime.timezone.utc).isoformat(
      timespec="seconds")


def _version(package: str) -> Optional[str]:
  try:
    return importlib.metadata.version(package)
  except importlib.metadata.PackageNotFoundError:
    return None


def _git_commit() -> Optional[str]:
  """The commit of the checkout this package runs from, if it is one."""
  here = os.path.dirname(os.path.abspath(logreg_tf.__file__))
  try:
    out = subprocess.run(["git", "-C", here, "rev-parse", "HEAD"],
                         capture_output=True, text=True, timeout=5,
                         check=False)
  except (OSError, subprocess.TimeoutExpired):
    return None
  return out.stdout.strip() if out.returncode == 0 else None


def dataset_record(data) -> dict:
  """The dataset entry of run.json: what was trained and tested on."""
  return {
      **data.info.to_json(),
      "train_examples": len(data.train_labels),
      "test_examples": len(data.test_labels),
      "fingerprint_sha256": data.fingerprint(),
  }


class RunInfo:
  """Keeps run.json (at `path`, from workdir.ModelDir) current; atomic writes."""

  def __init__(self, path: str, config, storage, dataset: dict, device: str,
               resumed_from_epoch: int, placement: Optional[dict] = None):
    self.path = path
    self.record = {
        "status": "running",
        "config": dataclasses.asdict(config),
        "storage": dataclasses.asdict(storage),
        "versions": {
            "python": platform.python_version(),
            "tensorflow": tf.__version__,
            "tensorflow_datasets": _version("tensorflow-datasets"),
            "numpy": _version("numpy"),
            "logreg_tf": logreg_tf.__version__,
        },
        "dataset": dataset,
        "git_commit": _git_commit(),
        "device": device,
        "placement": placement or {"strategy": "one_device", "replicas": 1},
        "resumed_from_epoch": resumed_from_epoch,
        "start_time": _now(),
        "end_time": None,
        "final_metrics": None,
    }
    self._write()

  def finish(self, status: str, metrics=None, **extra) -> None:
    self.record.update(status=status, end_time=_now(), **extra)
    if metrics:
      self.record["final_metrics"] = metrics
    self._write()

  def record_failure(self, status: str, error: Exception) -> None:
    """Best effort: on a full disk run.json may not take this either."""
    try:
      self.finish(status, error=str(error))
    except StorageError as e:
      logging.warning("run.json could not record the %s status: %s", status,
                      e)

  def _write(self) -> None:
    """Atomic and flushed to disk; StorageError when it cannot be."""
    durable.write_text(
        self.path, json.dumps(self.record, indent=2, sort_keys=True) + "\n")
