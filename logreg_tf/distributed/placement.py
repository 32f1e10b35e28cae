"""Where a run computes: one device, mirrored devices, or several workers.

`--strategy=one_device` is the plain single-device path (no tf.distribute).
`mirrored` puts a replica on every GPU TensorFlow finds, or on
`--cpu_devices` logical CPU devices. `multi_worker` reads the standard
TF_CONFIG and joins a MultiWorkerMirroredStrategy cluster; its worker 0 (or
its "chief" task) is the chief, the only one that writes --model_dir.

A cluster that cannot form, or loses a worker, ends in one line naming the
worker: every address of TF_CONFIG is tried over TCP to find which one.
"""

import dataclasses
import os
import time
from typing import List, Optional

from absl import logging

from logreg_tf.errors import UserError, WorkerError
from logreg_tf.distributed.tf_config import Cluster, read_tf_config, unreachable
from logreg_tf.distributed.watchdog import Watchdog

STRATEGIES = ("one_device", "mirrored", "multi_worker")

# How long a worker waits in a collective for the others, in --worker_timeout:
# in the steps, a peer that has not joined within STEP_BOUND is stuck (a step
# that never returns); the collective after each epoch's own work (the
# chief's log, figures and checkpoint, which may meet a slow disk) waits
# PHASE_BOUND. Loading the data (a first decode may take hours) has no bound
# but the watchdog's (a frozen process).
STEP_BOUND, PHASE_BOUND = 2, 10


@dataclasses.dataclass
class Placement:
  """The strategy a run uses (None: one device) and this process's role."""

  name: str
  strategy: object = None
  cluster: Optional[Cluster] = None
  watchdog: object = None  # watchdog.Watchdog, with a cluster

  @property
  def num_workers(self) -> int:
    return len(self.cluster.tasks) if self.cluster else 1

  @property
  def is_chief(self) -> bool:
    return self.cluster is None or self.cluster.index == 0

  def describe(self) -> dict:
    """For run.json: the strategy, its replicas and the cluster."""
    out = {"strategy": self.name,
           "replicas": self.strategy.num_replicas_in_sync
           if self.strategy else 1}
    if self.cluster:
      out["workers"] = [f"{name} {address}"
                        for name, address in self.cluster.tasks]
    return out

  @property
  def worker(self) -> str:
    return self.cluster.name if self.cluster else "the only worker"

  def lost_worker(self, error: Exception, epoch: int,
                  checkpoint: Optional[str], waited: float = 0.0
                  ) -> WorkerError:
    """The one line for a collective that failed (after `waited` seconds):
    which peer is frozen (the watchdog's finding), gone, or stuck (the
    collective's bound passed while the peer still answers: the peers that
    did not time out in it too).

    A peer killed a moment ago can still take connections while the kernel
    tears its process down (its collectives failed first), so the peers are
    tried again for up to `settle` seconds before none counts as gone.
    """
    _JOINED.clear()  # a broken cluster has nothing to wait for at exit
    frozen = self.watchdog.frozen if self.watchdog else None
    gone = [] if frozen or not self.cluster else unreachable(
        self.cluster.peers)
    if not (frozen or gone) and self.watchdog:
      frozen = self.watchdog.find()  # a stopped process takes connections
    import tensorflow as tf
    if (not (frozen or gone) and self.watchdog and
        isinstance(error, tf.errors.DeadlineExceededError)):
      frozen = self.watchdog.stuck(f"{epoch}", waited)
    if not (frozen or gone) and self.cluster:
      gone = self._gone_peers()
    who = (f"no progress from {frozen.name} at {frozen.address} for "
           f"{frozen.silent_s:.0f} s" if frozen else
           "lost " + ", ".join(gone) if gone else
           f"a worker failed ({type(error).__name__}: "
           f"{str(error).strip().splitlines()[0][:200]})")
    return WorkerError.during(self.worker, who, epoch, checkpoint)

  def _gone_peers(self, settle: float = 5.0) -> List[str]:
    deadline = time.monotonic() + settle
    while True:
      gone = unreachable(self.cluster.peers)
      if gone or time.monotonic() > deadline:
        return gone
      time.sleep(0.25)


class _QuietCollectives:
  """Drops tf.distribute's INFO line at every trace of an all-reduce."""

  def filter(self, record) -> bool:
    return not str(record.msg).startswith("Collective all_reduce tensors")


def _quiet_collectives() -> None:
  import logging as std_logging
  std_logging.getLogger("tensorflow").addFilter(_QuietCollectives())


def _configure_cpu_devices(count: int) -> None:
  import tensorflow as tf
  cpu = tf.config.list_physical_devices("CPU")[0]
  if len(tf.config.get_logical_device_configuration(cpu) or ()) == count:
    return  # split so already (a test session sets it up once)
  tf.config.set_logical_device_configuration(
      cpu, [tf.config.LogicalDeviceConfiguration()] * count)


_MIRRORED = {}  # devices -> the MirroredStrategy made over them here
_JOINED = []  # the Watchdog of the cluster joined here (its cluster, timeout)


def part() -> None:
  """Before a worker's process ends without Python's finalisation
  (cli.leave), what TensorFlow's own shutdown barrier would do: a worker
  through its last collective must not go while a peer still pulls from it
  (a ring all-reduce receives by asking the peer), or the peer fails with
  'Connection refused'. So the workers meet at a barrier, and the first
  task, which hosts the coordination service, then waits (as long as
  --worker_timeout) for the others to go, so that the barrier's answer
  reaches them. After a lost worker there is nothing to wait for."""
  if not _JOINED:
    return
  import tensorflow as tf
  from tensorflow.python.eager import context
  watchdog = _JOINED.pop()
  watchdog.stop()
  cluster, timeout = watchdog.cluster, watchdog.timeout
  try:
    context.context().wait_at_barrier("logreg_tf/leave", int(timeout * 1e3))
  except tf.errors.OpError as e:
    logging.warning("the workers did not meet before exiting: %s",
                    str(e).strip().splitlines()[0][:200])
    return
  deadline = time.monotonic() + timeout
  while (cluster.index == 0 and time.monotonic() < deadline and
         len(unreachable(cluster.peers, 0.5)) < len(cluster.peers)):
    time.sleep(0.02)


