"""Starts N trainer workers on this machine, as a cluster over 127.0.0.1.

  python scripts/launch_local.py --workers=2 -- --num_epochs=20 --model_dir=/tmp/run

Each worker is `python -m logreg_tf.train --strategy=multi_worker [flags]`
with its own TF_CONFIG naming every worker's address (free ports on
127.0.0.1); worker 0 is the chief. Every line a worker prints comes out
prefixed with "[wI]". SIGINT and SIGTERM are passed on to every worker (they
stop together after the same epoch, the chief saving). The launcher exits
with the worst status of its workers: the highest exit code, a worker killed
by signal S counting as 128 + S.

On real machines, start the same command on each machine with a TF_CONFIG
of its own: the same "cluster" everywhere, "task" giving its index.
"""

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import threading
from typing import List


def free_ports(count: int) -> List[int]:
  """Ports the kernel has just handed out on 127.0.0.1 (held together so
  that they differ, then released for the workers to bind)."""
  sockets = []
  try:
    for _ in range(count):
      s = socket.socket()
      s.bind(("127.0.0.1", 0))
      sockets.append(s)
    return [s.getsockname()[1] for s in sockets]
  finally:
    for s in sockets:
      s.close()


def tf_config(addresses: List[str], index: int) -> str:
  return json.dumps({"cluster": {"worker": addresses},
                     "task": {"type": "worker", "index": index}})


def _relay(index: int, stream, lock: threading.Lock) -> None:
  for line in iter(stream.readline, b""):
    with lock:
      sys.stdout.buffer.write(b"[w%d] " % index + line)
      sys.stdout.buffer.flush()


def exit_status(codes: List[int]) -> int:
  """The worst: the highest code, death by signal S counted as 128 + S."""
  return max((128 - c if c < 0 else c) for c in codes)


def _start(command: List[str], env: dict) -> subprocess.Popen:
  """A worker process, its stdout and stderr into one pipe."""
  return subprocess.Popen(command, env=env, stdin=subprocess.DEVNULL,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def main(argv=None, start=_start) -> int:
  """`start(command, env)` starts one worker and returns it as
  subprocess.Popen would (the tests fork theirs, see tests/zygote.py)."""
  parser = argparse.ArgumentParser(
      description=__doc__.split("\n\n")[0],
      usage="%(prog)s --workers=N [--python=PYTHON] -- [trainer flags]")
  parser.add_argument("--workers", type=int, default=2,
                      help="how many workers (default 2)")
  parser.add_argument("--python", default=sys.executable,
                      help="the interpreter that runs the trainer")
  parser.add_argument("trainer_flags", nargs=argparse.REMAINDER)
  args = parser.parse_args(argv)
  if args.workers < 1:
    parser.error(f"--workers={args.workers}: give 1 or more")
  flags = [f for f in args.trainer_flags if f != "--"]
  if not any(f.startswith("--strategy") for f in flags):
    flags.insert(0, "--strategy=multi_worker")

  addresses = [f"127.0.0.1:{p}" for p in free_ports(args.workers)]
  lock = threading.Lock()
  workers = [start([args.python, "-m", "logreg_tf.train", *flags],
                   dict(os.environ, TF_CONFIG=tf_config(addresses, i),
                        PYTHONUNBUFFERED="1"))
             for i in range(args.workers)]
  relays = [threading.Thread(target=_relay, args=(i, w.stdout, lock),
                             daemon=True) for i, w in enumerate(workers)]
  for relay in relays:
    relay.start()
  print(f"[launch] {args.workers} workers on {', '.join(addresses)}; "
        f"pids {' '.join(str(w.pid) for w in workers)}", flush=True)

  def forward(signum, frame):
    del frame
    for w in workers:
      if w.poll() is None:
        w.send_signal(signum)

  for s in (signal.SIGINT, signal.SIGTERM):
    signal.signal(s, forward)
  codes = [w.wait() for w in workers]
  for relay in relays:
    relay.join(timeout=5)
  status = exit_status(codes)
  print(f"[launch] exit codes {codes}; exiting with {status}", flush=True)
  return status


if __name__ == "__main__":
  sys.exit(main())
