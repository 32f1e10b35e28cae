"""TF_CONFIG, the standard description of a cluster, read and checked.

`{"cluster": {"chief": [...], "worker": ["host:port", ...]}, "task":
{"type": "worker", "index": 0}}`: the training tasks, chief first, and
which one this process is. `unreachable` tries their addresses over TCP,
to name a worker that is missing or gone.
"""

import dataclasses
import json
import socket
from typing import List, Optional, Tuple

from logreg_tf.errors import UserError

JOBS = ("chief", "worker")  # the TF_CONFIG jobs that train


@dataclasses.dataclass(frozen=True)
class Cluster:
  """TF_CONFIG, checked: the training tasks' addresses and this task."""

  tasks: Tuple[Tuple[str, str], ...]  # (name, "host:port"), chief first
  index: int  # this task's position in `tasks`

  @property
  def name(self) -> str:
    return self.tasks[self.index][0]

  @property
  def peers(self) -> List[Tuple[str, str]]:
    return [t for i, t in enumerate(self.tasks) if i != self.index]


def read_tf_config(text: Optional[str]) -> Cluster:
  """The cluster TF_CONFIG describes; UserError naming what is wrong."""
  example = ('e.g. {"cluster": {"worker": ["host1:2222", "host2:2222"]}, '
             '"task": {"type": "worker", "index": 0}}')
  if not text or not text.strip():
    raise UserError("--strategy=multi_worker needs the TF_CONFIG environment "
                    f"variable ({example}); scripts/launch_local.py sets it "
                    "for workers on this machine")
  try:
    spec = json.loads(text)
    cluster, task = spec["cluster"], spec["task"]
    kind, index = task["type"], task["index"]
  except (ValueError, KeyError, TypeError) as e:
    raise UserError(f"TF_CONFIG is not valid ({type(e).__name__}: {e}); "
                    f"expected JSON with cluster and task, {example}") from e
  tasks = []
  for job in JOBS:
    addresses = cluster.get(job) or []
    if job == "chief" and len(addresses) > 1:
      raise UserError(f"TF_CONFIG has {len(addresses)} chief tasks; at most "
                      "one")
    for i, address in enumerate(addresses):
      host, _, port = str(address).rpartition(":")
      if not host or not port.isdigit():
        raise UserError(f"TF_CONFIG's {job} {i} address {address!r} is not "
                        "host:port")
      tasks.append((f"{job} {i}", str(address)))
  unknown = sorted(set(cluster) - set(JOBS))
  if unknown:
    raise UserError(f"TF_CONFIG's cluster has jobs {', '.join(unknown)}; "
                    "this trainer runs chief and worker tasks only")
  names = [name for name, _ in tasks]
  if f"{kind} {index}" not in names:
    raise UserError(f"TF_CONFIG's task {kind} {index} is not in its cluster "
                    f"({', '.join(names) or 'empty'})")
  return Cluster(tuple(tasks), names.index(f"{kind} {index}"))


def unreachable(tasks, timeout: float = 2.0) -> List[str]:
  """The tasks whose address takes no TCP connection, with the reason."""
  lost = []
  for name, address in tasks:
    host, _, port = address.rpartition(":")
    try:
      socket.create_connection((host.strip("[]"), int(port)), timeout).close()
    except OSError as e:
      lost.append(f"{name} at {address} ({e.strerror or e})")
  return lost