def _mirrored(devices):
  """One MirroredStrategy per set of devices and process: each strategy
  numbers its collectives from the same start, so a second one over the
  same devices would collide with the first's in TensorFlow's collective
  executor (a shape mismatch), when a process trains twice (the tests, a
  notebook)."""
  import tensorflow as tf
  if devices not in _MIRRORED:
    _MIRRORED[devices] = tf.distribute.MirroredStrategy(list(devices))
  return _MIRRORED[devices]


def _configure_coordination(cluster: Cluster, timeout: float) -> None:
  """Bounds how long a worker waits for the others to join, and how long a
  silent one is taken for alive: MultiWorkerMirroredStrategy's own defaults
  wait without end. TensorFlow has no public call for these; the strategy
  keeps a service configured before it is made."""
  from tensorflow.compiler.xla.tsl.protobuf import coordination_config_pb2
  from tensorflow.python.eager import context
  jobs = {}
  for name, _ in cluster.tasks:
    job = name.split()[0]
    jobs[job] = jobs.get(job, 0) + 1
  leader = "chief" if "chief" in jobs else "worker"
  ms = int(timeout * 1000)
  context.context().configure_coordination_service(
      service_type="standalone",
      service_leader=f"/job:{leader}/replica:0/task:0",
      cluster_register_timeout_in_ms=ms, heartbeat_timeout_in_ms=ms,
      shutdown_barrier_timeout_in_ms=3 * ms,
      coordinated_jobs=[coordination_config_pb2.CoordinatedJob(
          name=job, num_tasks=n) for job, n in jobs.items()])


def _formed_or_error(cluster: Cluster, timeout: float, error=None):
  """WorkerError for a cluster that did not form, naming who is missing."""
  gone = unreachable(cluster.peers)
  reason = ("no answer from " + ", ".join(gone) if gone else
            type(error).__name__ if error else "no answer")
  return WorkerError(
      f"{cluster.name}: the cluster did not form within {timeout:g} s: "
      f"{reason}; check TF_CONFIG's addresses and start every worker "
      "(--worker_timeout waits longer)")


def _wait_for_peers(cluster: Cluster, timeout: float) -> None:
  """On the first task, which hosts the cluster's coordination service:
  waits until every other task listens. TensorFlow's service would wait for
  a missing one without end (holding the interpreter), where the other
  tasks give up after the registration timeout with an error."""
  deadline = time.monotonic() + timeout
  while unreachable(cluster.peers, timeout=1.0):
    if time.monotonic() > deadline:
      raise _formed_or_error(cluster, timeout)
    time.sleep(0.2)


def place(name: str, cpu_devices: Optional[int] = None,
          timeout: float = 20.0, tf_config: Optional[str] = None
          ) -> Placement:
  """Makes the strategy; call before TensorFlow runs its first op.

  `tf_config` defaults to the TF_CONFIG environment variable. Raises
  UserError for a bad TF_CONFIG and WorkerError when the cluster does not
  form within `timeout` seconds.
  """
  if name not in STRATEGIES:
    raise UserError(f"--strategy={name}: expected one of "
                    f"{', '.join(STRATEGIES)}")
  if cpu_devices is not None and name != "mirrored":
    raise UserError(f"--cpu_devices={cpu_devices} splits the CPU for "
                    f"--strategy=mirrored; --strategy={name} does not use it")
  if name == "one_device":
    return Placement(name)
  import tensorflow as tf
  _quiet_collectives()
  if name == "mirrored":
    if cpu_devices is not None:
      _configure_cpu_devices(cpu_devices)
    gpus = tf.config.list_logical_devices("GPU")
    devices = ([d.name for d in gpus] if gpus and cpu_devices is None else
               [d.name for d in tf.config.list_logical_devices("CPU")])
    strategy = _mirrored(tuple(devices))
    logging.info("mirrored over %d devices: %s", len(devices),
                 ", ".join(devices))
    return Placement(name, strategy)
  if tf_config is None:
    tf_config = os.environ.get("TF_CONFIG")
  cluster = read_tf_config(tf_config)
  _configure_coordination(cluster, timeout)
  # The steps' all-reduces (Keras's optimizer's included) take the
  # strategy's options: their bound is STEP_BOUND; cluster.Collectives
  # gives its own to the others.
  options = tf.distribute.experimental.CommunicationOptions(
      implementation=tf.distribute.experimental.CommunicationImplementation
      .RING, timeout_seconds=STEP_BOUND * timeout)
  if cluster.index == 0:
    _wait_for_peers(cluster, timeout)
  try:
    strategy = tf.distribute.MultiWorkerMirroredStrategy(
        communication_options=options)
  except (tf.errors.DeadlineExceededError, tf.errors.UnavailableError,
          tf.errors.AbortedError, tf.errors.InternalError) as e:
    raise _formed_or_error(cluster, timeout, e) from e
  watchdog = Watchdog(cluster, timeout, STEP_BOUND * timeout)
  watchdog.start()
  _JOINED[:] = [watchdog]
  logging.info("multi_worker: %s of %d (%s), %d replicas in all",
               cluster.name, len(cluster.tasks),
               ", ".join(f"{n} {a}" for n, a in cluster.tasks),
               strategy.num_replicas_in_sync)
  return Placement(name, strategy, cluster, watchdog)
